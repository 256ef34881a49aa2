"""What training costs: FLOPs per image, the grid's images and steps (`python -m lab.cost`), and
the minutes that the runs still to train take here (the notebook's cost line)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from engine.errors import run_cli
from engine.runtime import choose_precision, pick_device, train_step
from lab.grid import EXPERIMENTS, make_config, result_path, saved_result
from resnet18 import resnet18
from train_utils import TEST_IMAGES, make_model, make_optimizer, train_size


def train_flops_per_image(width: int = 64) -> float:
    """FLOPs of forward + backward for one 32x32 image (torch's counter: convs and matmuls)."""
    model, x, y = resnet18(num_classes=10, width=width), torch.randn(2, 3, 32, 32), torch.arange(2)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / len(y)


def workload(names: list[str], profile: str = "full") -> dict:
    """Training images, optimizer steps and evaluated images (validation every epoch, the test set
    once, TTA's extra views left out) of the runs `names`, one seed each."""
    w = {"train_images": 0, "steps": 0, "eval_images": 0}
    for name in names:
        cfg = make_config(name, profile)
        n = train_size(dataclasses.asdict(cfg))
        w["train_images"] += cfg.epochs * n
        w["steps"] += cfg.epochs * math.ceil(n / cfg.batch_size)
        w["eval_images"] += cfg.epochs * cfg.val_size + (cfg.test_subset or TEST_IMAGES)
    return w


def timed(device: torch.device, fn) -> float:
    """fn()'s seconds, the device's queued kernels finished on both sides of the clock."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure_rate(profile: str, device=None) -> float:
    """Images/s of the baseline's training step on random images: a rough figure, in seconds."""
    device, cfg = pick_device(device), make_config("baseline", profile)
    prec, bs = choose_precision(device), cfg.batch_size
    model = make_model(cfg, device, prec)
    opt, scaler = make_optimizer(cfg, model), prec.scaler()
    x = torch.randn(bs, 3, 32, 32, device=device).contiguous(memory_format=prec.memory_format)
    y = torch.randint(0, 10, (bs,), device=device)
    step = functools.partial(train_step, model, opt, x, y, prec, scaler)
    for n in (5, 20) if device.type == "cuda" else (1, 2):  # a warm-up (cudnn, first calls)
        s = timed(device, lambda n=n: [step() for _ in range(n)])
    return n * bs / s


def projected_cost(
    profile, seeds, results_dir, device, train_missing=True, force=False, rate=None, echo=print
) -> dict:
    """Before anything trains: the runs about to train here (without a usable results file, or
    all with `force`) and their minutes at a speed measured here; none: nothing is measured."""
    path = functools.partial(result_path, results_dir, profile)
    todo = [
        n
        for s in range(seeds)
        for n in EXPERIMENTS
        if force or train_missing and not saved_result(path(n, s), profile, None)
    ]
    if not todo:
        echo("cost:    nothing to train here: every run shown is replayed from its results file")
        return {"runs": 0, "images": 0, "images_per_s": None, "minutes": 0.0}
    w, rate = workload(todo, profile), rate or measure_rate(profile, device)
    # an evaluated image costs a forward pass: a third of a training step (backward: two products)
    images, s = w["train_images"], (w["train_images"] + w["eval_images"] / 3) / rate
    took = f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"
    echo(
        f"cost:    to train now: {len(todo)} runs, {images / 1e6:.2f}M training images (seeds "
        f"0..{seeds - 1}; saved runs are replayed); measured here: {rate:,.0f} images/s (a few "
        f"steps of the baseline's batch on random images) -> about {took} with their "
        "evaluation, one run at a time"
    )
    return {"runs": len(todo), "images": images, "images_per_s": rate, "minutes": s / 60}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    flops, w = train_flops_per_image(), workload(list(EXPERIMENTS))
    print(f"one training image (forward + backward), width 64: {flops / 1e9:.2f} GFLOP")
    for seeds in (1, 3):
        images = seeds * w["train_images"]
        print(
            f"full grid, {len(EXPERIMENTS)} experiments x {seeds} seed(s): {images / 1e6:.2f}M "
            f"training images, {seeds * w['steps']:,} steps, {images * flops / 1e15:,.0f} PFLOP"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
