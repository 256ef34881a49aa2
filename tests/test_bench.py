"""bench.py end to end at a tiny size (its figures are measured there, never asserted here), and
the grid workload its projection divides by."""

import json
import math
import shutil

import pytest

import bench
from experiments import EXPERIMENTS, make_config, workload

TINY = ["--device", "cpu", "--width", "8", "--batch-size", "32", "--steps", "1", "--repeats", "2",
        "--workers", "0"]  # fmt: skip


def run_bench(tmp_path, capsys, *extra):
    out = tmp_path / "bench.json"
    assert bench.main([*TINY, *extra, "--out", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def test_bench_writes_ratios_figures_and_provenance(tmp_path, capsys, one_thread_per_module):
    res, printed = run_bench(tmp_path, capsys)
    assert res["device"]["type"] == "cpu" and res["versions"]["torch"]
    assert res["settings"]["batch_size"] == 32 and res["settings"]["width"] == 8
    for key in ("model_hand", "loop_fast", "loop_pil", "aug_batched", "aug_pil"):
        fig = res["figures"][key]
        assert len(fig["repeats"]) == 2 and fig["images_per_s"] > 0
    ratio = res["ratios"]["loop_fast_vs_model"]
    assert (
        ratio["value"] > 0 and ratio["target"] == 0.9 and ratio["pass"] == (ratio["value"] >= 0.9)
    )
    assert res["ratios"]["model_hand_vs_torchvision"]["value"] is None  # no reference at width 8
    assert res["compile"] is None and res["grid_projection"] is None
    flops = res["train_flops_per_image"]
    assert res["figures"]["loop_fast"]["tflops"] == pytest.approx(
        res["figures"]["loop_fast"]["images_per_s"] * flops / 1e12
    )
    assert res["figures"]["aug_pil"]["tflops"] is None
    assert "augmentation: batched / per-image PIL" in printed and "torch.compile" not in printed


def test_bad_settings_fail_with_one_line(tmp_path, capsys):
    assert bench.main([*TINY, "--steps", "0", "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --steps must be at least 1, got 0"
    assert not (tmp_path / "b.json").exists()


def test_train_flops_are_three_forwards():
    # ResNet18 with the CIFAR stem: 0.56 GMACs forward (kuangliu/pytorch-cifar's count), i.e.
    # 1.11 GFLOP; backward costs two forwards (grads of inputs and of weights).
    flops = bench.train_flops_per_image(64)
    assert flops == pytest.approx(3 * 1.11e9, rel=0.01)
    assert bench.train_flops_per_image(32) == pytest.approx(flops / 4, rel=0.02)  # width squared


def test_grid_projection_divides_the_workload_by_the_loop_speed():
    rate = {"loop_fast": 10_000.0, "loop_fast_compiled": 20_000.0}
    one = bench.grid_projection(rate, 3e9)["seeds_1"]
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
    assert quick["train_images"] == make_config("baseline", "quick").epochs * 5000


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler"
)
def test_bench_compile_reports_its_cost(tmp_path, capsys, one_thread_per_module):
    res, printed = run_bench(tmp_path, capsys, "--compile", "default")
    assert res["compile"]["mode"] == "default" and res["compile"]["compile_seconds"] >= 0
    assert res["ratios"]["model_compiled_vs_eager"]["value"] > 0
    assert res["figures"]["loop_fast_compiled"]["images_per_s"] > 0
    assert "torch.compile default:" in printed
