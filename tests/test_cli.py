"""experiments.py from the command line: results files, replay, and one-line errors."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import cli
from lab import grid
from lab.grid import make_config
from tests.test_data import make_folder
from train_utils import RunConfig

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = cli([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, words):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and words in lines[0], lines[0]
    assert "Traceback" not in err


def test_list_names_every_group(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for group in ("baseline", "final", "norm", "aug", "lr", "batch"):
        assert f"{group}:" in out
    assert "norm_std_sampled" in out and "bs_2048_scaled" in out


def test_profiles_rescale_the_same_grid():
    full, quick = make_config("lr_cyclical", "full"), make_config("lr_cyclical", "quick")
    assert (full.epochs, full.width, full.train_subset) == (20, 64, None)
    assert quick.width < 64 and quick.epochs < 20 and quick.train_subset
    # schedule lengths shrink with the epochs, so the schedule keeps its shape
    assert quick.cycle_epochs / quick.epochs == pytest.approx(full.cycle_epochs / full.epochs)
    base = make_config("baseline", "full")
    assert (base.lr, base.schedule, base.step_epochs, base.gamma) == (0.05, "step", 10, 0.5)
    assert (base.epochs, base.batch_size, base.norm, base.augment) == (20, 128, "none", "none")


def test_the_cpu_profile_keeps_each_groups_lesson():
    """#33: the whole grid, 3 seeds, on two CPU cores; the step schedule's two phases and the
    batch group's spread of steps per epoch survive the scale."""
    from lab.grid import GROUPS, default_seeds

    base = make_config("baseline", "cpu")
    assert (base.width, base.train_subset, base.val_size, base.test_subset) == (
        16,
        7000,
        1000,
        None,
    )
    assert (base.epochs, base.step_epochs) == (10, 5)  # halved at epoch 5 of 10
    assert default_seeds("cpu") == 3 and default_seeds("full") == 3 and default_seeds("quick") == 1
    steps = {n: -(-7000 // make_config(n, "cpu").batch_size) for n in GROUPS["batch"]}
    assert (steps["bs_32"], steps["bs_512"], steps["bs_2048"]) == (219, 14, 4)
    assert make_config("lr_cyclical", "cpu").cycle_epochs == 2.5
    # nothing else of a run changes: the same settings as full, but for the scale
    scale = {"epochs", "step_epochs", "cycle_epochs", "warmup_epochs", "width", "val_size"}
    scale |= {"train_subset", "test_subset", "batch_size", "name"}
    for name in ["baseline", *GROUPS["aug"], *GROUPS["lr"]]:
        full, cpu = (vars(make_config(name, p)) for p in ("full", "cpu"))
        assert {k: v for k, v in full.items() if k not in scale} == {
            k: v for k, v in cpu.items() if k not in scale
        }, name


def committed_results() -> list[Path]:
    """The results files in git (results/<profile>/<name>__seed<k>.json), or beside the code."""
    ls = subprocess.run(["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True)
    if ls.returncode != 0:  # not a git checkout
        return sorted(REPO.glob("results/*/*__seed*.json"))
    return [REPO / p for p in ls.stdout.split() if "__seed" in p and p.endswith(".json")]


def test_every_committed_results_file_is_what_its_experiment_now_makes():
    """Each committed run replays as it is: saved_result takes it, without a warning, and its
    experiment, profile and seed make the configuration it records (a field added since the run
    was made has the default, which is what the run did)."""
    paths = committed_results()
    assert paths
    default = dataclasses.asdict(RunConfig())
    for path in paths:
        warnings = []
        profile = path.parent.name
        saved = json.loads(path.read_text())
        cfg = make_config(saved["experiment"], profile, saved["seed"])
        assert grid.saved_result(path, profile, warnings.append, cfg) == saved, warnings
        assert not warnings, path
        now = dataclasses.asdict(cfg)
        assert {k: now[k] for k in saved["config"]} == saved["config"], path
        assert all(now[k] == default[k] for k in set(now) - set(saved["config"])), path


def test_run_writes_parseable_results_then_replays(cifar, capsys, tmp_path):
    from conftest import data_location

    args = (
        "run",
        "baseline",
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
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    path = tmp_path / "res" / "smoke" / "baseline__seed0.json"
    r = json.loads(path.read_text())
    assert r["name"] == "baseline" and r["profile"] == "smoke" and r["status"] == "ok"
    assert len(r["history"]["val_acc"]) == r["config"]["epochs"]
    assert 0 <= r["test_acc"] <= 1 and r["env"]["torch"] == torch.__version__
    assert "Test loss:" in r["log"][-1] and "Test loss:" in out
    mtime = path.stat().st_mtime_ns
    code, out, _ = run_cli(capsys, *args)  # finished: replayed, not rerun
    assert code == 0 and "replaying" in out and path.stat().st_mtime_ns == mtime
    code, out, _ = run_cli(capsys, *args, "--force", "--set", "lr=0.02")
    assert code == 0
    assert (tmp_path / "res" / "smoke" / "baseline+lr=0.02__seed0.json").exists()


def test_a_diverging_run_does_not_stop_the_grid(cifar, capsys, tmp_path, monkeypatch):
    from conftest import data_location

    # lr 1e3 blows up within the first ~60 steps of a width-8 net (tests/test_train.py)
    monkeypatch.setitem(grid.EXPERIMENTS, "lr_1000", dict(lr=1e3, batch_size=32))
    monkeypatch.setitem(grid.GROUP_OF, "lr_1000", "lr")
    monkeypatch.setitem(
        grid.PROFILES,
        "smoke",
        dict(epochs_scale=0.05, width=8, val_size=200, train_subset=2000, test_subset=200),
    )
    code, out, _ = run_cli(
        capsys,
        "run",
        "lr_1000",
        "norm_minmax",
        "--profile",
        "smoke",
        "--out",
        tmp_path,
        "--checkpoints",
        tmp_path / "ck",
        "--data-dir",
        data_location(),
        "--no-progress",
    )
    assert code == 0
    diverged = json.loads((tmp_path / "smoke" / "lr_1000__seed0.json").read_text())
    assert diverged["status"] == "diverged" and "diverged" in diverged["message"]
    assert (
        json.loads((tmp_path / "smoke" / "norm_minmax__seed0.json").read_text())["status"] == "ok"
    )


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "resnet50"], "unknown experiment or group"),
        (["run", "baseline", "--profile", "huge"], "unknown profile"),
        (["run", "baseline", "--set", "lr=0"], "lr must be positive"),
        (["run", "baseline", "--set", "lr=-0.1"], "lr must be positive"),
        (["run", "baseline", "--set", "batch_size=0"], "batch_size must be positive"),
        (["run", "baseline", "--set", "epochs=0"], "epochs must be positive"),
        (["run", "baseline", "--set", "learning_rate=0.1"], "unknown setting learning_rate"),
        (["run", "baseline", "--seeds", "0"], "--seeds must be positive"),
        (["run", "baseline", "--shard", "3/2"], "--shard"),
        # issue #17: every --set value parsed by its field's type and range-checked up front
        (["run", "baseline", "--set", "nesterov=maybe"], "nesterov is true or false"),
        (["run", "baseline", "--set", "lr=abc"], "lr must be a number"),
        (["run", "baseline", "--set", "lr=nan"], "lr must be a finite number"),
        (["run", "baseline", "--set", "width=abc"], "width must be a whole number"),
        (["run", "baseline", "--set", "batch_size=1.5"], "batch_size must be a whole number"),
        (["run", "baseline", "--set", "epochs=2.5"], "epochs must be a whole number"),
        (["run", "baseline", "--set", "momentum=-1"], "momentum must be in [0, 1)"),
        (["run", "baseline", "--set", "momentum=1"], "momentum must be in [0, 1)"),
        (["run", "baseline", "--set", "weight_decay=-1"], "weight_decay must be >= 0"),
        (["run", "baseline", "--set", "label_smoothing=2"], "label_smoothing must be in [0, 1)"),
        (["run", "baseline", "--set", "train_subset=0"], "train_subset must be positive"),
        (["run", "baseline", "--set", "test_subset=0"], "test_subset must be positive"),
        (["run", "baseline", "--set", "val_size=0"], "val_size must be positive"),
        (["run", "baseline", "--set", "norm=zscore"], "unknown normalization"),
        (["run", "baseline", "--set", "augment=mixup"], "unknown augmentation"),
        (["run", "baseline", "--set", "lr"], "--set wants KEY=VALUE"),
        (["run", "baseline", "--device", "bogus"], "--device 'bogus' is not a device"),
        (["run", "baseline", "--set", "seed=7"], "seed cannot be set with --set"),
        (["run", "baseline", "--set", "name=../../victim"], "name cannot be set"),
        (["run", "baseline", "--set", "name=.hidden"], "name cannot be set"),
        (["run", "baseline", "--ckpt-every", "-5"], "--ckpt-every must be 0"),
        (["list", "--profile", "bogus"], "unknown profile 'bogus'"),
    ],
)
def test_bad_arguments_fail_with_one_line(capsys, tmp_path, argv, words):
    if "--profile" not in argv:
        argv = [*argv, "--profile", "smoke"]
    if argv[0] == "run":
        argv = [*argv, "--out", tmp_path, "--checkpoints", tmp_path / "ck"]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, words)
    assert not any(tmp_path.iterdir())  # nothing written


def _bad_data(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "no-such-folder"
    if kind == "empty":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if kind == "classes":
        return make_folder(tmp_path / "c", classes=("plane",) + tuple(f"k{i}" for i in range(9)))
    return make_folder(tmp_path / "b", bad_file=True)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "does not exist"),
        ("empty", "cannot read or download"),
        ("classes", "expected the 10 CIFAR-10 classes"),
        ("unreadable", "9999.png"),
    ],
)
def test_bad_data_folders_fail_with_one_line(capsys, tmp_path, monkeypatch, kind, words):
    monkeypatch.setenv("LAB3_CACHE_DIR", str(tmp_path / "cache"))
    # torchvision's download must fail fast and offline in this test, wherever it runs
    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", _no_network)
    code, _, err = run_cli(
        capsys,
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--out",
        tmp_path / "res",
        "--data-dir",
        _bad_data(tmp_path, kind),
    )
    assert_one_line_error(code, err, words)
    assert not (tmp_path / "res").exists()


def _no_network(self):
    raise RuntimeError("network unreachable")


def test_validation_split_larger_than_data(capsys, cifar, tmp_path):
    from conftest import data_location

    code, _, err = run_cli(
        capsys,
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--out",
        tmp_path,
        "--data-dir",
        data_location(),
        "--set",
        "val_size=60000",
    )
    assert_one_line_error(code, err, "does not fit")


def test_truncated_checkpoint_through_the_cli(cifar, capsys, tmp_path):
    from conftest import data_location

    ck = tmp_path / "ck" / "smoke" / "baseline__seed0"
    ck.mkdir(parents=True)
    (ck / "epoch_001.pt").write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run_cli(
        capsys,
        "run",
        "baseline",
        "--profile",
        "smoke",
        "--resume",
        "--out",
        tmp_path / "res",
        "--checkpoints",
        tmp_path / "ck",
        "--data-dir",
        data_location(),
        "--no-progress",
    )
    assert_one_line_error(code, err, "epoch_001.pt")
    assert (ck / "epoch_001.pt").exists()  # never deleted, never silently restarted
    assert not (tmp_path / "res" / "smoke" / "baseline__seed0.json").exists()


def test_the_real_entry_point_exits_non_zero_without_traceback(tmp_path):
    p = subprocess.run(
        [sys.executable, "experiments.py", "run", "nope", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stderr.strip().startswith("error: unknown experiment") and "Traceback" not in p.stderr
