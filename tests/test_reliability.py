"""Issue #17: nothing lost, nothing faked, nothing escapes. Each test reproduces one failure the
adversarial run found, through the command line where a user meets it, on the smoke profile."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import make_submission
import train_utils
from engine.checkpoint import atomic_write, latest_checkpoint, load_checkpoint
from engine.plotting import plot_overlay
from experiments import cli
from lab import grid, notebook, stats
from lab.grid import load_results, make_config, parse_overrides
from lab.notebook import Lab

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def run(capsys, *argv):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def smoke_args(tmp_path, *extra):
    from conftest import data_location

    return (
        "run",
        *extra,
        "--profile",
        "smoke",
        "--out",
        tmp_path / "res",
        "--checkpoints",
        tmp_path / "ck",
        "--data-dir",
        data_location(),
        "--no-progress",
    )


def one_error_line(code, err, words):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and words in lines[0], lines[0]
    return lines[0]


def fake_result(name="norm_minmax", seed=0, acc=0.3, **change):
    """A results file as run_experiment writes it (figures made up; only readers are tested)."""
    cfg = make_config(name, "smoke", seed)
    r = dict(
        name=name,
        experiment=name,
        group=grid.GROUP_OF[name],
        profile="smoke",
        seed=seed,
        status="ok",
        message="",
        config=dataclasses.asdict(cfg),
        test_loss=2.0,
        test_acc=acc,
        history=dict(
            epoch=[1, 2],
            lr=[0.05, 0.05],
            train_loss=[2.2, 2.0],
            train_acc=[0.2, 0.3],
            val_loss=[2.1, 2.0],
            val_acc=[0.2, 0.3],
            seconds=[1.0, 1.0],
        ),
        log=["[x]", "Test loss: 2.0000 | Test acc: 0.3000"],
    )
    r.update(change)
    return r


def write_results(folder, *results):
    folder.mkdir(parents=True, exist_ok=True)
    for r in results:
        (folder / f"{r['name']}__seed{r['seed']}.json").write_text(json.dumps(r))


# ------------------------------------------------------------ 1. a bad results file


def test_a_bad_results_file_is_reported_in_one_line_and_skipped(tmp_path, capsys):
    smoke = tmp_path / "smoke"
    write_results(
        smoke,
        fake_result("baseline", 0),
        fake_result("baseline", 1, acc=0.32),
        fake_result("norm_minmax", 0),
        fake_result("norm_minmax", 1, acc=0.31),
        fake_result("lr_0.2", 0, history={}),
    )
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
    calm = dict(
        epoch=[1, 2],
        train_loss=[2.0, 1.5],
        val_loss=[1.9, 1.6],
        train_acc=[0.3, 0.4],
        val_acc=[0.3, 0.4],
    )
    wild = dict(calm, val_loss=[40_000.0, 19_932.0])
    axes = plot_overlay({"calm": calm}).axes
    assert [ax.get_yscale() for ax in axes] == ["linear"] * 4
    axes = plot_overlay({"calm": calm, "wild": wild}).axes
    assert [ax.get_yscale() for ax in axes] == ["linear", "log", "linear", "linear"]
    assert "log scale" in axes[1].get_ylabel()
    # a run that diverged (status "diverged") is drawn dashed and leaves the axes to the rest (#31)
    axes = plot_overlay({"calm": calm, "wild": wild}, diverged={"wild"}).axes
    assert [ax.get_yscale() for ax in axes] == ["linear"] * 4
    assert axes[1].get_ylim()[1] < 2.0  # calm's 1.6..1.9 fills the panel; wild leaves the top
    wild_line = [ln for ln in axes[1].lines if "diverged" in ln.get_label()]
    assert len(wild_line) == 1 and wild_line[0].get_linestyle() == "--"


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
    code, _, err = run(
        capsys,
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--set",
        "name=../../victim",
        "--out",
        out,
        "--checkpoints",
        out,
    )
    one_error_line(code, err, "name cannot be set")
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
    """A full disk at the results file: one line naming the checkpoints, which keep the whole
    run; the rerun with --resume only tests it again, and saves what the first run would have."""
    real = grid.save_json

    def disk_full(obj, path):
        if Path(path).parent == tmp_path / "res" / "smoke":
            raise OSError(28, "No space left on device")
        real(obj, path)

    monkeypatch.setattr(grid, "save_json", disk_full)
    code, out, err = run(capsys, *smoke_args(tmp_path, "baseline"))
    line = one_error_line(code, err, "No space left on device")
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    assert str(ck) in line and "--resume" in line
    first = out[out.index("Test loss") :].splitlines()[0]
    epochs = make_config("baseline", "smoke").epochs
    assert latest_checkpoint(ck) is not None
    monkeypatch.setattr(grid, "save_json", real)
    code, out, err = run(capsys, *smoke_args(tmp_path, "baseline"), "--resume")
    assert code == 0 and "Resumed from" in out and "Epoch:" not in out, out + err
    r = json.loads((tmp_path / "res" / "smoke" / "baseline__seed0.json").read_text())
    assert r["status"] == "ok" and len(r["history"]["epoch"]) == epochs
    assert r["log"][-1] == first and not ck.exists()  # the same test figures, bit for bit


# ------------------------------------------------------------ 6. a damaged checkpoint


def test_a_truncated_checkpoint_is_refused_not_resumed(cifar, tmp_path, capsys):
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    train_utils.train(
        make_config("baseline", "smoke"), cifar, ckpt_dir=ck, progress=False, log=lambda s: None
    )  # fmt: skip  (an interrupted run's checkpoints)
    path = latest_checkpoint(ck)
    load_checkpoint(path)  # intact: loads
    path.write_bytes(path.read_bytes()[:1000])  # a bad copy
    code, out, err = run(capsys, *smoke_args(tmp_path, "baseline"), "--resume")
    one_error_line(code, err, f"checkpoint {path} cannot be loaded")
    assert path.exists() and not (tmp_path / "res" / "smoke" / "baseline__seed0.json").exists()


# ------------------------------------------------------------ 9 and 10: a log file, the rest


def test_a_logged_run_keeps_the_labs_lines_whole(cifar, tmp_path):
    """`experiments.py run ... > log 2>&1`: no progress-bar frames, every lab line starts a line,
    and the results file is made with the user's umask."""
    from conftest import data_location

    log = tmp_path / "log"
    with open(log, "w") as f:
        # without --no-progress: the bar is asked for, and must stay out of a file
        argv = [str(a) for a in smoke_args(tmp_path, "baseline") if a != "--no-progress"]
        p = subprocess.run(
            [sys.executable, "experiments.py", *argv],
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.umask(0o022),
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
    text = log.read_text()
    assert p.returncode == 0, text
    assert "\r" not in text and "it/s" not in text and "epoch 1/" not in text
    assert re.search(r"^Test loss: \d+\.\d{4} \| Test acc: [01]\.\d{4}$", text, re.M), text
    assert re.search(r"^Epoch: 1$", text, re.M) and re.search(r"^Val loss: ", text, re.M)
    assert (tmp_path / "res" / "smoke" / "baseline__seed0.json").stat().st_mode & 0o777 == 0o644
    assert data_location() is not None


def test_resume_keeps_the_whole_runs_log_and_time_past_temp_files(cifar, tmp_path, capsys):
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    train_utils.train(
        make_config("baseline", "smoke"), cifar, ckpt_dir=ck, progress=False, log=lambda s: None
    )
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
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/full/.a.json.x.tmp"], cwd=REPO)
    assert ignored.returncode in (0, 128)  # git never shows them (128: not a git checkout)


def test_an_empty_shard_says_so(capsys, tmp_path):
    code, _, err = run(
        capsys, "run", "baseline", "--shard", "1/2", "--profile", "smoke", "--out", tmp_path
    )
    assert code == 0 and "nothing to run: shard 1/2" in err and not any(tmp_path.iterdir())


def test_a_replayed_result_of_other_settings_is_flagged(cifar, tmp_path, capsys):
    write_results(
        tmp_path / "res" / "smoke",
        fake_result("baseline", config=dict(fake_result("baseline")["config"], lr=0.3)),
    )
    code, out, _ = run(capsys, *smoke_args(tmp_path, "baseline"))
    assert code == 0 and "replaying" in out
    assert re.search(r"warning: baseline__seed0.json was saved with other settings .*\(lr\)", out)


def test_a_data_location_that_is_a_plain_file(capsys, tmp_path):
    (tmp_path / "some.txt").write_text("hello")
    code, _, err = run(
        capsys,
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--out",
        tmp_path / "res",
        "--data-dir",
        tmp_path / "some.txt",
    )
    one_error_line(code, err, "is neither a folder nor a .tar.gz of CIFAR-10 images; put")


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


# ------------------------------------------------------------ issue #27 (reliability round 3)


def test_27_1_resume_on_other_data_is_refused_and_runs_of_other_data_are_not_pooled(
    cifar, tmp_path, capsys
):
    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    train_utils.train(
        make_config("baseline", "smoke"), cifar, ckpt_dir=ck, progress=False, log=lambda s: None
    )  # an interrupted run's checkpoints
    (ck / "epoch_002.pt").unlink()
    assert load_checkpoint(ck / "epoch_001.pt")["data"] == cifar.source
    other = dataclasses.replace(cifar, source="another copy (sha256 0123abcd)")
    with pytest.raises(train_utils.LabError, match="trained on other data") as e:
        grid.run_experiment(
            "baseline",
            "smoke",
            other,
            options=grid.RunOptions(
                out=tmp_path / "res",
                ckpt_root=tmp_path / "ck",
                resume=True,
                progress=False,
                echo=lambda s: None,
            ),
        )
    assert "\n" not in str(e.value) and (ck / "epoch_001.pt").exists()

    smoke = tmp_path / "out" / "smoke"
    write_results(
        smoke,
        fake_result("baseline", 0, data="a"),
        fake_result("baseline", 1, data="a"),
        fake_result("norm_minmax", 0, data="b"),
        fake_result("norm_minmax", 1, data="b"),
    )
    code = run_cli_stats(["--profile", "smoke", "--out", tmp_path / "out"], capsys)
    one_error_line(*code, "results mix data")
    write_results(
        smoke,
        fake_result("norm_minmax", 0, data="a", env={"precision": "bf16"}),
        fake_result("norm_minmax", 1, data="a"),
    )
    one_error_line(
        *run_cli_stats(["--profile", "smoke", "--out", tmp_path / "out"], capsys),
        "results mix precisions",
    )
    lab = Lab(
        profile="smoke", data=None, results_dir=tmp_path / "out", seeds=2, train_missing=False
    )
    runs = lab.run(["baseline", "norm_minmax"], echo=lambda line: None)
    rows, text = lab.compare({"norm_minmax": runs["norm_minmax"]})
    assert rows == [] and "mix precisions" in text


def run_cli_stats(argv, capsys):
    from engine.errors import run_cli

    capsys.readouterr()
    code = run_cli(stats.main, [str(a) for a in argv])
    return code, capsys.readouterr().err


def test_27_2_a_preview_result_under_full_is_reported_and_skipped(tmp_path, capsys):
    full = tmp_path / "full"
    write_results(full, fake_result("baseline", 0), fake_result("baseline", 1, profile="full"))
    code, err = run_cli_stats(["--profile", "full", "--out", tmp_path], capsys)
    assert code == 0 and "Traceback" not in err
    (line,) = err.splitlines()
    assert "baseline__seed0.json" in line and "'smoke' result, not 'full'" in line
    assert [r["seed"] for r in load_results("full", tmp_path, warn=lambda s: None)["baseline"]] == [
        1
    ]


def test_27_3b_a_failed_final_weights_save_keeps_the_test_figures_and_results(
    cifar, tmp_path, capsys, monkeypatch
):
    real = train_utils.atomic_write

    def disk_full(path, write):
        if Path(path).name == "model.pt":
            raise OSError(28, "No space left on device")
        real(path, write)

    monkeypatch.setattr(train_utils, "atomic_write", disk_full)
    code, out, err = run(capsys, *smoke_args(tmp_path, "baseline", "--ckpt-every", "0"))
    assert code == 0 and "Traceback" not in err, err
    assert "Test loss" in out and "model.pt" in out and "epochs saved before" not in out + err
    r = json.loads((tmp_path / "res" / "smoke" / "baseline__seed0.json").read_text())
    assert r["status"] == "ok" and r["test_acc"] is not None


def test_27_3c_an_unusable_results_file_is_trained_again_and_replaced(tmp_path):
    path = grid.result_path(tmp_path, "smoke", "baseline", 0)
    assert path == tmp_path / "smoke" / "baseline__seed0.json"
    path.parent.mkdir()
    path.write_text("{half")
    lines = []
    assert grid.saved_result(path, "smoke", lines.append) is None  # so the run trains again
    assert len(lines) == 1 and "skipping" in lines[0] and "rerun the run to replace it" in lines[0]


def test_27_6_collisions_same_folder_and_name_setting(cifar, tmp_path, capsys):
    from conftest import data_location

    code, _, err = run(capsys, *smoke_args(tmp_path, "norm_minmax", "--set", "name=baseline"))
    one_error_line(code, err, "name cannot be set")
    both = tmp_path / "both"
    smoke = both / "smoke"
    smoke.mkdir(parents=True)
    code, out, err = run(
        capsys,
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--out",
        both,
        "--checkpoints",
        both,
        "--data-dir",
        data_location(),
        "--no-progress",
    )
    assert code == 0 and "Test loss" in out, err
    assert (smoke / "baseline__seed0.json").exists()


def test_27_5_one_line_for_bad_values_devices_results_files_and_outputs(tmp_path, capsys):
    from conftest import data_location

    data = data_location() or tmp_path
    for setting, words in [
        ("width=0", "width must be positive"),
        ("lr=inf", "lr must be a finite number"),
        ("gamma=-1", "gamma must be positive"),
        ("val_size=50000", "does not fit"),
    ]:
        code, _, err = run(
            capsys,
            "run",
            "baseline",
            "--profile",
            "smoke",
            "--out",
            tmp_path / "o",
            "--data-dir",
            data,
            "--set",
            setting,
        )
        one_error_line(code, err, words)
    for device in ("mps", "xpu", "hpu", "meta"):
        code, _, err = run(
            capsys,
            "run",
            "baseline",
            "--profile",
            "smoke",
            "--out",
            tmp_path / "o",
            "--data-dir",
            data,
            "--device",
            device,
        )
        one_error_line(code, err, "not supported by this lab")
    assert not (tmp_path / "o").exists()

    # valid JSON with wrong value types: skipped in one line each, by stats and the notebook
    smoke = tmp_path / "r" / "smoke"
    write_results(
        smoke,
        fake_result("baseline", 0),
        fake_result("baseline", 1, test_loss="2.0"),
        fake_result("norm_minmax", 0, history=dict(fake_result()["history"], val_acc=["x", 1])),
        fake_result("norm_minmax", 1, env=[]),
        fake_result("lr_0.2", 0, log=[1, 2]),
    )
    code, err = run_cli_stats(["--profile", "smoke", "--out", tmp_path / "r"], capsys)
    assert code == 0 and "Traceback" not in err and len(err.splitlines()) == 4, err
    assert all("wrong value types" in w or "not lists of numbers" in w for w in err.splitlines())
    # a run that diverged at test: test loss null, test accuracy a number
    line = notebook.test_line(
        fake_result(status="diverged", test_loss=None, message="diverged: test loss nan")
    )
    assert line.startswith("Test loss: nan | Test acc: 0.3000") and "diverged" in line

    for p in smoke.glob("*.json"):
        if p.name != "baseline__seed0.json":
            p.unlink()
    (smoke / "summary.md").mkdir()  # stats --write cannot write its file
    code, err = run_cli_stats(["--profile", "smoke", "--out", tmp_path / "r", "--write"], capsys)
    one_error_line(code, err, "summary.md")


def test_27_7_identical_scores_from_real_seeds_give_no_verdict(tmp_path, capsys):
    smoke = tmp_path / "smoke"
    write_results(
        smoke,
        fake_result("baseline", 0, acc=0.30),
        fake_result("baseline", 1, acc=0.30),
        fake_result("norm_minmax", 0, acc=0.345),
        fake_result("norm_minmax", 1, acc=0.345),
    )
    code, err = run_cli_stats(["--profile", "smoke", "--out", tmp_path], capsys)
    assert code == 0
    rows = stats.summarize(load_results("smoke", tmp_path, warn=lambda s: None))
    assert rows[1]["verdict"] == "no spread measured"
    out = stats.format_table(rows)
    assert "no spread measured" in out and "better" not in out
    assert "+4.50, +4.50" not in out


def test_27_8_an_image_copy_missing_a_class_is_warned_about(cifar, tmp_path):
    keep = cifar.train_labels != 3
    partial = dataclasses.replace(
        cifar,
        train_images=cifar.train_images[keep],
        train_labels=cifar.train_labels[keep],
        source="a partial copy",
    )
    lines = []
    options = grid.RunOptions(
        out=tmp_path / "res", ckpt_root=tmp_path / "ck", progress=False, echo=lines.append
    )
    r = grid.run_experiment("baseline", "smoke", partial, options=options)
    warning = [ln for ln in lines if ln.startswith("warning: the training images have no")]
    assert len(warning) == 1 and cifar.classes[3] in warning[0], lines
    assert warning[0] in r["log"]
