"""What the lab's training costs, counted rather than timed: FLOPs per training image, the
experiment grid's images and optimizer steps, and what a measured speed turns them into.

    python -m tools.cost                    # the full grid, one and three seeds
    python -m tools.cost --bench results/bench/bench_nvidia-h200.json   # at that bench's loop speed

bench.py measures images/s; these functions turn that into minutes for the grid and into the
compute rate that a time target asks for (issue #5: the full grid in under 8 minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.errors import LabError, run_cli
from lab.grid import expand, make_config
from resnet18 import resnet18
from train_utils import TEST_IMAGES, train_size

GRID_TARGET_MINUTES = 8  # issue #5: the full grid in under 8 minutes on one H200


def train_flops_per_image(width: int = 64) -> float:
    """FLOPs of forward + backward for one 32x32 image, counted by torch.utils.flop_counter on
    the CPU (convolutions and matrix products; BatchNorm, ReLU and the optimizer are left out)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = resnet18(num_classes=10, width=width)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / len(y)


# An evaluated image costs a forward pass, about a third of a training step's forward and
# backward (the backward pass computes two products per layer, the forward one).
EVAL_COST = 1 / 3


def workload(names: list[str] | None = None, profile: str = "full", seeds: int = 1) -> dict:
    """What the grid (or `names`) costs in training images and optimizer steps, and the images
    evaluated (the validation split every epoch, the test set once; test-time augmentation's
    extra views left out)."""
    runs = expand(names or [])
    images = steps = evaluated = 0
    for name in runs:
        cfg = make_config(name, profile)
        n = train_size(dataclasses.asdict(cfg))
        images += cfg.epochs * n
        steps += cfg.epochs * math.ceil(n / cfg.batch_size)
        evaluated += cfg.epochs * cfg.val_size + (cfg.test_subset or TEST_IMAGES)
    return {
        "profile": profile,
        "experiments": len(runs),
        "seeds": seeds,
        "train_images": images * seeds,
        "steps": steps * seeds,
        "eval_images": evaluated * seeds,
    }


# A run's seconds on a launch-bound GPU: a fixed cost per optimizer step (kernel launches, which
# do not shrink with the batch) plus a cost per image. Read off the H200's eager loop at batch 128
# (results/bench/bench_nvidia-h200.json: 12,586 images/s, 10.2 ms a step), split by the FLOPs:
# 128 images x 3.33 GFLOP at about 200 TFLOP/s is 2 ms, the other 8 ms are launches. Used to order
# and fit runs under a deadline (tools/lanes.py rescales it by what the session measures).
STEP_S = 0.008
IMAGE_S = 1.6e-5


def run_cost(name: str, profile: str = "full") -> dict:
    """One run's training images, optimizer steps and estimated seconds (STEP_S, IMAGE_S)."""
    w = workload([name], profile)
    return {
        "images": w["train_images"],
        "steps": w["steps"],
        "est_units": w["steps"] * STEP_S + w["train_images"] * IMAGE_S,
    }


def grid_projection(rate: dict[str, float], flops_per_image: float) -> dict:
    """The full grid's training images over measured speeds (images/s, keyed by what was timed),
    one run at a time (runs sharing a launch-bound GPU in parallel can beat it; a bigger batch
    runs faster), and the compute rate that the 8-minute target asks for."""
    out = {}
    for seeds in (1, 3):
        w = workload(profile="full", seeds=seeds)
        out[f"seeds_{seeds}"] = {
            **w,
            "tflops_for_target": w["train_images"]
            * flops_per_image
            / (GRID_TARGET_MINUTES * 60)
            / 1e12,
            **{f"minutes_{k}": w["train_images"] / r / 60 for k, r in rate.items()},
        }
    return out


def loop_rates(bench_file: str | Path) -> dict[str, float]:
    """The training-loop speeds (images/s) a bench.py results file measured at width 64."""
    try:
        res = json.loads(Path(bench_file).read_text())
        width, figures = res["settings"]["width"], res["figures"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise LabError(f"{bench_file} is not a bench.py results file; run bench.py") from None
    if width != 64:
        raise LabError(
            f"{bench_file} was measured at width {width}; the full profile trains "
            "width 64: rerun bench.py without --width"
        )
    return {
        k: figures[k]["images_per_s"] for k in ("loop_fast", "loop_fast_compiled") if k in figures
    }


def measure_rate(profile: str, device=None, steps: int | None = None) -> float:
    """Training images/s of the baseline's step (its width, batch and precision: train()'s
    runtime.train_step) on `device`, from a few timed steps on random images after warm-up:
    seconds to measure, a rough figure."""
    import time

    from engine.runtime import choose_precision, pick_device, train_step
    from train_utils import make_model, make_optimizer

    device = pick_device(device)
    cfg = make_config("baseline", profile)
    prec = choose_precision(device)
    model, cuda = make_model(cfg, device, prec), device.type == "cuda"
    opt, scaler = make_optimizer(cfg, model), prec.scaler()
    x = torch.randn(cfg.batch_size, 3, 32, 32, device=device)
    x = x.contiguous(memory_format=prec.memory_format)
    y = torch.randint(0, 10, (cfg.batch_size,), device=device)

    def run(n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            train_step(model, opt, x, y, prec, scaler)
        if cuda:  # kernels run asynchronously: wait for them before reading the clock
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    run(5 if cuda else 1)  # warm-up: cudnn's choices, allocator, first-call costs
    steps = steps or (20 if cuda else 2)
    return steps * cfg.batch_size / run(steps)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def projected_cost(
    profile: str,
    seeds: int,
    results_dir="results",
    device=None,
    train_missing: bool = True,
    force: bool = False,
    rate: float | None = None,
    echo=print,
) -> dict:
    """Before anything trains: how many training images the notebook is about to train here
    (runs without a saved results file, or all with `force`), and the minutes that takes at a
    speed measured on this device. Nothing is measured when nothing will train."""
    from lab.grid import result_path

    names = expand([])
    todo = [
        (n, s)
        for s in range(seeds)
        for n in names
        if force or (train_missing and not result_path(results_dir, profile, n, s).exists())
    ]
    loads = [workload([n], profile) for n, _ in todo]
    images = sum(w["train_images"] for w in loads)
    work = images + EVAL_COST * sum(w["eval_images"] for w in loads)  # in training images
    if not todo:
        echo("cost:    nothing to train here: every run shown is replayed from its results file")
        return {"runs": 0, "images": 0, "images_per_s": None, "minutes": 0.0}
    rate = rate or measure_rate(profile, device)
    echo(
        f"cost:    to train now: {len(todo)} runs, {images / 1e6:.2f}M training images (seeds "
        f"0..{seeds - 1}; saved runs are replayed); measured here: {rate:,.0f} images/s (a few "
        f"steps of the baseline's batch on random images) -> about {_duration(work / rate)} "
        "with their evaluation, one run at a time"
    )
    return {
        "runs": len(todo),
        "images": images,
        "images_per_s": rate,
        "minutes": work / rate / 60,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", help="a bench.py results file: project the grid at its loop speed")
    args = ap.parse_args(argv)
    flops = train_flops_per_image()
    rate = loop_rates(args.bench) if args.bench else {}
    print(f"one training image (forward + backward), width 64: {flops / 1e9:.2f} GFLOP")
    for key, r in rate.items():
        print(f"{key} in {args.bench}: {r:,.0f} images/s = {r * flops / 1e12:.1f} TFLOP/s")
    for g in grid_projection(rate, flops).values():
        minutes = "".join(f"; {g[f'minutes_{k}']:.1f} min at {k}, one run at a time" for k in rate)
        print(
            f"full grid, {g['experiments']} experiments x {g['seeds']} seed(s): "
            f"{g['train_images'] / 1e6:.2f}M training images, {g['steps']:,} steps; under "
            f"{GRID_TARGET_MINUTES} min takes {g['tflops_for_target']:.0f} TFLOP/s{minutes}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, errors=(LabError, OSError)))
