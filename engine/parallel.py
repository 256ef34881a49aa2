"""`experiments.py run --parallel N --deadline S`: N worker processes on one device.

For one big GPU that a single small run cannot fill, or a cluster job with a time limit. Each
worker loads the data once and claims the next missing (experiment, seed) run in the queue's
order with an O_EXCL claim file, so workers need no other coordination. Under a deadline a
worker starts a run only if it should finish in time: its training images (epochs x images)
times the median seconds per image of the runs finished in this invocation (before any has
finished, the first runs always start). At the deadline the workers get SIGINT, then SIGKILL
after GRACE_S: a run cut short writes no results file and keeps its checkpoints for --resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRACE_S = 10  # after the deadline: seconds between SIGINT and SIGKILL


def _key(run: dict) -> str:
    return f"{run['name']}__seed{run['seed']}"


def claim(state: Path, run: dict) -> bool:
    """True for the one process that creates this run's claim file first."""
    try:
        os.close(os.open(state / "claims" / _key(run), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def seconds_per_image(state: Path) -> float | None:
    """Median seconds per training image of the runs finished so far (None before any)."""
    rates = []
    for p in (state / "done").glob("*.json"):
        d = json.loads(p.read_text())
        if d.get("seconds") and d.get("images"):
            rates.append(d["seconds"] / d["images"])
    return statistics.median(rates) if rates else None


def next_run(state: Path, queue: list[dict], deadline: float | None, now: float) -> dict | None:
    """Claim the first unclaimed run of `queue` that should finish by `deadline`."""
    if deadline is not None and now >= deadline:
        return None
    rate = seconds_per_image(state) if deadline is not None else None
    for run in queue:
        if rate is not None and now + rate * run["images"] > deadline:
            continue  # too long for what is left; a shorter one later may fit
        if claim(state, run):
            return run
    return None


def run_images(cfg) -> int:
    """A run's training images over all its epochs: what its time is estimated from."""
    from engine.settings import train_size

    return cfg.epochs * train_size({"val_size": cfg.val_size, "train_subset": cfg.train_subset})


def worker(spec_path: str, index: int) -> int:
    """One worker: load the data once, then claim and train runs until none is left or fits."""
    import torch

    from engine.checkpoint import save_json
    from engine.data import load_cifar10
    from engine.grid import RunOptions, run_experiment

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    spec = json.loads(Path(spec_path).read_text())
    state = Path(spec["state"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])

    def echo(line: str) -> None:
        print(f"[{index}] {line}", flush=True)

    options = RunOptions(**spec["options"], echo=echo)
    data = load_cifar10(options.data_dir)
    while (run := next_run(state, spec["queue"], spec["deadline"], time.time())) is not None:
        t0 = time.time()
        outcome = {"images": run["images"]}
        try:
            r = run_experiment(run["name"], spec["profile"], data, run["seed"], options)
            outcome.update(seconds=time.time() - t0, status=r["status"])
        except KeyboardInterrupt:
            return 130  # the deadline: nothing written, checkpoints kept
        except Exception as e:  # one broken run must not stop the others
            echo(f"{run['name']} seed {run['seed']} FAILED: {type(e).__name__}: {e}")
            outcome.update(status="failed", error=f"{type(e).__name__}: {e}")
        save_json(outcome, state / "done" / f"{_key(run)}.json")  # atomic: others read it
    return 0


def run_parallel(
    runs: list[dict],
    profile: str,
    parallel: int,
    deadline: float | None,
    state_root: Path,
    options,
) -> list[dict]:
    """Train `runs` ({"name", "seed", "images"}, in order) in `parallel` worker processes and
    return each with its "outcome": ok | diverged | failed | cut short | not started.
    `deadline` is a time.time() value, None for none; `options` (grid.RunOptions) go to the
    workers as JSON, all but echo (each worker prefixes its lines with its number)."""
    if not runs:
        return []
    state_root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix=".parallel-", dir=state_root))
    for sub in ("claims", "done"):
        (state / sub).mkdir()
    threads = 0 if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // parallel)
    plain = {k: v for k, v in vars(options).items() if k != "echo"}
    spec = dict(queue=runs, profile=profile, deadline=deadline, options=plain)
    (state / "spec.json").write_text(json.dumps({**spec, "state": str(state), "threads": threads}))
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "engine.parallel", str(state / "spec.json")]
    procs = [
        subprocess.Popen(
            [*cmd, str(i)], env={**os.environ, "PYTHONPATH": path}, start_new_session=True
        )
        for i in range(min(parallel, len(runs)))
    ]
    kill_at = None  # set when the deadline has passed and the workers got SIGINT
    try:
        while any(p.poll() is None for p in procs):
            now = time.time()
            if deadline is not None and now >= deadline and kill_at is None:
                _signal(procs, signal.SIGINT)
                kill_at = now + GRACE_S
            if kill_at is not None and now >= kill_at:
                _signal(procs, signal.SIGKILL)
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl-C: stop the workers the same way, then say so
        _signal(procs, signal.SIGINT)
        try:
            for p in procs:
                p.wait(timeout=GRACE_S)
        finally:
            _signal(procs, signal.SIGKILL)
        raise
    for run in runs:
        done = state / "done" / f"{_key(run)}.json"
        if done.exists():
            run["outcome"] = json.loads(done.read_text())["status"]
        elif (state / "claims" / _key(run)).exists():
            run["outcome"] = "cut short"
        else:
            run["outcome"] = "not started"
    for p in sorted(state.rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    state.rmdir()
    return runs


def _signal(procs: list[subprocess.Popen], sig: int) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(p.pid, sig)


def _worker_main() -> int:
    from engine.errors import LabError

    try:
        return worker(sys.argv[1], int(sys.argv[2]))
    except KeyboardInterrupt:  # stopped at the deadline before its first run
        return 130
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_worker_main())
