"""Issue #17: nothing lost, nothing faked, nothing escapes. Each test reproduces one failure the
adversarial run found, through the command line where a user meets it, on the smoke profile."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import make_submission
import train_utils
from engine import grid, stats
from engine.checkpoint import RunLock, atomic_write, latest_checkpoint, load_checkpoint
from engine.grid import load_results, make_config, parse_overrides
from engine.notebook import Lab
from engine.plotting import plot_overlay
from experiments import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def run(capsys, *argv):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def smoke_args(tmp_path, *extra):
    from conftest import data_location

    return ("run", *extra, "--profile", "smoke", "--out", tmp_path / "res",
            "--checkpoints", tmp_path / "ck", "--data-dir", data_location(), "--no-progress")  # fmt: skip


def one_error_line(code, err, words):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and words in lines[0], lines[0]
    return lines[0]


def fake_result(name="norm_minmax", seed=0, acc=0.3, **change):
    """A results file as run_experiment writes it (figures made up; only readers are tested)."""
    cfg = make_config(name, "smoke", seed)
    r = dict(name=name, experiment=name, group=grid.GROUP_OF[name], profile="smoke", seed=seed,
             status="ok", message="", config=dataclasses.asdict(cfg), test_loss=2.0, test_acc=acc,
             history=dict(epoch=[1, 2], lr=[0.05, 0.05], train_loss=[2.2, 2.0],
                          train_acc=[0.2, 0.3], val_loss=[2.1, 2.0], val_acc=[0.2, 0.3],
                          seconds=[1.0, 1.0]),
             log=["[x]", "Test loss: 2.0000 | Test acc: 0.3000"])  # fmt: skip
    r.update(change)
    return r


def write_results(folder, *results):
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        (folder / f"{r['name']}__seed{r['seed']}.json").write_text(json.dumps(r))


# ------------------------------------------------------------ 1. a bad results file


def test_a_bad_results_file_is_reported_in_one_line_and_skipped(tmp_path, capsys):
    smoke = tmp_path / "smoke"
    write_results(smoke, fake_result("baseline", 0), fake_result("baseline", 1, acc=0.32),
                  fake_result("norm_minmax", 0), fake_result("norm_minmax", 1, acc=0.31),
                  fake_result("lr_0.2", 0, history={}))  # fmt: skip
    bad = smoke / "norm_minmax__seed0.json"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated, as by a full disk or a bad copy
    (smoke / "baseline__seed1 (copy).json").write_text(json.dumps(fake_result("baseline", 1)))

    assert stats.main(["--profile", "smoke", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    warnings = err.splitlines()
    assert len(warnings) == 3, err  # one line per bad file, nothing else
    assert any("norm_minmax__seed0.json" in w and "not valid JSON" in w for w in warnings)
    assert any("lr_0.2__seed0.json" in w and "history" in w for w in warnings)
    assert any("(copy).json" in w and "not what its name says" in w for w in warnings)
    assert "Traceback" not in err and "norm_minmax" in out
    # the copy is not a third baseline seed, and a file with no history is not "diverged"
    results = load_results("smoke", tmp_path, warn=lambda line: None)
    assert [r["seed"] for r in results["baseline"]] == [0, 1]
    assert [r["seed"] for r in results["norm_minmax"]] == [1] and "lr_0.2" not in results
    assert "diverged" not in out

    # the notebook replays what it can and says what it skipped (it died in its set-up cell)
    lab = Lab(profile="smoke", data=None, results_dir=tmp_path, seeds=2, train_missing=False)
    runs = lab.run(["norm_minmax"], echo=lambda line: None)
    assert [r["seed"] for r in runs["norm_minmax"]] == [1]
    assert "skipping" in capsys.readouterr().err
    assert bad.exists()  # reported, never deleted by a reader


def test_a_run_without_test_figures_is_not_called_diverged():
    rows = stats.summarize({"norm_minmax": [fake_result(), fake_result(seed=1, test_acc=None)]})
    assert rows[0]["status"] == {"ok": 1, "diverged": 0}
    assert "no test figures" in rows[0]["note"] and "diverged" not in rows[0]["note"]


# ------------------------------------------------------------ 2. divergence


def test_nan_validation_loss_ends_the_run_diverged(cifar, tmp_path, capsys):
    # issue #17's reproduction: lr 1000 gave "Val loss: nan", status ok, test loss 4e19
    code, out, _ = run(capsys, *smoke_args(tmp_path, "baseline", "--set", "lr=1000"))
    assert code == 0
    r = json.loads((tmp_path / "res" / "smoke" / "baseline+lr=1000.0__seed0.json").read_text())
    assert r["status"] == "diverged" and r["test_acc"] is None, r["message"]
    assert re.search(r"diverged: (training|validation) loss (nan|inf|[\d.e+]+) at epoch 1", out)
    assert "Val loss: nan" in out or "training loss" in r["message"]
    assert "Test loss" not in out  # the wrecked net is not scored as if it were a result
    assert r["log"][-1] == r["message"]


def test_an_exploding_finite_loss_ends_the_run_diverged(cifar, tmp_path, capsys, monkeypatch):
    # Every smoke loss (~2.3 at chance) is above a limit of 1: the check runs on real losses.
    monkeypatch.setattr(train_utils, "DIVERGENCE_LOSS", 1.0)
    code, out, _ = run(capsys, *smoke_args(tmp_path, "baseline"))
    assert code == 0
    r = json.loads((tmp_path / "res" / "smoke" / "baseline__seed0.json").read_text())
    assert r["status"] == "diverged" and "limit 1" in r["message"]
    assert re.search(r"training loss \d\.\d+ at epoch 1", r["message"])
    assert len(r["history"]["epoch"]) == 1  # stopped after the first epoch


def test_loss_axes_turn_logarithmic_when_one_run_explodes():
    calm = dict(epoch=[1, 2], train_loss=[2.0, 1.5], val_loss=[1.9, 1.6], train_acc=[0.3, 0.4],
                val_acc=[0.3, 0.4])  # fmt: skip
    wild = dict(calm, val_loss=[40_000.0, 19_932.0])
    axes = plot_overlay({"calm": calm}).axes
    assert [ax.get_yscale() for ax in axes] == ["linear"] * 4
    axes = plot_overlay({"calm": calm, "wild": wild}).axes
    assert [ax.get_yscale() for ax in axes] == ["linear", "log", "linear", "linear"]
    assert "log scale" in axes[1].get_ylabel()


# ------------------------------------------------------------ 3, 4, 7. --set


def test_set_values_take_their_fields_type():
    o = parse_overrides(["nesterov=false", "tta=1", "epochs=3", "lr=1e-2", "max_lr=None"])
    assert o == {"nesterov": False, "tta": True, "epochs": 3, "lr": 0.01, "max_lr": None}
    cfg = make_config("baseline", "smoke", overrides=o)
    assert cfg.nesterov is False  # it was the string 'false', which is true
    assert parse_overrides(["nesterov=TRUE"])["nesterov"] is True


def test_a_bad_name_never_touches_folders_outside_out(tmp_path, capsys):
    victim = tmp_path / "victim__seed0"
    victim.mkdir()
    (victim / "keep.txt").write_text("someone's work")
    out = tmp_path / "a" / "b"
    code, _, err = run(capsys, "run", "baseline", "--profile", "smoke", "--set", "name=../../victim",
                       "--out", out, "--checkpoints", out)  # fmt: skip
    one_error_line(code, err, "plain file name")
    assert (victim / "keep.txt").read_text() == "someone's work" and not out.exists()


# ------------------------------------------------------------ 5. output problems


def test_output_folder_problems_show_before_training(cifar, tmp_path, capsys):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    args = list(smoke_args(tmp_path, "baseline"))
    args[args.index("--out") + 1] = a_file
    code, out, err = run(capsys, *args)
    one_error_line(code, err, "is a file")
    assert "Epoch" not in out and not (tmp_path / "ck").exists()  # nothing trained, no folders


def test_a_failed_results_save_keeps_the_finished_run(cifar, tmp_path, capsys, monkeypatch):
    real = grid.save_json

    def disk_full(obj, path):
        if Path(path).parent == tmp_path / "res" / "smoke":
            raise OSError(28, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(grid, "save_json", disk_full)
    code, out, err = run(capsys, *smoke_args(tmp_path, "baseline"))
    line = one_error_line(code, err, "No space left on device")
    kept = tmp_path / "ck" / "smoke" / "baseline__seed0" / "baseline__seed0.json"
    assert str(kept) in line
    r = json.loads(kept.read_text())
    assert r["status"] == "ok" and len(r["history"]["epoch"]) == r["config"]["epochs"]


# ------------------------------------------------------------ 6. checkpoint checksum


def _flip_tensor_bytes(path: Path, n: int = 64) -> None:
    """Flip n bytes in the middle of the largest tensor record of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[start : start + n] = bytes(b ^ 0xFF for b in raw[start : start + n])
    path.write_bytes(bytes(raw))


def test_a_corrupted_checkpoint_is_refused_not_resumed(cifar, tmp_path, capsys):
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    train_utils.train(
        make_config("baseline", "smoke"), cifar, ckpt_dir=ck, progress=False, log=lambda s: None
    )  # fmt: skip  (an interrupted run's checkpoints)
    path = latest_checkpoint(ck)
    load_checkpoint(path)  # intact: loads
    _flip_tensor_bytes(path)
    torch.load(path, weights_only=True)  # torch itself does not notice
    code, out, err = run(capsys, *smoke_args(tmp_path, "baseline"), "--resume")
    one_error_line(code, err, f"{path} fails its sha256 check")
    assert path.exists() and not (tmp_path / "res" / "smoke" / "baseline__seed0.json").exists()


# ------------------------------------------------------------ 8. concurrency


def test_a_second_process_on_a_running_run_stops_in_one_line(cifar, tmp_path, capsys):
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    ck.mkdir(parents=True)
    (ck / "epoch_001.pt").write_bytes(b"the first process's checkpoint")
    # the first process's locks (this test holds them as that process would)
    first = RunLock([tmp_path / "res" / "smoke" / ".baseline__seed0.lock",
                     tmp_path / "ck" / "smoke" / ".baseline__seed0.lock"], "x").acquire()  # fmt: skip
    try:
        code, _, err = run(capsys, *smoke_args(tmp_path, "baseline"))
    finally:
        first.release()
    one_error_line(code, err, f"run baseline seed 0 (profile smoke) is already running (pid "
                              f"{os.getpid()})")  # fmt: skip
    assert (ck / "epoch_001.pt").exists()  # not deleted under the first process


# ------------------------------------------------------------ 9 and 10: a log file, the rest


def test_a_logged_run_keeps_the_labs_lines_whole(cifar, tmp_path):
    """`experiments.py run ... > log 2>&1`: no progress-bar frames, every lab line starts a line,
    and the results file is made with the user's umask."""
    from conftest import data_location

    log = tmp_path / "log"
    with open(log, "w") as f:
        # without --no-progress: the bar is asked for, and must stay out of a file
        argv = [str(a) for a in smoke_args(tmp_path, "baseline") if a != "--no-progress"]
        p = subprocess.run([sys.executable, "experiments.py", *argv], cwd=REPO, stdout=f,
                           stderr=subprocess.STDOUT, preexec_fn=lambda: os.umask(0o022),
                           env=dict(os.environ, OMP_NUM_THREADS="1"))  # fmt: skip
    text = log.read_text()
    assert p.returncode == 0, text
    assert "\r" not in text and "it/s" not in text and "epoch 1/" not in text
    assert re.search(r"^Test loss: \d+\.\d{4} \| Test acc: [01]\.\d{4}$", text, re.M), text
    assert re.search(r"^Epoch: 1$", text, re.M) and re.search(r"^Val loss: ", text, re.M)
    assert (tmp_path / "res" / "smoke" / "baseline__seed0.json").stat().st_mode & 0o777 == 0o644
    assert data_location() is not None


def test_resume_keeps_the_whole_runs_log_and_time_and_cleans_temp_files(cifar, tmp_path, capsys):
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    train_utils.train(make_config("baseline", "smoke"), cifar, ckpt_dir=ck, progress=False,
                      log=lambda s: None)  # fmt: skip
    first = load_checkpoint(ck / "epoch_001.pt")
    (ck / "epoch_002.pt").unlink()  # killed during epoch 2
    (ck / ".epoch_002.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    res = tmp_path / "res" / "smoke"
    res.mkdir(parents=True)
    (res / ".baseline__seed0.json.k1ll3d.tmp").write_text("{half")
    (res / ".norm_minmax__seed0.json.other.tmp").write_text("another run's save")
    code, out, _ = run(capsys, *smoke_args(tmp_path, "baseline"), "--resume")
    assert code == 0 and "Resumed from" in out
    r = json.loads((res / "baseline__seed0.json").read_text())
    log = "\n".join(r["log"])
    assert "Epoch: 1\n" in log and "Epoch: 2\n" in log and "Normalization none" in log
    assert r["wall_seconds"] > first["wall_seconds"] > 0
    assert not (res / ".baseline__seed0.json.k1ll3d.tmp").exists()
    assert (res / ".norm_minmax__seed0.json.other.tmp").exists()  # not this run's: left alone
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/full/.a.json.x.tmp"], cwd=REPO)
    assert ignored.returncode in (0, 128)  # git never shows them (128: not a git checkout)


def test_an_empty_shard_says_so(capsys, tmp_path):
    code, _, err = run(capsys, "run", "baseline", "--shard", "1/2", "--profile", "smoke",
                       "--out", tmp_path)  # fmt: skip
    assert code == 0 and "nothing to run: shard 1/2" in err and not any(tmp_path.iterdir())


def test_a_replayed_result_of_other_settings_is_flagged(cifar, tmp_path, capsys):
    write_results(tmp_path / "res" / "smoke",
                  fake_result("baseline", config=dict(fake_result("baseline")["config"], lr=0.3)))  # fmt: skip
    code, out, _ = run(capsys, *smoke_args(tmp_path, "baseline"))
    assert code == 0 and "replaying" in out
    assert re.search(r"warning: baseline__seed0.json was saved with other settings .*\(lr\)", out)


def test_a_data_location_that_is_a_plain_file(capsys, tmp_path):
    (tmp_path / "some.txt").write_text("hello")
    code, _, err = run(capsys, "run", "baseline", "--profile", "smoke", "--out", tmp_path / "res",
                       "--data-dir", tmp_path / "some.txt")  # fmt: skip
    one_error_line(code, err, "is a file; give the folder holding CIFAR-10")


def test_files_are_written_with_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.zip", lambda f: f.write(b"PK"))  # the zip is written this way
    finally:
        os.umask(old)
    assert (tmp_path / "a.zip").stat().st_mode & 0o777 == 0o640


def test_a_notebook_whose_cells_are_not_a_list(tmp_path, capsys):
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": {"0": {}}, "nbformat": 4}))
    with pytest.raises(make_submission.LabError, match="cells are not a list"):
        make_submission.check_notebook(nb)
