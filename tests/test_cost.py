"""lab/cost.py: FLOPs counted per training image, the grid's workload, and the projection."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cost import projected_cost, train_flops_per_image, workload
from lab.grid import EXPERIMENTS, make_config

REPO = Path(__file__).resolve().parents[1]


def test_train_flops_are_three_forwards():
    # ResNet18 with the CIFAR stem, by hand: stem 3*64*9*32*32 = 1.8M MACs, layer1 4*64*64*9*32*32
    # = 151M, layers 2-4 134M each (their first conv, 3 more and the 1x1 shortcut): 0.56 GMACs,
    # 1.11 GFLOP forward; backward costs two forwards (gradients of inputs and of weights).
    flops = train_flops_per_image(64)
    assert flops == pytest.approx(3 * 1.11e9, rel=0.01)
    assert train_flops_per_image(32) == pytest.approx(flops / 4, rel=0.02)  # width squared


def test_workload_counts_epochs_times_training_images():
    base = workload(["baseline"])
    cfg = make_config("baseline")
    n = 50_000 - cfg.val_size
    assert base["train_images"] == cfg.epochs * n
    assert base["steps"] == cfg.epochs * math.ceil(n / cfg.batch_size)
    grid = workload(list(EXPERIMENTS))
    assert grid["train_images"] == sum(workload([n])["train_images"] for n in EXPERIMENTS)
    quick = workload(["baseline"], profile="quick")
    assert quick["train_images"] == make_config("baseline", "quick").epochs * 2000


def test_cli_prints_the_arithmetic():
    out = subprocess.run(
        [sys.executable, "-m", "lab.cost"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "3.33 GFLOP" in out and "PFLOP" in out
    images = 3 * workload(list(EXPERIMENTS))["train_images"]
    assert f"{len(EXPERIMENTS)} experiments x 3 seed(s): {images / 1e6:.2f}M" in out


def test_projected_cost_counts_only_runs_without_results(tmp_path):
    lines = []
    w = workload(list(EXPERIMENTS), "smoke")
    whole = w["train_images"]
    res = projected_cost("smoke", 1, tmp_path, "cpu", rate=1000.0, echo=lines.append)
    assert res["runs"] == len(EXPERIMENTS) and res["images"] == whole
    # evaluation counted too: a forward pass is a third of a training step (#31)
    assert w["eval_images"] == sum(make_config(n, "smoke").epochs * 200 + 400 for n in EXPERIMENTS)
    assert res["minutes"] == pytest.approx((whole + w["eval_images"] / 3) / 1000 / 60)
    assert f"{len(EXPERIMENTS)} runs" in lines[0] and "one run at a time" in lines[0]
    (tmp_path / "smoke").mkdir()
    saved = tmp_path / "smoke" / "baseline__seed0.json"
    saved.write_text("{}")  # not a usable result: the run trains again
    assert projected_cost("smoke", 1, tmp_path, "cpu", rate=1e3, echo=len)["images"] == whole
    history = {k: [1.0] for k in ("epoch", "train_loss", "val_loss", "val_acc")}
    result = {"name": "baseline", "seed": 0, "status": "ok", "test_acc": 0.1}
    saved.write_text(json.dumps(result | {"config": {}, "history": history}))
    assert (
        projected_cost("smoke", 1, tmp_path, "cpu", rate=1e3, echo=len)["runs"]
        == len(EXPERIMENTS) - 1
    )
    two = projected_cost("smoke", 2, tmp_path, "cpu", rate=1e3, echo=len)  # a run once a seed
    assert two["images"] == 2 * whole - workload(["baseline"], "smoke")["train_images"]
    assert (
        projected_cost("smoke", 1, tmp_path, "cpu", rate=1e3, train_missing=False, echo=len)[
            "images"
        ]
        == 0
    )


def test_nothing_to_train_measures_nothing(tmp_path, monkeypatch):
    import lab.cost

    monkeypatch.setattr(lab.cost, "measure_rate", lambda *a, **k: pytest.fail("measured"))
    lines = []
    res = projected_cost("smoke", 1, tmp_path, "cpu", train_missing=False, echo=lines.append)
    assert res["runs"] == 0 and res["images_per_s"] is None
    assert lines == [
        "cost:    nothing to train here: every run shown is replayed from its results file"
    ]


def test_projected_cost_measures_a_rate_when_none_is_given(tmp_path, one_thread_per_module):
    res = projected_cost("smoke", 1, tmp_path, "cpu", echo=len)
    assert res["images_per_s"] > 0
