"""The GPU session's logistics on the CPU: parts and their checksums, the plan's order, the
deadline, packing within $OUT's limits, unpacking with provenance, continuing where a session
stopped. The lanes train the smoke profile on a tiny PNG copy (a few hundred images)."""

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from engine.errors import LabError
from tools import lanes, runbook

REPO = Path(__file__).resolve().parents[1]
LOSSLESS = "CIFAR-10 PNG copy (lossless), sha256 a7acb84d…"
JPEG = "CIFAR-10 JPEG copy (quality 75, lossy), sha256 4a07d12c…"


def test_committed_manifest_names_the_lossless_copy():
    manifest = runbook.read_manifest()
    assert manifest["cifar10-png.tar.gz"] == (
        "a7acb84d67bea18994403a8acdad34accf95858aaedb6a340ae89c6f86c28498"
    )
    assert list(manifest)[1:] == runbook.part_names("cifar10-png.tar.gz", 3)


def test_split_check_join_round_trip(tmp_path):
    src = tmp_path / "data.tar.gz"
    src.write_bytes(np.random.default_rng(0).bytes(10_001))
    manifest = runbook.split_file(src, tmp_path / "parts", n=3)
    assert [(tmp_path / "parts" / n).stat().st_size for n in list(manifest)[1:]] == [3334] * 2 + [
        3333
    ]
    assert set(runbook.check_parts(tmp_path / "parts", manifest).values()) == {"ok"}
    out = runbook.join_parts(tmp_path / "parts", manifest)
    assert out.read_bytes() == src.read_bytes()


def test_missing_or_damaged_part_is_named_and_nothing_is_joined(tmp_path):
    src = tmp_path / "data.tar.gz"
    src.write_bytes(b"x" * 3000)
    parts = tmp_path / "parts"
    manifest = runbook.split_file(src, parts, n=3)
    names = list(manifest)[1:]
    (parts / names[0]).unlink()
    (parts / names[2]).write_bytes(b"y" * 1000)  # same size, other bytes
    status = runbook.check_parts(parts, manifest)
    assert status == {names[0]: "missing", names[1]: "ok", names[2]: "bad sha256"}
    with pytest.raises(LabError, match=f"cannot join: {names[0]} missing, {names[2]} bad sha256"):
        runbook.join_parts(parts, manifest)
    assert not (parts / "data.tar.gz").exists()


def test_lossless_sources_count_and_jpeg_ones_do_not():
    assert runbook.is_lossless(LOSSLESS)
    assert runbook.is_lossless("torchvision CIFAR-10 (official batches)")
    assert not runbook.is_lossless(JPEG)
    assert not runbook.is_lossless("image folder /tmp/x/cifar10-jpeg")
    assert not runbook.is_lossless("CIFAR-10 PNG and JPEG folder (partly lossy)")


def _result(path: Path, name: str, seed: int, data: str, finished: str = "2026-12-01T00:00:00",
            status: str = "ok", acc: float = 0.9) -> None:  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"name": name, "seed": seed, "data": data, "status": status,
                                "finished_at": finished, "test_acc": acc}))  # fmt: skip


def test_plan_order_and_what_counts_as_done(tmp_path):
    folder = tmp_path / "full"
    _result(folder / "lr_0.2__seed0.json", "lr_0.2", 0, LOSSLESS)
    _result(folder / "bs_32__seed0.json", "bs_32", 0, JPEG)  # lossy: still to do
    _result(folder / "lr_0.01__seed0.json", "lr_0.01", 0, LOSSLESS, status="diverged")
    done = runbook.done_runs(folder)
    assert done == {("lr_0.2", 0)}
    jobs = runbook.plan(None, "full", 3, done)
    keys = [(j["name"], j["seed"]) for j in jobs]
    assert ("lr_0.2", 0) not in keys and ("bs_32", 0) in keys and ("lr_0.01", 0) in keys
    tiers = [j["tier"] for j in jobs]
    assert tiers == sorted(tiers)
    seed0 = [j for j in jobs if j["seed"] == 0]
    groups = [runbook_group(j["name"]) for j in seed0]
    first_other = next(i for i, g in enumerate(groups) if g not in ("lr", "batch"))
    assert set(groups[:first_other]) == {"lr", "batch"}  # lr and batch groups first
    assert groups[-1] == "final" and groups.count("final") == 1  # then the final model
    assert all(j["seed"] == 0 for j in jobs[: len(seed0)])  # then seeds 1 and 2
    assert jobs[0]["name"].startswith("bs_32")  # the longest runs of a tier go first


def runbook_group(name: str) -> str:
    from engine.grid import GROUP_OF

    return GROUP_OF[name]


def test_deadline_fit_uses_the_measured_slowdown(tmp_path):
    job = {"est_units": 10.0}
    assert lanes.fits(job, now=100, deadline=115, scale=1.0)
    assert not lanes.fits(job, now=100, deadline=115, scale=2.0)
    (tmp_path / "calib").mkdir()
    assert lanes.slowdown(tmp_path) == 1.0  # nothing measured yet: the first runs start
    for i, r in enumerate((1.5, 2.0, 8.0)):
        (tmp_path / "calib" / f"r{i}.json").write_text(json.dumps({"ratio": r}))
    assert lanes.slowdown(tmp_path) == 2.0


def test_pack_drops_weights_and_stays_under_the_limit(tmp_path):
    s = tmp_path / "session"
    _result(s / "results" / "full" / "baseline__seed0.json", "baseline", 0, LOSSLESS)
    (s / "checkpoints").mkdir()
    (s / "checkpoints" / "model.pt").write_bytes(b"w" * 1000)
    (s / "logs").mkdir()
    (s / "logs" / "lane0.log").write_bytes(np.random.default_rng(0).bytes(50_000))
    r = runbook.pack(s, tmp_path / "out" / "gpu_results.tar.gz")
    with tarfile.open(tmp_path / "out" / "gpu_results.tar.gz") as tar:
        names = tar.getnames()
    assert "results/full/baseline__seed0.json" in names and "logs/lane0.log" in names
    assert not any(n.endswith(".pt") for n in names) and r["logs"]
    r = runbook.pack(s, tmp_path / "small.tar.gz", limit=20_000)  # logs go first
    assert not r["logs"] and r["bytes"] <= 20_000
    with pytest.raises(LabError, match="exceed"):
        runbook.pack(s, tmp_path / "tiny.tar.gz", limit=10)


def test_unpack_keeps_newer_and_committed_moves_jpeg_and_writes_provenance(tmp_path):
    s = tmp_path / "session"
    for name in ("baseline", "lr_0.2", "bs_512", "aug_jitter"):
        _result(s / "results" / "full" / f"{name}__seed0.json", name, 0, LOSSLESS,
                finished="2026-12-02T00:00:00")  # fmt: skip
    _result(s / "results" / "full" / "norm_minmax__seed0.json", "norm_minmax", 0, JPEG)
    (s / "provenance.json").write_text(json.dumps(
        {"session": "20261202T000000Z", "gpu": "NVIDIA H200, 580.159.04", "data": LOSSLESS,
         "command": "bash scripts/gpu_full_grid.sh \"$OUT\" grid"}))  # fmt: skip
    runbook.pack(s, tmp_path / "gpu_results.tar.gz")
    into = tmp_path / "results" / "full"
    _result(into / "baseline__seed0.json", "baseline", 0, JPEG, acc=0.82)  # lossy: replaced
    _result(into / "lr_0.2__seed0.json", "lr_0.2", 0, LOSSLESS, finished="2026-12-03", acc=0.5)
    _result(into / "bs_512__seed0.json", "bs_512", 0, LOSSLESS, finished="2026-12-01", acc=0.4)
    r = runbook.unpack(tmp_path / "gpu_results.tar.gz", into)
    assert sorted(n for n, _, _ in r["written"]) == [
        "aug_jitter__seed0.json", "baseline__seed0.json", "bs_512__seed0.json"]  # fmt: skip
    assert r["kept"] == ["lr_0.2__seed0.json"] and r["lossy"] == ["norm_minmax__seed0.json"]
    assert json.loads((into / "lr_0.2__seed0.json").read_text())["test_acc"] == 0.5
    assert json.loads((into / "baseline__seed0.json").read_text())["data"] == LOSSLESS
    aside = tmp_path / "results" / "full-jpeg" / "baseline__seed0.json"
    assert json.loads(aside.read_text())["test_acc"] == 0.82
    prov = (into / "PROVENANCE.md").read_text()
    assert "NVIDIA H200" in prov and LOSSLESS in prov and "gpu_full_grid.sh" in prov
    assert (into / "gpu_sessions" / "20261202T000000Z" / "provenance.json").exists()
    again = runbook.unpack(tmp_path / "gpu_results.tar.gz", into)  # idempotent
    assert again["written"] == [] and (into / "PROVENANCE.md").read_text().count("## Session") == 1


def _png_copy(root: Path, train_per_class: int = 40, test_per_class: int = 10) -> Path:
    """A tiny CIFAR-shaped PNG copy: train/<class>/NNNNN.png, test/<class>/NNNNN.png."""
    from PIL import Image

    from engine.data import CLASSES

    rng = np.random.default_rng(0)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        for c, name in enumerate(CLASSES):
            d = root / "tiny-png" / split / name
            d.mkdir(parents=True)
            for i in range(per):
                px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(px).save(d / f"{c * per + i:05d}.png")
    return root / "tiny-png"


def _grid(tmp_path, data, deadline, names, seeds):
    cmd = [sys.executable, "-m", "tools.lanes", *names, "--profile", "smoke", "--seeds",
           str(seeds), "--lanes", "2", "--threads", "1", "--deadline-s", str(deadline),
           "--session", str(tmp_path / "session"), "--done", str(tmp_path / "results"),
           "--data-dir", str(data), "--device", "cpu"]  # fmt: skip
    env = {"LAB3_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return (tmp_path / "session" / "logs" / "grid.log").read_text().split("grid: ")[-1]


@pytest.mark.slow
def test_lanes_run_the_missing_runs_under_a_deadline_and_continue(tmp_path):
    data = _png_copy(tmp_path)
    t0 = time.time()
    results = tmp_path / "session" / "results" / "smoke"
    # A committed lossless seed 0 of the baseline is not run again.
    _result(tmp_path / "results" / "smoke" / "baseline__seed0.json", "baseline", 0, LOSSLESS)
    # A deadline already past when the lanes are up: nothing starts, nothing half-written.
    log = _grid(tmp_path, data, 0.2, ["baseline", "lr_0.2"], 1)
    assert "1 runs to do (1 done already)" in log and "1 still missing" in log
    assert not list(results.glob("*.json"))
    # Session 1 runs what is missing of its selection.
    log = _grid(tmp_path, data, 60, ["baseline", "lr_0.2"], 1)
    assert "0 still missing" in log
    assert {f.name for f in results.glob("*.json")} == {"lr_0.2__seed0.json"}
    # Session 2 continues with more: only what is still missing runs.
    log = _grid(tmp_path, data, 60, ["baseline", "lr_0.2", "bs_512"], 2)
    assert "4 runs to do (2 done already)" in log and "0 still missing" in log
    assert {f.name for f in results.glob("*.json")} == {
        "lr_0.2__seed0.json", "baseline__seed1.json", "lr_0.2__seed1.json", "bs_512__seed0.json",
        "bs_512__seed1.json"}  # fmt: skip
    r = json.loads((results / "bs_512__seed0.json").read_text())
    assert r["status"] == "ok" and runbook.is_lossless(r["data"])
    # And the session packs, and unpacks into a results folder beside the committed run.
    runbook.pack(tmp_path / "session", tmp_path / "gpu_results.tar.gz")
    rep = runbook.unpack(tmp_path / "gpu_results.tar.gz", tmp_path / "results" / "smoke")
    assert len(rep["written"]) == 5
    assert runbook.done_runs(tmp_path / "results" / "smoke") == {
        ("baseline", 0), ("baseline", 1), ("lr_0.2", 0), ("lr_0.2", 1), ("bs_512", 0),
        ("bs_512", 1)}  # fmt: skip
    assert time.time() - t0 < 120


def test_choose_mode_takes_the_fastest_loop_the_bench_files_timed(tmp_path):
    def bench_file(name, mode, eager, compiled):
        figs = {"loop_fast": {"images_per_s": eager}}
        if mode:
            figs["loop_fast_compiled"] = {"images_per_s": compiled}
        (tmp_path / name).write_text(json.dumps(
            {"figures": figs, "compile": {"mode": mode} if mode else None}))  # fmt: skip
        return tmp_path / name

    a = bench_file("a.json", "reduce-overhead", 30_000, 45_000)
    b = bench_file("b.json", "max-autotune", 31_000, 52_000)
    assert lanes.choose_mode([a, b], "x") == "max-autotune"
    slow = bench_file("c.json", "max-autotune", 31_000, 20_000)
    assert lanes.choose_mode([slow], "x") is None  # eager beat it
    assert lanes.choose_mode([tmp_path / "missing.json"], "max-autotune") == "max-autotune"
