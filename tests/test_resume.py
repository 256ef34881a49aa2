"""Nothing lost: kill-and-resume is exact, saves are atomic, bad checkpoints are refused."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import data_location

from engine.checkpoint import checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint
from engine.errors import LabError
from train_utils import RunConfig, train

REPO = Path(__file__).resolve().parents[1]
TINY = dict(
    width=4,
    train_subset=256,
    val_size=128,
    test_subset=128,
    epochs=4,
    batch_size=64,
    augment="crop_flip",
    norm="standard_sampled",
    schedule="step",
    step_epochs=2,
)

RUNNER = textwrap.dedent(
    """
    import json, os, signal, sys
    from engine.data import load_cifar10
    from train_utils import RunConfig, train
    cfg = RunConfig(**json.loads(sys.argv[1]))
    ckpt, kill_at, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
    def log(line):
        # "Epoch: k" is printed after epoch k's validation and before its checkpoint:
        # killing there leaves epochs 1..k-1 saved and epoch k lost.
        if line == f"Epoch: {kill_at}":
            os.kill(os.getpid(), signal.SIGKILL)
    r = train(cfg, load_cifar10(download=False), ckpt_dir=ckpt, resume=True, progress=False, log=log)
    json.dump(r.history, open(out, "w"))
    """
)


def _run(tmp_path, name, kill_at):
    import json

    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    out = tmp_path / f"{name}.json"
    env = dict(
        os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", LAB3_DATA_DIR=str(data_location())
    )
    cmd = [
        sys.executable,
        str(script),
        json.dumps(TINY),
        str(tmp_path / name),
        str(kill_at),
        str(out),
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True), out


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(cifar, tmp_path):
    import json

    done, out_a = _run(tmp_path, "straight", kill_at=0)
    assert done.returncode == 0, done.stderr
    killed, _ = _run(tmp_path, "killed", kill_at=3)
    assert killed.returncode == -9  # SIGKILL
    assert [p.name for p in checkpoints(tmp_path / "killed")] == [
        "epoch_001.pt",
        "epoch_002.pt",
    ]
    resumed, out_b = _run(tmp_path, "killed", kill_at=0)
    assert resumed.returncode == 0, resumed.stderr

    a, b = json.loads(out_a.read_text()), json.loads(out_b.read_text())
    for key in a:
        if key != "seconds":  # wall time is the one thing that may differ
            assert a[key] == b[key], key
    wa = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    wb = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # weights and BN running statistics, bit for bit


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint({"model": {}, "optimizer": {}, "epoch": 1, "config": {}}, tmp_path)

    def half_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "disk full")

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(LabError, match="cannot write a checkpoint .*disk full.*--resume"):
        save_checkpoint({"model": {}, "optimizer": {}, "epoch": 2, "config": {}}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_001.pt"]  # no temp file left
    assert load_checkpoint(tmp_path / "epoch_001.pt")["epoch"] == 1
    assert latest_checkpoint(tmp_path).name == "epoch_001.pt"


def test_resume_ignores_temp_files_and_picks_the_newest(tmp_path):
    for e in (1, 2, 3):
        save_checkpoint({"model": {}, "optimizer": {}, "epoch": e, "config": {}}, tmp_path, keep=5)
    (tmp_path / ".epoch_004.pt.abc.tmp").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path).name == "epoch_003.pt"
    save_checkpoint({"model": {}, "optimizer": {}, "epoch": 4, "config": {}}, tmp_path, keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["epoch_003.pt", "epoch_004.pt"]


def test_truncated_checkpoint_is_an_error_naming_the_file(cifar, tmp_path):
    cfg = RunConfig(**dict(TINY, epochs=1))
    train(cfg, cifar, ckpt_dir=tmp_path, progress=False, log=lambda s: None)
    path = latest_checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(LabError, match=str(path.name)):
        train(
            RunConfig(**dict(TINY, epochs=2)),
            cifar,
            ckpt_dir=tmp_path,
            resume=True,
            progress=False,
            log=lambda s: None,
        )


def test_foreign_file_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "epoch_001.pt")
    with pytest.raises(LabError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "epoch_001.pt")


def test_checkpoint_of_another_config_is_refused(cifar, tmp_path):
    train(
        RunConfig(**dict(TINY, epochs=1)),
        cifar,
        ckpt_dir=tmp_path,
        progress=False,
        log=lambda s: None,
    )
    other = RunConfig(**dict(TINY, epochs=2, lr=0.1))
    with pytest.raises(LabError, match="different configuration .*lr"):
        train(other, cifar, ckpt_dir=tmp_path, resume=True, progress=False, log=lambda s: None)


def test_checkpoint_holds_everything_a_resume_needs(cifar, tmp_path):
    train(
        RunConfig(**dict(TINY, epochs=1)),
        cifar,
        ckpt_dir=tmp_path,
        progress=False,
        log=lambda s: None,
    )
    state = load_checkpoint(latest_checkpoint(tmp_path))  # weights_only=True inside
    assert {"model", "optimizer", "epoch", "config", "history", "rng"} <= state.keys()
    assert any(k.endswith("running_mean") for k in state["model"])  # BN statistics
    assert state["optimizer"]["state"]  # momentum buffers
    assert "torch" in state["rng"]  # the loader and augmentation draw from their own generators
    assert state["history"]["epoch"] == [1]
