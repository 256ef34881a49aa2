"""torch.compile as an execution option: same training as eager, plain checkpoints, clear errors,
and never a dead process.

On the CPU torch.compile generates C++ through the system compiler (inductor); the tests that
compile skip where none is installed. Whatever can crash runs in a child process: train() probes
the compiled step in one first (runtime.probe_compile), and the tests that compile do their own
compiled run in one too, so a fault of the compiler backend on some processor becomes a skip
that names it while every other test runs. Whether compiling pays for itself is measured by
`python -m tools.bench --compile`, not here."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from engine import runtime
from engine.errors import LabError
from engine.runtime import check_compile_mode, choose_precision, probe_compile
from train_utils import RunConfig, train

# 256 training images in batches of 64: every batch has the same shape, so one compilation.
# One epoch: a net this small at chance level drifts apart quickly from rounding differences
# (2% in validation loss after a second epoch), which would hide a real fault.
TINY = dict(
    width=4,
    train_subset=256,
    val_size=200,
    test_subset=200,
    epochs=1,
    batch_size=64,
    norm="standard_exact",
    schedule="constant",
    lr=0.05,
)
needs_cc = pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile on the CPU needs a C compiler"
)
SEGFAULT = "import ctypes; ctypes.string_at(0)"  # a child that dies as the backend did


def test_unknown_mode_is_one_line_error():
    with pytest.raises(LabError, match="unknown compile mode 'fast'; choose one of default"):
        check_compile_mode("fast")
    with pytest.raises(LabError, match="unknown compile mode 'cuda-graph'"):  # gone (#25)
        check_compile_mode("cuda-graph")
    assert check_compile_mode(None) is None and check_compile_mode("default") == "default"


def test_unknown_mode_fails_before_training(cifar):
    with pytest.raises(LabError, match="unknown compile mode"):
        train(RunConfig(**TINY), cifar, progress=False, log=lambda s: None, compile_mode="fast")


def test_a_crashing_compiled_step_is_one_line_not_a_dead_process(monkeypatch, cifar, capsys):
    """The child stands in for inductor's crash on an AVX2-only EPYC (#31): the probe says so
    in one line, and neither the test process nor a run that asked for compile dies."""
    monkeypatch.setattr(runtime, "_PROBE", SEGFAULT)
    fp32 = choose_precision("cpu", "fp32")
    with pytest.raises(LabError, match=r"torch.compile crashed \(SIGSEGV\).*without --compile"):
        probe_compile(torch.nn.Linear(2, 2), [(4, 2)], "default", fp32)
    with pytest.raises(LabError, match="torch.compile crashed"):
        train(RunConfig(**TINY), cifar, progress=False, log=lambda s: None, compile_mode="default")
    monkeypatch.setattr(runtime, "_PROBE", "raise SystemExit('no compiler here')")
    with pytest.raises(LabError, match=r"torch.compile failed .*\(no compiler here\)"):
        probe_compile(torch.nn.Linear(2, 2), [(4, 2)], "default", fp32)


def test_the_cli_reports_a_crashing_compile_in_one_line(monkeypatch, tmp_path, capsys):
    from conftest import data_location

    from experiments import cli

    if data_location() is None:
        pytest.skip("CIFAR-10 not found: put cifar10-png.tar.gz in ../shared/data/")
    monkeypatch.setattr(runtime, "_PROBE", SEGFAULT)
    argv = ["run", "baseline", "--profile", "smoke", "--compile", "default", "--device", "cpu"]
    argv += ["--out", str(tmp_path), "--checkpoints", str(tmp_path / "ck"), "--no-progress"]
    assert cli([*argv, "--data-dir", str(data_location())]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.compile crashed (SIGSEGV)" in err[0]
    assert not (tmp_path / "smoke").exists() or not list((tmp_path / "smoke").glob("*.json"))


def _in_child(code: str, tmp_path) -> subprocess.CompletedProcess:
    """Run `code` in a child Python at the repository root, where a crash kills only the child;
    a compile fault of the processor's backend (a signal, or the probe's one line) skips."""
    from conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode < 0:
        pytest.skip(
            f"torch.compile's CPU backend (inductor) crashed on this processor (signal "
            f"{-done.returncode}): the compiler, not the lab's code; {last}"
        )
    if "torch.compile crashed" in done.stderr:
        pytest.skip(f"the compile probe refused this processor: {last}")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
@needs_cc
def test_compiled_run_matches_eager_and_saves_plain_weights(cifar, tmp_path, one_thread_per_module):
    # float32 on every CPU: where bf16 is native (auto's choice) fused and eager kernels round
    # apart by ~0.2% in 4 steps, which would hide the bounds below.
    quiet = dict(progress=False, log=lambda s: None, precision="fp32")
    eager = train(RunConfig(**TINY), cifar, **quiet)
    assert eager.env["compile"] is None
    _in_child(
        f"""
        import json, torch
        from conftest import data_location
        from engine.checkpoint import latest_checkpoint, load_checkpoint
        from engine.data import load_cifar10
        from train_utils import RunConfig, train
        torch.set_num_threads(1)
        data = load_cifar10(data_location(), cache_dir=".cache", download=False)
        r = train(RunConfig(**{TINY!r}), data, progress=False, log=lambda s: None,
                  precision="fp32", ckpt_dir={str(tmp_path)!r}, compile_mode="default")
        keys = [sorted(load_checkpoint(latest_checkpoint({str(tmp_path)!r}))["model"]),
                sorted(torch.load({str(tmp_path / "model.pt")!r}, weights_only=True))]
        out = dict(status=r.status, env=r.env, history=r.history, keys=keys)
        open({str(tmp_path / "out.json")!r}, "w").write(json.dumps(out))
        """.replace("from conftest", "import sys; sys.path.insert(0, 'tests'); from conftest"),
        tmp_path,
    )
    compiled = json.loads((tmp_path / "out.json").read_text())
    assert compiled["status"] == "ok" and compiled["env"]["compile"] == "default"
    # Inductor fuses and reorders float32 arithmetic, so not bit for bit (1e-5 apart in train
    # loss after 4 steps here); a wrong graph (say, BatchNorm in eval mode) is far further off.
    h = compiled["history"]
    assert h["train_loss"] == pytest.approx(eager.history["train_loss"], rel=1e-3)
    assert h["val_loss"] == pytest.approx(eager.history["val_loss"], rel=5e-3)
    for keys in compiled["keys"]:
        assert not any(k.startswith("_orig_mod") for k in keys)
        assert "conv1.weight" in keys


@pytest.mark.slow
@needs_cc
def test_cli_compile_flag_reaches_the_run(tmp_path):
    from conftest import data_location

    if data_location() is None:
        pytest.skip("CIFAR-10 not found: put cifar10-png.tar.gz in ../shared/data/")
    # The smoke profile's width-4 net in batches of 64 again: the same graph as above.
    argv = ["run", "baseline", "--profile", "smoke", "--set", "train_subset=256"]
    argv += ["--set", "batch_size=64", "--compile", "default", "--device", "cpu"]
    argv += ["--out", str(tmp_path), "--checkpoints", str(tmp_path / "ck"), "--no-progress"]
    argv += ["--data-dir", str(data_location())]
    _in_child(f"import sys; from experiments import cli; sys.exit(cli({argv!r}))", tmp_path)
    (path,) = (tmp_path / "smoke").glob("baseline*__seed0.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok" and result["env"]["compile"] == "default"
    assert "compile" not in result["config"]  # an execution choice, not part of the run's config
