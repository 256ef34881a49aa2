"""experiments.py run --parallel N --deadline S (engine/parallel.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from engine.parallel import next_run
from tests.conftest import REPO, data_location


def _state(tmp_path):
    for sub in ("claims", "done"):
        (tmp_path / sub).mkdir()
    return tmp_path


def test_first_runs_start_then_only_runs_that_fit(tmp_path):
    state = _state(tmp_path)
    queue = [{"name": n, "seed": 0, "images": k} for n, k in (("a", 100), ("b", 1000), ("c", 10))]
    # Nothing finished yet: the first run starts however near the deadline is.
    assert next_run(state, queue, deadline=0.001, now=0.0)["name"] == "a"
    assert next_run(state, queue, deadline=0.001, now=0.001) is None  # the deadline has passed
    # a took 1 s for 100 images: b (10 s) does not fit in 5 s, c (0.1 s) does.
    (state / "done" / "a__seed0.json").write_text(json.dumps({"images": 100, "seconds": 1.0}))
    assert next_run(state, queue, deadline=5.0, now=0.0)["name"] == "c"
    assert next_run(state, queue, deadline=5.0, now=0.0) is None  # a and c taken, b too long
    assert next_run(state, queue, deadline=None, now=0.0)["name"] == "b"  # no deadline: all run
    assert next_run(state, queue, deadline=None, now=0.0) is None  # each run claimed once


def _run(tmp_path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "experiments.py",
        "run",
        "baseline",
        "lr_0.2",
        "--profile",
        "smoke",
        "--seeds",
        "2",
        "--data-dir",
        str(data_location()),
        "--out",
        str(tmp_path / "results"),
        "--checkpoints",
        str(tmp_path / "ck"),
        "--parallel",
        "2",
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    return p.stdout


RUNS = [(n, s) for s in (0, 1) for n in ("baseline", "lr_0.2")]


@pytest.mark.skipif(data_location() is None, reason="CIFAR-10 copy not found")
@pytest.mark.slow
def test_parallel_runs_each_missing_run_once_and_stops_at_the_deadline(tmp_path):
    # A deadline shorter than a worker's start and its first run: what is cut short writes
    # nothing, what never started is named in one line, whatever this machine's speed.
    out = _run(tmp_path, "--deadline", "8")
    results = tmp_path / "results" / "smoke"
    summary = dict(re.findall(r"^  (\S+ +seed \d)  (ok|cut short|not started)", out, re.M))
    assert len(summary) == 4, out
    for name, seed in RUNS:
        state = summary[f"{name:<18} seed {seed}"]
        assert (results / f"{name}__seed{seed}.json").exists() == (state == "ok")
    unstarted = [f"{n} seed {s}" for n, s in RUNS if summary[f"{n:<18} seed {s}"] == "not started"]
    lines = [ln for ln in out.splitlines() if ln.startswith("deadline: ") and "not started" in ln]
    if unstarted:
        assert len(lines) == 1 and lines[0].endswith(": " + ", ".join(unstarted)), out
    # Again without a deadline, continuing: each run still missing trains once, in 2 workers.
    out2 = _run(tmp_path, "--resume")
    for name, seed in RUNS:
        trained = out2.count(f"] [{name} seed {seed}, profile smoke]")
        assert trained == (0 if summary[f"{name:<18} seed {seed}"] == "ok" else 1), out2
        assert json.loads((results / f"{name}__seed{seed}.json").read_text())["status"] == "ok"
    assert "deadline: " not in out2
    assert not list((tmp_path / "ck" / "smoke").glob(".parallel-*"))  # its claims are gone


def test_parallel_flags_in_help_and_checked():
    from experiments import main

    p = subprocess.run(
        [sys.executable, "experiments.py", "run", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "--parallel" in p.stdout and "--deadline" in p.stdout
    from engine.errors import LabError

    with pytest.raises(LabError, match="--parallel must be at least 1"):
        main(["run", "baseline", "--profile", "smoke", "--parallel", "0"])
    with pytest.raises(LabError, match="--deadline must be a positive"):
        main(["run", "baseline", "--profile", "smoke", "--deadline", "0"])
