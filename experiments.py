"""The lab's experiment grid: a baseline and named, small changes of it, runnable from the CLI.

    python experiments.py list
    python experiments.py run [NAME|GROUP ...] --profile full --seeds 3 --data-dir D --out results
    python experiments.py run --shard 1/4     # every 4th experiment from the second: see README

Each run writes results/<profile>/<name>__seed<k>.json (config, history, test figures, log,
device, library versions, wall time). A finished run is replayed, not rerun, unless --force.

Profiles (full, cpu, quick, smoke) scale the same grid to the hardware: lab/grid.py says how.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import engine.distributed
from engine.checkpoint import check_writable
from engine.data import load_cifar10
from engine.distributed import World
from engine.errors import LabError, run_cli
from engine.runtime import COMPILE_MODES, PRECISIONS, choose_precision, pick_device
from lab.grid import (
    GROUPS,
    PROFILES,
    RunOptions,
    default_profile,
    default_seeds,
    expand,
    make_config,
    parse_overrides,
    run_experiment,
    will_train,
)
from train_utils import train


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list groups and experiments")
    ls.add_argument(
        "--profile", default="full", help="the profile whose settings to show (default: full)"
    )
    run = sub.add_parser("run", help="run experiments (all by default)")
    run.add_argument("names", nargs="*", help="experiment or group names (default: all)")
    run.add_argument(
        "--profile",
        default=None,
        help="full | cpu | quick | smoke (default: full on CUDA, else quick)",
    )
    run.add_argument(
        "--data-dir", default=None, help="CIFAR-10 location (default: $LAB3_DATA_DIR or ./data)"
    )
    run.add_argument(
        "--seeds", type=int, default=None, help="run seeds 0..N-1 (default: 3 on full, else 1)"
    )
    run.add_argument("--out", default="results", help="results folder (default: results)")
    run.add_argument("--checkpoints", default="checkpoints", help="checkpoint folder")
    run.add_argument("--force", action="store_true", help="rerun finished runs")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue interrupted runs from their newest checkpoint",
    )
    run.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    run.add_argument(
        "--shard",
        default="0/1",
        help="i/n: run every n-th experiment from the i-th (parallel workers)",
    )
    run.add_argument(
        "--ckpt-every", type=int, default=1, help="checkpoint every N epochs (0: never)"
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a RunConfig setting, e.g. --set lr=0.1 (repeatable)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars (logs to files)")
    run.add_argument(
        "--compile",
        default=None,
        choices=COMPILE_MODES,
        dest="compile_mode",
        help="torch.compile the training step (default: off); reduce-overhead adds CUDA graphs",
    )
    run.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (default): bf16 where the GPU or CPU runs it natively, else "
        "fp32; bf16 or fp32 force one",
    )
    run.add_argument(
        "--distribute",
        default=None,
        choices=engine.distributed.MODES,
        help="under torchrun: ddp (default) trains each run on all processes; runs "
        "gives each process whole runs (rank r: runs r, r+N, ...)",
    )
    run.add_argument(
        "--sync-bn",
        action="store_true",
        help="with ddp on CUDA: SyncBatchNorm (statistics over the global batch)",
    )
    ap.epilog = _overview(sub)
    return ap.parse_args(argv)


def _overview(sub: argparse._SubParsersAction) -> str:
    """The top-level --help's list of commands and their options, from the parsers themselves."""
    lines = ["commands (python experiments.py COMMAND --help shows one in full):"]
    for choice in sub._choices_actions:
        lines.append(f"  {choice.dest:<6} {choice.help}")
        for action in sub.choices[choice.dest]._actions:
            if action.option_strings and action.dest != "help":
                flag = action.option_strings[-1] + (f" {action.metavar}" if action.metavar else "")
                lines.append(f"           {flag:<24} {action.help or ''}")
    return "\n".join(lines)


def run_in_step(
    world: World, name: str, profile: str, data, seed: int, options: RunOptions
) -> dict | None:
    """One experiment trained by every rank of a DDP group. Rank 0 decides whether it trains
    (a finished run is replayed) and tells the others before anything starts; then it runs the
    experiment as one process would (replay, resume, checkpoints, results file) while the others
    train beside it and touch no file. Returns rank 0's results dict (None elsewhere)."""
    trains = world.from_main(world.is_main and will_train(name, profile, seed, options))
    if world.is_main:  # (on an error rank 0 exits, and torchrun stops the others)
        return run_experiment(name, profile, data, seed, options, world)
    if trains:
        cfg = make_config(name, profile, seed, options.overrides)
        train(
            cfg,
            data,
            device=options.device,
            world=world,
            progress=False,
            log=lambda line: None,
            compile_mode=options.compile_mode,
            precision=options.precision,
        )
    return None


def _check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise LabError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


def _check_device(name: str | None):
    try:
        device = pick_device(name)
    except (RuntimeError, ValueError):  # torch.device("bogus")
        raise LabError(f"--device {name!r} is not a device; use cuda, cuda:N or cpu") from None
    if device.type not in ("cuda", "cpu"):  # mps, xpu, hpu, meta: the lab runs on neither
        raise LabError(f"--device {name!r} is not supported by this lab; use cuda, cuda:N or cpu")
    return device


def _check_data_dir(data_dir: str | None) -> None:
    """A file that is no tarball is no data location: say so before torchvision's 'could not be
    downloaded ([Errno 17] File exists)'."""
    if data_dir is None:
        return
    path = Path(data_dir).expanduser()
    if path.is_file() and not path.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise LabError(
            f"--data-dir {path} is a file; give the folder holding CIFAR-10 or a .tar.gz of it"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.cmd == "list":
        _check_profile(args.profile)
        for group, runs in GROUPS.items():
            print(f"{group}:")
            for name, change in runs.items():
                shown = ", ".join(f"{k}={v}" for k, v in change.items()) or "(the handout's run)"
                print(f"  {name:<18} {shown}")
        print("profiles: " + ", ".join(f"{k} {v}" for k, v in PROFILES.items()))
        return 0
    profile = _check_profile(args.profile or default_profile())
    if args.seeds is None:
        args.seeds = default_seeds(profile)
    if args.seeds <= 0:
        raise LabError(f"--seeds must be positive, got {args.seeds}")
    try:
        i, n = (int(v) for v in args.shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise LabError(f"--shard must look like i/n with 0 <= i < n, got {args.shard!r}") from None
    if args.ckpt_every < 0:
        raise LabError(
            f"--ckpt-every must be 0 (never) or a positive number of epochs, got {args.ckpt_every}"
        )
    selected = expand(args.names)
    names = selected[i::n]
    overrides = parse_overrides(args.set)
    for name in names:  # validate every config before spending time on data or training
        make_config(name, profile, overrides=overrides)
    device = _check_device(args.device)
    choose_precision(device, args.precision)  # a GPU without bf16 refused before loading data
    _check_data_dir(args.data_dir)
    if not names:
        print(
            f"nothing to run: shard {args.shard} of {len(selected)} experiment(s) is empty",
            file=sys.stderr,
        )
        return 0
    # Under torchrun: this process's rank, its device (cuda:LOCAL_RANK) and, for ddp, the group.
    world, device = engine.distributed.start(args.distribute, device, args.sync_bn)
    # Output problems must show now, not after hours of training (issue #17).
    if not world.helper:  # a DDP helper rank writes nothing
        check_writable(Path(args.out) / profile, "--out", keep=False)
        check_writable(Path(args.checkpoints) / profile, "--checkpoints", keep=False)
    data = load_cifar10(args.data_dir)
    options = RunOptions(
        out=args.out,
        ckpt_root=args.checkpoints,
        force=args.force,
        resume=args.resume,
        device=device,
        progress=not args.no_progress,
        data_dir=args.data_dir,
        ckpt_every=args.ckpt_every,
        overrides=overrides,
        compile_mode=args.compile_mode,
        precision=args.precision,
    )
    runs = [(name, seed) for name in names for seed in range(args.seeds)]
    if not world.ddp:  # --distribute runs: rank r takes runs r, r+N, ... (all of them alone)
        runs = engine.distributed.my_runs(runs, world)
    summary = []
    for name, seed in runs:
        if world.ddp:  # every rank trains this run; rank 0 reads and writes its files
            r = run_in_step(world, name, profile, data, seed, options)
        else:
            r = run_experiment(name, profile, data, seed, options)
        if r is not None:
            summary.append((r["name"], seed, r["status"], r["test_acc"]))
    engine.distributed.stop()
    if world.helper:
        return 0
    of = f" (rank {world.rank} of {world.size})" if world.size > 1 and not world.ddp else ""
    print(f"\nSummary{of}:")
    for name, seed, status, acc in summary:
        print(
            f"  {name:<18} seed {seed}  {status:<8} test acc {acc if acc is None else f'{acc:.4f}'}"
        )
    return 0


def cli(argv: list[str] | None = None) -> int:
    """main() with the user-facing error handling: one line on stderr, no traceback."""
    msg = "interrupted: finished runs are saved; rerun with --resume to continue"
    if not sys.stdout.isatty() and hasattr(sys.stdout, "reconfigure"):
        # In a log file (`> log 2>&1`) every line goes out whole, never split by a stderr write.
        sys.stdout.reconfigure(line_buffering=True)
    return run_cli(main, argv, interrupted=msg)


if __name__ == "__main__":
    sys.exit(cli())
