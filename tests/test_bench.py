"""bench.py end to end at a tiny size: its figures are measured there, never asserted here."""

import json
import shutil

import pytest

from tools import bench

TINY = [
    "--device",
    "cpu",
    "--width",
    "8",
    "--batch-size",
    "32",
    "--steps",
    "1",
    "--repeats",
    "2",
    "--workers",
    "0",
]


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
    assert res["compile"] is None
    flops = res["train_flops_per_image"]
    assert res["figures"]["loop_fast"]["tflops"] == pytest.approx(
        res["figures"]["loop_fast"]["images_per_s"] * flops / 1e12
    )
    assert res["figures"]["aug_pil"]["tflops"] is None
    assert "augmentation: batched / per-image PIL" in printed and "torch.compile" not in printed


def test_bench_compares_precisions_and_the_cpus_peak(tmp_path, capsys, one_thread_per_module):
    res, printed = run_bench(tmp_path, capsys, "--skip", "loop_pil,aug_pil,aug_batched")
    s = res["settings"]
    assert s["precision"] in ("bf16", "fp32") and s["precision_reason"]
    for kind in ("model", "loop"):
        keys = ("bf16_vs_fp32", "channels_last_vs_not", "fp32_channels_last_vs_not")
        for key in (f"{kind}_{k}" for k in keys):
            assert res["ratios"][key]["value"] > 0, key
    # bf16 and fp32, each with and without channels_last: the main step is one of them.
    models = [f for k, f in res["figures"].items() if k.startswith("model")]
    steps = {(f["precision"], f["label"].endswith("channels_last")) for f in models}
    assert steps == {("bf16", True), ("bf16", False), ("fp32", True), ("fp32", False)}
    peak = res["cpu_peak"]
    assert peak["gflops"]["fp32"] > 0 and peak["gflops"]["bf16"] >= peak["gflops"]["fp32"]
    loop = res["figures"]["loop_fast"]
    assert loop["peak_fraction"] == pytest.approx(
        loop["tflops"] * 1e3 / peak["gflops"][loop["precision"]]
    )
    assert "model step: bf16 / fp32" in printed and "CPU peak:" in printed


XEON = "vendor_id\t: GenuineIntel\ncpu family\t: 6\ncpu MHz\t\t: 2000.0\nflags\t\t: avx2 avx512f"
ZEN4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\ncpu MHz\t\t: 2500.0\nflags\t\t: avx512f"


def test_cpu_peak_counts_lanes_fma_and_pipes():
    xeon = bench.cpu_peak(2, XEON + " avx512_bf16")  # 16 lanes x 2 (FMA) x 2 pipes
    assert xeon["flops_per_cycle"] == {"fp32": 64, "bf16": 128}
    assert xeon["gflops"]["fp32"] == pytest.approx(2 * 2.0 * 64)
    zen4 = bench.cpu_peak(1, ZEN4)  # one 512-bit FMA a cycle; no AVX512-BF16: bf16 emulated
    assert zen4["flops_per_cycle"] == {"fp32": 32, "bf16": 32}
    assert bench.cpu_peak(1, XEON.replace(" avx512f", ""))["vector_bits"] == 256
    assert bench.cpu_peak(1, "flags\t: avx2") is None  # no clock given


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

    from conftest import REPO

    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "tools.bench", *TINY, "--compile", "default", "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if done.returncode < 0 or "torch.compile crashed" in done.stderr:
        pytest.skip(f"torch.compile's CPU backend crashed on this processor: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    res, printed = json.loads(out.read_text()), done.stdout
    assert res["compile"]["mode"] == "default" and res["compile"]["compile_seconds"] >= 0
    assert res["compile"]["break_even_images"] is None or res["compile"]["break_even_images"] > 0
    assert res["ratios"]["model_compiled_vs_eager"]["value"] > 0
    assert res["ratios"]["loop_fast_compiled_vs_eager"]["value"] > 0
    assert res["figures"]["loop_fast_compiled"]["precision"] == res["settings"]["precision"]
    assert "torch.compile default:" in printed


def test_skip_leaves_candidates_out_and_bad_names_fail(tmp_path, capsys, one_thread_per_module):
    res, printed = run_bench(tmp_path, capsys, "--skip", "loop_pil,aug_pil")
    assert "loop_pil" not in res["figures"] and "aug_pil" not in res["figures"]
    assert res["ratios"]["loop_fast_vs_pil"]["value"] is None
    assert bench.main([*TINY, "--skip", "model_hand", "--out", str(tmp_path / "b.json")]) == 2
    assert "--skip takes model_torchvision" in capsys.readouterr().err
