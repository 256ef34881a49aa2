"""bench.py end to end at a tiny size: its figures are measured there, never asserted here."""

import json
import shutil

import pytest
from conftest import REPO, data_location

from tools import bench

TINY = ["--device", "cpu", "--width", "8", "--batch-size", "32", "--steps", "1", "--repeats", "2"]
TINY += ["--workers", "0"]


def tiny(tmp_path, *extra) -> list[str]:
    if data_location() is None:
        pytest.skip("CIFAR-10 not found: put cifar10-png.tar.gz in ../shared/data/")
    return [*TINY, "--data-dir", str(data_location()), *extra, "--out", str(tmp_path / "b.json")]


def test_bench_writes_ratios_figures_and_provenance(tmp_path, capsys, one_thread_per_module):
    assert bench.main(tiny(tmp_path)) == 0
    res, printed = json.loads((tmp_path / "b.json").read_text()), capsys.readouterr().out
    assert res["device"]["type"] == "cpu" and res["versions"]["torch"]
    s = res["settings"]
    assert s["batch_size"] == 32 and s["width"] == 8
    assert s["precision"] in ("bf16", "fp32") and s["precision_reason"]
    for key in ("model_hand", "loop_fast", "loop_pil"):
        fig = res["figures"][key]
        assert len(fig["repeats"]) == 2 and fig["images_per_s"] > 0
    for key in ("loop_fast_vs_model", "loop_pil_vs_model", "loop_fast_vs_pil"):
        assert res["ratios"][key]["value"] > 0, key
    assert res["ratios"]["model_hand_vs_torchvision"]["value"] is None  # no reference at width 8
    assert res["compile"] is None
    flops = res["train_flops_per_image"]
    assert res["figures"]["loop_fast"]["tflops"] == pytest.approx(
        res["figures"]["loop_fast"]["images_per_s"] * flops / 1e12
    )
    # bf16 and fp32, each with and without channels_last: the main step is one of them.
    for kind in ("model", "loop"):
        keys = ("bf16_vs_fp32", "channels_last_vs_not", "fp32_channels_last_vs_not")
        for key in (f"{kind}_{k}" for k in keys):
            assert res["ratios"][key]["value"] > 0, key
    models = [f for k, f in res["figures"].items() if k.startswith("model")]
    steps = {(f["precision"], f["label"].endswith("channels_last")) for f in models}
    assert steps == {("bf16", True), ("bf16", False), ("fp32", True), ("fp32", False)}
    assert "model step: bf16 / fp32" in printed and "training loop: DeviceLoader / " in printed
    assert "torch.compile" not in printed


def test_bad_settings_fail_with_one_line(tmp_path, capsys):
    assert bench.main([*TINY, "--steps", "0", "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --steps must be at least 1, got 0"
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler"
)
def test_bench_compile_reports_its_cost(tmp_path):
    # In a child process: where torch.compile's CPU backend crashes on this processor, the bench
    # says so in one line (its probe) and this test skips with it; the process never dies.
    import subprocess
    import sys

    argv = [sys.executable, "-m", "tools.bench", *tiny(tmp_path, "--compile", "default")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if done.returncode < 0 or "torch.compile crashed" in done.stderr:
        pytest.skip(f"torch.compile's CPU backend crashed on this processor: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    res, printed = json.loads((tmp_path / "b.json").read_text()), done.stdout
    assert res["compile"]["mode"] == "default" and res["compile"]["compile_seconds"] >= 0
    assert res["compile"]["break_even_images"] is None or res["compile"]["break_even_images"] > 0
    assert res["ratios"]["model_compiled_vs_eager"]["value"] > 0
    assert res["ratios"]["loop_fast_compiled_vs_eager"]["value"] > 0
    assert res["figures"]["loop_fast_compiled"]["precision"] == res["settings"]["precision"]
    assert "torch.compile default:" in printed
