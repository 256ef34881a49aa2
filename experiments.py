"""The lab's experiment grid from the command line (the grid and its profiles: lab/grid.py):
`list` names the experiments and groups; `run` trains each run into
<out>/<profile>/<name>__seed<k>.json, which replays it unless --force."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import engine.distributed
from engine.checkpoint import check_writable
from engine.data import load_cifar10
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
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list groups and experiments")
    ls.add_argument("--profile", default="full", help="the profile to check (default: full)")
    run = sub.add_parser("run", help="run experiments (all by default)")
    add = run.add_argument
    add("names", nargs="*", help="experiment or group names (default: all)")
    add("--profile", default=default_profile(), help="full|cpu|quick|smoke (default: %(default)s)")
    add("--data-dir", help="CIFAR-10 location (default: $LAB3_DATA_DIR or ./data)")
    add("--seeds", type=int, help="run seeds 0..N-1 (default: 3 on full and cpu, else 1)")
    add("--out", default="results", help="results folder (default: results)")
    add("--checkpoints", dest="ckpt_root", default="checkpoints", help="checkpoint folder")
    add("--force", action="store_true", help="rerun finished runs")
    add("--resume", action="store_true", help="continue interrupted runs from their checkpoints")
    add("--device", help="cuda | cpu (default: cuda if available)")
    add("--shard", default="0/1", help="i/n: run every n-th experiment from the i-th (workers)")
    add("--ckpt-every", type=int, default=1, help="checkpoint every N epochs (0: never)")
    add("--set", action="append", default=[], metavar="KEY=VALUE", help="set a RunConfig field")
    add("--no-progress", dest="progress", action="store_false", help="no progress bars (logs)")
    add("--compile", choices=COMPILE_MODES, dest="compile_mode", help="torch.compile the step")
    add("--precision", default="auto", choices=PRECISIONS, help="auto: bf16 if native, else fp32")
    add("--distribute", choices=engine.distributed.MODES, help="under torchrun (default ddp)")
    add("--sync-bn", action="store_true", help="with ddp on CUDA: BN over the global batch")
    ap.epilog = run.format_help()  # the top-level --help shows every option
    return ap.parse_args(argv)


def _check(args: argparse.Namespace) -> tuple[list[str], dict, object]:
    """This shard's experiments, the --set overrides and the device, all checked before data."""
    if args.seeds <= 0:
        raise LabError(f"--seeds must be positive, got {args.seeds}")
    try:
        i, n = (int(v) for v in args.shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise LabError(f"--shard must look like i/n with 0 <= i < n, got {args.shard!r}") from None
    if args.ckpt_every < 0:
        raise LabError(f"--ckpt-every must be 0 (never) or positive, got {args.ckpt_every}")
    selected, overrides = expand(args.names), parse_overrides(args.set)
    for name in selected[i::n]:  # every config valid before spending time on data or training
        make_config(name, args.profile, overrides=overrides)
    try:  # torch.device("bogus") raises; mps, xpu, hpu, meta: the lab runs on neither
        device = pick_device(args.device)
        assert device.type in ("cuda", "cpu")
    except (RuntimeError, ValueError, AssertionError):
        why = "is not a device or not supported by this lab"
        raise LabError(f"--device {args.device!r} {why}; use cuda or cpu") from None
    choose_precision(device, args.precision)  # a GPU without bf16 refused before loading data
    if not selected[i::n]:
        of = f"{len(selected)} experiment(s)"
        print(f"nothing to run: shard {args.shard} of {of} is empty", file=sys.stderr)
    return selected[i::n], overrides, device


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.profile not in PROFILES:
        raise LabError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}")
    if args.cmd == "list":
        for group, runs in GROUPS.items():
            print(f"{group}:")
            for name, change in runs.items():
                shown = ", ".join(f"{k}={v}" for k, v in change.items()) or "(the handout's run)"
                print(f"  {name:<18} {shown}")
        print("profiles: " + ", ".join(f"{k} {v}" for k, v in PROFILES.items()))
        return 0
    args.seeds = default_seeds(args.profile) if args.seeds is None else args.seeds
    names, args.overrides, device = _check(args)
    if not names:
        return 0
    # Under torchrun: this process's rank, its device (cuda:LOCAL_RANK) and, for ddp, the group.
    world, args.device = engine.distributed.start(args.distribute, device, args.sync_bn)
    if not world.helper:  # output problems shown now, not after hours of training (#17)
        check_writable(Path(args.out) / args.profile, "--out")
        check_writable(Path(args.ckpt_root) / args.profile, "--checkpoints")
    data = load_cifar10(args.data_dir)
    # the run options: the flags of the same names (--checkpoints: ckpt_root; --set: overrides)
    fields = {f.name for f in dataclasses.fields(RunOptions)}
    options = RunOptions(**{k: v for k, v in vars(args).items() if k in fields})
    runs = [(name, seed) for name in names for seed in range(args.seeds)]
    if not world.ddp:  # --distribute runs: rank r takes runs r, r+N, ...; ddp: every rank all
        runs = runs[world.rank :: world.size]
    done = [run_experiment(name, args.profile, data, seed, options, world) for name, seed in runs]
    engine.distributed.stop()
    if world.helper:
        return 0
    of = f" (rank {world.rank} of {world.size})" if world.size > 1 and not world.ddp else ""
    print(f"\nSummary{of}:")
    for r in done:
        acc = "None" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
        print(f"  {r['name']:<18} seed {r['seed']}  {r['status']:<8} test acc {acc}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """main() with the user-facing error handling: one line on stderr, no traceback."""
    msg = "interrupted: finished runs are saved; rerun with --resume to continue"
    if hasattr(sys.stdout, "reconfigure"):  # in a log file every line goes out whole
        sys.stdout.reconfigure(line_buffering=True)
    return run_cli(main, argv, interrupted=msg)


if __name__ == "__main__":
    sys.exit(cli())
