"""cost.py: FLOPs counted per training image, the grid's workload, and the projection."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import LabError
from lab.grid import EXPERIMENTS, make_config
from tools.cost import (
    IMAGE_S,
    STEP_S,
    grid_projection,
    loop_rates,
    main,
    projected_cost,
    run_cost,
    train_flops_per_image,
    workload,
)

REPO = Path(__file__).resolve().parents[1]


def test_train_flops_are_three_forwards():
    # ResNet18 with the CIFAR stem, by hand: stem 3*64*9*32*32 = 1.8M MACs, layer1 4*64*64*9*32*32
    # = 151M, layers 2-4 134M each (their first conv, 3 more and the 1x1 shortcut): 0.56 GMACs,
    # 1.11 GFLOP forward; backward costs two forwards (gradients of inputs and of weights).
    flops = train_flops_per_image(64)
    assert flops == pytest.approx(3 * 1.11e9, rel=0.01)
    assert train_flops_per_image(32) == pytest.approx(flops / 4, rel=0.02)  # width squared


def test_grid_projection_divides_the_workload_by_the_loop_speed():
    rate = {"loop_fast": 10_000.0, "loop_fast_compiled": 20_000.0}
    one = grid_projection(rate, 3e9)["seeds_1"]
    assert one["train_images"] == workload(profile="full")["train_images"]
    assert one["minutes_loop_fast"] == pytest.approx(one["train_images"] / 10_000 / 60)
    assert one["minutes_loop_fast_compiled"] == pytest.approx(one["minutes_loop_fast"] / 2)
    assert one["tflops_for_target"] == pytest.approx(one["train_images"] * 3e9 / 480 / 1e12)


def test_workload_counts_epochs_times_training_images():
    base = workload(["baseline"])
    cfg = make_config("baseline")
    n = 50_000 - cfg.val_size
    assert base["train_images"] == cfg.epochs * n
    assert base["steps"] == cfg.epochs * math.ceil(n / cfg.batch_size)
    grid = workload(seeds=3)
    assert grid["experiments"] == len(EXPERIMENTS)
    assert grid["train_images"] == 3 * workload()["train_images"]
    quick = workload(["baseline"], profile="quick")
    assert quick["train_images"] == make_config("baseline", "quick").epochs * 2000


def test_cli_prints_the_arithmetic():
    out = subprocess.run(
        [sys.executable, "-m", "tools.cost"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "3.33 GFLOP" in out and "TFLOP/s" in out
    assert f"{len(EXPERIMENTS)} experiments x 3 seed(s)" in out


def bench_file(tmp_path, width=64):
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {"settings": {"width": width}, "figures": {"loop_fast": {"images_per_s": 10_000.0}}}
        )
    )
    return path


def test_cli_projects_a_bench_files_loop_speed(tmp_path, capsys):
    assert main(["--bench", str(bench_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    images = workload()["train_images"]
    assert "10,000 images/s = 33.3 TFLOP/s" in out
    assert f"{images / 10_000 / 60:.1f} min at loop_fast" in out


@pytest.mark.parametrize(
    "kind, words", [("width", "measured at width 8"), ("other", "not a bench.py results file")]
)
def test_cli_refuses_a_file_it_cannot_project(tmp_path, kind, words):
    path = bench_file(tmp_path, width=8) if kind == "width" else tmp_path / "x.json"
    if kind == "other":
        path.write_text("{}")
    with pytest.raises(LabError, match=words):
        loop_rates(path)


def test_run_cost_counts_steps_and_images_of_one_run():
    c = run_cost("bs_32", "full")
    assert c["images"] == 20 * 45_000 and c["steps"] == 20 * math.ceil(45_000 / 32)
    assert c["est_units"] == pytest.approx(c["steps"] * STEP_S + c["images"] * IMAGE_S)


def test_projected_cost_counts_only_runs_without_results(tmp_path):
    lines = []
    w = workload(profile="smoke")
    whole = w["train_images"]
    res = projected_cost("smoke", 1, tmp_path, "cpu", rate=1000.0, echo=lines.append)
    assert res["runs"] == len(EXPERIMENTS) and res["images"] == whole
    # evaluation counted too: a forward pass is a third of a training step (#31)
    assert w["eval_images"] == sum(make_config(n, "smoke").epochs * 200 + 400 for n in EXPERIMENTS)
    assert res["minutes"] == pytest.approx((whole + w["eval_images"] / 3) / 1000 / 60)
    assert f"{len(EXPERIMENTS)} runs" in lines[0] and "one run at a time" in lines[0]
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "baseline__seed0.json").write_text("{}")
    assert (
        projected_cost("smoke", 1, tmp_path, "cpu", rate=1e3, echo=len)["runs"]
        == len(EXPERIMENTS) - 1
    )
    assert (
        projected_cost("smoke", 1, tmp_path, "cpu", rate=1e3, train_missing=False, echo=len)[
            "images"
        ]
        == 0
    )


def test_nothing_to_train_measures_nothing(tmp_path, monkeypatch):
    import tools.cost

    monkeypatch.setattr(tools.cost, "measure_rate", lambda *a, **k: pytest.fail("measured"))
    lines = []
    res = projected_cost("smoke", 1, tmp_path, "cpu", train_missing=False, echo=lines.append)
    assert res["runs"] == 0 and res["images_per_s"] is None
    assert lines == [
        "cost:    nothing to train here: every run shown is replayed from its results file"
    ]


def test_projected_cost_measures_a_rate_when_none_is_given(tmp_path, one_thread_per_module):
    res = projected_cost("smoke", 1, tmp_path, "cpu", echo=len)
    assert res["images_per_s"] > 0
