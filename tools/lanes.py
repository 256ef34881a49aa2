"""The grid under a deadline, in parallel lanes on one device: what a GPU session runs.

    python -m tools.lanes --profile full --lanes 8 --deadline-s 420 --session .gpu/session

The queue is `tools.runbook.plan`: every run missing from results/<profile>/ on lossless data and
from this session's own results, in the issue's order (seed 0, lr and batch groups first; the
final model; further seeds), longest first inside a tier. Each lane is a process that loads the
data once and claims the next run that is not taken (an O_EXCL claim file, so lanes need no
other coordination). Before claiming it checks that the run should finish before the deadline:
its estimate (tools.cost.run_cost, seconds of the H200's eager loop) times the slowdown this
session has measured on the runs it finished (1 until one finishes, so the first runs always
start). At the deadline the lanes are interrupted: a run cut short writes nothing, every
finished run's results file is already in `<session>/results/<profile>/`.

Why lanes: one eager ResNet18 step on 32x32 images cannot fill an H200 (kernel launches bound
it: about 10 ms a batch of 128 where the arithmetic needs about 2); six runs at a time gave
about 2.9x the images/s of one (results/full/gpu_run/, JPEG session of 2026-11-28). Kernels of
different processes take turns on the GPU rather than overlap, but one process launches while
another's kernels run. `--compile MODE` trains a run through torch.compile (reduce-overhead:
CUDA graphs, no launch cost per kernel) when it has at least `--compile-min-steps` steps, where
the seconds of compiling are paid back (bench.py measures both).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import LabError, run_cli
from tools.runbook import done_runs, plan

GRACE_S = 10  # after the deadline: seconds between SIGINT and SIGKILL


def claim(session: Path, job: dict) -> bool:
    path = session / "claims" / f"{job['name']}__seed{job['seed']}"
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def slowdown(session: Path) -> float:
    """Median of measured seconds / estimated seconds over this session's finished runs."""
    ratios = [json.loads(p.read_text())["ratio"] for p in (session / "calib").glob("*.json")]
    return statistics.median(ratios) if ratios else 1.0


def fits(job: dict, now: float, deadline: float, scale: float) -> bool:
    return now + job["est_units"] * scale <= deadline


def lane(args: argparse.Namespace) -> int:
    """One lane: load the data once, then claim and run queued runs until none fits."""
    import torch

    from engine.data import load_cifar10
    from engine.grid import run_experiment
    from engine.runtime import pick_device

    session = args.session
    queue = json.loads((session / "queue.json").read_text())
    deadline = queue["deadline"]
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    data = load_cifar10(args.data_dir)
    print(f"lane {args.lane}: {device}, data {data.source}, {deadline - time.time():.0f}s left")
    results = session / "results"
    while True:
        ran = False
        for job in queue["jobs"]:
            scale = slowdown(session)
            if not fits(job, time.time(), deadline, scale):
                continue  # too long for what is left: a shorter one later in the queue may fit
            if not claim(session, job):
                continue
            # Compiling pays for itself only on long runs.
            mode = args.compile if job["steps"] >= args.compile_min_steps else None
            print(f"lane {args.lane}: {job['name']} seed {job['seed']} (tier {job['tier']}, "
                  f"estimate {job['est_units'] * scale:.0f}s, compile {mode})", flush=True)  # fmt: skip
            r = None
            for how in dict.fromkeys((mode, None)):  # a compile that breaks: once more, eager
                try:
                    r = run_experiment(job["name"], queue["profile"], data, seed=job["seed"],
                                       out=results, ckpt_root=session / "checkpoints",
                                       device=device, progress=False, ckpt_every=0,
                                       compile_mode=how)  # fmt: skip
                    break
                except Exception as e:  # one broken run must not stop the lane's other runs
                    print(f"lane {args.lane}: {job['name']} seed {job['seed']} FAILED (compile "
                          f"{how}): {type(e).__name__}: {e}", flush=True)  # fmt: skip
            if r is None:
                ran = True
                break
            ratio = r["wall_seconds"] / job["est_units"]
            calib = session / "calib" / f"{job['name']}__seed{job['seed']}.json"
            calib.write_text(json.dumps({"ratio": ratio, "seconds": r["wall_seconds"]}))
            print(f"lane {args.lane}: {job['name']} seed {job['seed']} {r['status']} test acc "
                  f"{r['test_acc']} in {r['wall_seconds']:.0f}s ({ratio:.2f}x estimate)", flush=True)  # fmt: skip
            ran = True
            break  # re-read the queue from the top: higher tiers first
        if not ran:
            print(f"lane {args.lane}: nothing left that fits ({deadline - time.time():.0f}s left)")
            return 0


def choose_mode(bench_files: list[Path], wanted: str | None) -> str | None:
    """The execution mode for the grid: of the modes the bench files timed (bench.py --compile
    MODE at the batch the grid trains most), the one whose whole loop ran fastest, if it beat
    eager; `wanted` where no file says anything (a bench that failed or did not run)."""
    rates = {}
    for f in bench_files:
        try:
            res = json.loads(Path(f).read_text())
            figs = res["figures"]
        except (OSError, json.JSONDecodeError, KeyError):
            continue
        if "loop_fast" in figs:
            rates[None] = max(rates.get(None, 0.0), figs["loop_fast"]["images_per_s"])
        if res.get("compile") and "loop_fast_compiled" in figs:
            rates[res["compile"]["mode"]] = figs["loop_fast_compiled"]["images_per_s"]
    if len(rates) < 2:
        return wanted
    return max(rates, key=rates.get)


def warm(args: argparse.Namespace) -> int:
    """Compile once per batch size that the compiled runs use, each in its own process, on a
    synthetic data set with the runs' shapes: a full batch and the epoch's last, smaller one.
    The compiled code lands in inductor's on-disk cache, where the lanes find it."""
    from engine.grid import make_config

    jobs = plan(args.names, args.profile, 1, set())
    sizes = sorted({make_config(j["name"], args.profile).batch_size for j in jobs
                    if j["steps"] >= args.compile_min_steps})  # fmt: skip
    print(f"warming torch.compile {args.compile} for batch sizes {sizes}", flush=True)
    t0 = time.time()
    procs = {bs: subprocess.Popen([sys.executable, "-m", "tools.lanes", "--warm-batch", str(bs),
                                   "--profile", args.profile, "--compile", args.compile,
                                   "--threads", str(args.threads)]
                                  + (["--device", args.device] if args.device else []))
             for bs in sizes}  # fmt: skip
    codes = {bs: p.wait() for bs, p in procs.items()}
    ok = all(c == 0 for c in codes.values())
    print(f"warm-up {'ok' if ok else 'FAILED'} after {time.time() - t0:.0f}s: exit codes {codes}")
    return 0 if ok else 1


def warm_batch(args: argparse.Namespace) -> int:
    """One short compiled epoch at batch size `args.warm_batch` on random images."""
    import torch

    from engine.data import Cifar10
    from engine.grid import make_config
    from engine.stats import train_size
    from train_utils import train

    torch.set_num_threads(args.threads)
    bs = args.warm_batch
    n = train_size({"val_size": make_config("baseline", args.profile).val_size,
                    "train_subset": make_config("baseline", args.profile).train_subset})  # fmt: skip
    subset = bs + (n % bs or bs)  # the two shapes an epoch of the real run meets
    g = torch.Generator().manual_seed(0)
    data = Cifar10(torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.randint(0, 10, (50_000,), generator=g),
                   torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.randint(0, 10, (10_000,), generator=g), "random images (compile warm-up)")  # fmt: skip
    cfg = make_config("baseline", args.profile, overrides=dict(
        batch_size=bs, train_subset=subset, epochs=1, test_subset=256))  # fmt: skip
    t0 = time.time()
    train(cfg, data, device=args.device, progress=False, log=lambda s: None,
          compile_mode=args.compile)  # fmt: skip
    print(f"batch {bs}: compiled and ran {subset} images in {time.time() - t0:.1f}s", flush=True)
    return 0


def grid(args: argparse.Namespace) -> int:
    """Plan, start the lanes, stop them at the deadline, write the session's grid log."""
    session = args.session
    t0 = time.time()
    deadline = t0 + args.deadline_s
    for sub in ("claims", "calib", "logs"):
        (session / sub).mkdir(parents=True, exist_ok=True)
    for p in (session / "claims").iterdir():  # claims of runs a past deadline cut short
        p.unlink()
    results = session / "results" / args.profile
    done = done_runs(args.done / args.profile) | done_runs(results, lossless_only=False)
    jobs = plan(args.names, args.profile, args.seeds, done)
    (session / "queue.json").write_text(json.dumps(
        {"profile": args.profile, "deadline": deadline, "jobs": jobs}, indent=1))  # fmt: skip
    log = open(session / "logs" / "grid.log", "a")  # noqa: SIM115 (open until the process ends)

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(f"grid: {len(jobs)} runs to do ({len(done)} done already), {args.lanes} lanes, "
        f"deadline {args.deadline_s:.0f}s, compile {args.compile} for runs of >= "
        f"{args.compile_min_steps} steps")  # fmt: skip
    common = [sys.executable, "-m", "tools.lanes", "--session", str(session), "--threads",
              str(args.threads), "--compile-min-steps", str(args.compile_min_steps)]  # fmt: skip
    for flag in ("device", "data_dir", "compile"):
        if getattr(args, flag):
            common += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    procs = []
    for i in range(min(args.lanes, len(jobs))):
        out = open(session / "logs" / f"lane{i}.log", "a")  # noqa: SIM115 (the lane's stdout)
        procs.append(subprocess.Popen([*common, "--lane", str(i)], stdout=out,
                                      stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
    interrupted = False
    while any(p.poll() is None for p in procs):
        if time.time() > deadline and not interrupted:
            say(f"deadline reached after {time.time() - t0:.0f}s: interrupting the lanes")
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGINT)
            interrupted = True
        if interrupted and time.time() > deadline + GRACE_S:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
        time.sleep(0.5)
    finished = done_runs(results, lossless_only=False)
    left = plan(args.names, args.profile, args.seeds, done | finished)
    say(f"grid ended after {time.time() - t0:.0f}s: {len(finished)} runs finished in this "
        f"session, {len(left)} still missing; lane exit codes {[p.returncode for p in procs]}")  # fmt: skip
    for j in left:
        say(f"  missing: {j['name']} seed {j['seed']} (tier {j['tier']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="experiments or groups (default: the whole grid)")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1, in the order above")
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--deadline-s", type=float, default=420, help="seconds from now")
    ap.add_argument("--session", type=Path, default=Path(".gpu/session"))
    ap.add_argument("--done", type=Path, default=Path("results"),
                    help="committed results: lossless runs here are not run again")  # fmt: skip
    ap.add_argument("--device", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)),
                    help="torch CPU threads per lane (default: $OMP_NUM_THREADS, else 1); more "
                    "threads than cores over all lanes makes every lane crawl")  # fmt: skip
    ap.add_argument("--compile", default=None, help="torch.compile mode for long runs")
    ap.add_argument("--compile-min-steps", type=int, default=2000)
    ap.add_argument("--warm", action="store_true", help="only fill the compile cache")
    ap.add_argument("--choose", nargs="+", type=Path, metavar="BENCH_JSON",
                    help="print the mode (or 'eager') whose loop these bench files timed fastest")  # fmt: skip
    ap.add_argument("--lane", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--warm-batch", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.lanes < 1 or args.seeds < 1:
        raise LabError("--lanes and --seeds must be at least 1")
    if (args.warm or args.warm_batch) and args.compile is None:
        raise LabError("--warm needs a torch.compile mode: --compile reduce-overhead, ...")
    if args.choose:
        print(choose_mode(args.choose, args.compile) or "eager")
        return 0
    if args.warm_batch is not None:
        return warm_batch(args)
    if args.warm:
        return warm(args)
    return lane(args) if args.lane is not None else grid(args)


if __name__ == "__main__":
    sys.exit(run_cli(main, errors=(LabError, OSError)))
