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
from engine.grid import expand, make_config
from engine.stats import train_size
from resnet18 import resnet18

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


def workload(names: list[str] | None = None, profile: str = "full", seeds: int = 1) -> dict:
    """What the grid (or `names`) costs in training images and optimizer steps. Evaluation is
    left out (forward only, ~5,000 validation images an epoch: under 5% of an epoch's work)."""
    runs = expand(names or [])
    images = steps = 0
    for name in runs:
        cfg = make_config(name, profile)
        n = train_size(dataclasses.asdict(cfg))
        images += cfg.epochs * n
        steps += cfg.epochs * math.ceil(n / cfg.batch_size)
    return {"profile": profile, "experiments": len(runs), "seeds": seeds,
            "train_images": images * seeds, "steps": steps * seeds}  # fmt: skip


def grid_projection(rate: dict[str, float], flops_per_image: float) -> dict:
    """The full grid's training images over measured speeds (images/s, keyed by what was timed),
    one run at a time (runs sharing a launch-bound GPU in parallel can beat it; a bigger batch
    runs faster), and the compute rate that the 8-minute target asks for."""
    out = {}
    for seeds in (1, 3):
        w = workload(profile="full", seeds=seeds)
        out[f"seeds_{seeds}"] = {
            **w,
            "tflops_for_target": w["train_images"] * flops_per_image
            / (GRID_TARGET_MINUTES * 60) / 1e12,
            **{f"minutes_{k}": w["train_images"] / r / 60 for k, r in rate.items()},
        }  # fmt: skip
    return out


def loop_rates(bench_file: str | Path) -> dict[str, float]:
    """The training-loop speeds (images/s) a bench.py results file measured at width 64."""
    try:
        res = json.loads(Path(bench_file).read_text())
        width, figures = res["settings"]["width"], res["figures"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise LabError(f"{bench_file} is not a bench.py results file; run bench.py") from None
    if width != 64:
        raise LabError(f"{bench_file} was measured at width {width}; the full profile trains "
                       "width 64: rerun bench.py without --width")  # fmt: skip
    return {k: figures[k]["images_per_s"] for k in ("loop_fast", "loop_fast_compiled")
            if k in figures}  # fmt: skip


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
        print(f"full grid, {g['experiments']} experiments x {g['seeds']} seed(s): "
              f"{g['train_images'] / 1e6:.2f}M training images, {g['steps']:,} steps; under "
              f"{GRID_TARGET_MINUTES} min takes {g['tflops_for_target']:.0f} TFLOP/s{minutes}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, errors=(LabError, OSError)))
