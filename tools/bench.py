"""How fast the lab trains, and where the time goes: one run, ratios first.

    python -m tools.bench                                  # the GPU if torch sees one, else the CPU
    python -m tools.bench --device cpu --compile default   # precision, layout and compile on a CPU
    python -m tools.bench --device cuda --steps 200 --out results/bench/mine.json

Every step is train()'s own (runtime.train_step) on train_utils.make_model's model, in the
precision runtime.choose_precision picks (--precision forces one). Each comparison is between a
candidate and its reference measured in the same run, under the same conditions: every repeat
times each candidate once, in a rotating order, and a ratio is the median over repeats of the
two figures timed side by side in the same repeat.

1. model step: the hand-written resnet18.py against torchvision's resnet18 with the CIFAR stem
   swapped in; forward + backward + SGD step on a synthetic batch already on the device.
2. precision: the model step and the whole loop in bf16 against fp32, and each of them with
   channels_last against itself without it (not on a GPU without bf16).
3. training loop: the same step fed by the fast path (loader.DeviceLoader: uint8 data on the
   device, batched crop_flip) and by the textbook path (a DataLoader with per-image PIL
   transforms in worker processes), each against the model step alone.
4. augmentation alone: DeviceLoader batches (a whole epoch per repeat on CUDA) against the same
   crop_flip pipeline run image by image through PIL (one process, then stacked into a batch).
5. with --compile MODE: the model step and the fast loop again through torch.compile, against
   the eager step; the compile's seconds and the images after which it pays back beside them.

Last, from cost.py: the FLOPs of one training image, the GFLOP/s each candidate achieves (on the
CPU against the processor's peak, `cpu_peak`), and the full grid's images over the fast loop's
speed. Figures go to the terminal and to a JSON file (default
results/bench/bench_<cpu|gpu-name>.json) with the device, library versions, date and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from engine.data import load_cifar10, normalization_stats
from engine.errors import LabError
from engine.runtime import (
    COMPILE_MODES,
    PRECISIONS,
    choose_precision,
    command_line,
    environment,
    hardware_name,
    pick_device,
)
from tools.bench_candidates import PIL_AUG_BATCHES, candidates, time_all, variant_keys
from tools.bench_figures import compile_figures, cpu_peak, figure, loop_target, ratios, report
from tools.cost import grid_projection, train_flops_per_image

# Run lengths per device. The CPU default keeps the whole bench to a few minutes on two idle
# cores (a ResNet18 step on 128 images takes seconds there); a CUDA step takes milliseconds. The
# batched augmentation is timed over `aug_batches` batches, or one epoch (None), so that on CUDA
# the epoch's start (shuffle and draws on the CPU) counts at its real weight.
DEFAULTS = {
    "cpu": dict(steps=1, repeats=5, warmup=1, lead_in=0, aug_batches=20),
    "cuda": dict(steps=50, repeats=5, warmup=20, lead_in=10, aug_batches=None),
}
SKIPPABLE = ("model_torchvision", "loop_pil", "aug_pil", "aug_batched", "precisions")
# The PyTorch CIFAR-10 tutorial ("Training a classifier") loads with num_workers=2.
DEFAULT_WORKERS = 2


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=64, help="channels of the first stage")
    p.add_argument("--steps", type=int, help="timed steps per repeat (CPU 1, CUDA 50)")
    p.add_argument("--repeats", type=int, help="repeats; figures are medians (CPU 5, CUDA 5)")
    p.add_argument("--warmup", type=int, help="untimed steps per model first (CPU 1, CUDA 20)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="DataLoader workers")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--data-dir", help="CIFAR-10 (default: $LAB3_DATA_DIR, ./data, ../shared/data)")
    p.add_argument("--out", type=Path, help="JSON file (default results/bench/bench_<device>.json)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="of the main step")
    p.add_argument("--compile", choices=COMPILE_MODES, help="also time the step torch.compile'd")
    p.add_argument(
        "--skip",
        default="",
        help=f"candidates to leave out, comma-separated: any of {', '.join(SKIPPABLE)} "
        "(e.g. the slow PIL references at a big batch)",
    )
    return p.parse_args(argv)


def load_images(data_dir: str | None, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """CIFAR-10's training images, or random ones of the same shape if it cannot be found.

    Trimmed to whole batches: a last, smaller batch would make cudnn.benchmark tune a new shape
    inside a timed region."""
    try:
        data = load_cifar10(data_dir, download=False)
        images, labels, source = data.train_images, data.train_labels, data.source
    except LabError as e:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (50_000,), generator=g)
        source = f"SYNTHETIC random uint8 images: CIFAR-10 not found ({e})"
    n = len(labels) // batch_size * batch_size
    return images[:n], labels[:n], source


def run_settings(args: argparse.Namespace, device: torch.device) -> dict:
    """The device's defaults, overridden by the flags given, checked."""
    cfg = dict(DEFAULTS["cuda" if device.type == "cuda" else "cpu"])
    for k in ("steps", "repeats", "warmup"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    for k in ("batch_size", "width"):
        cfg[k] = getattr(args, k)
    for k in ("batch_size", "width", "steps", "repeats"):
        if cfg[k] < 1:
            raise LabError(f"--{k.replace('_', '-')} must be at least 1, got {cfg[k]}")
    if cfg["warmup"] < 0 or args.workers < 0:
        raise LabError("--warmup and --workers cannot be negative")
    return cfg


def bench(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = run_settings(args, device)
    main = choose_precision(device, args.precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    skip = {k for k in args.skip.split(",") if k}
    if skip - set(SKIPPABLE):
        raise LabError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(skip))}")
    load_before = os.getloadavg()
    images, labels, source = load_images(args.data_dir, args.batch_size)
    mean, std = normalization_stats("standard_sampled", images)
    data = (images, labels, mean, std)
    cands = [c for c in candidates(args, cfg, device, main, data, skip) if c.key not in skip]
    t_start = time.perf_counter()
    warmup_s = time_all(cands, cfg["repeats"], device)
    seconds = time.perf_counter() - t_start

    rate = {c.key: statistics.median(c.rates()) for c in cands}
    flops = train_flops_per_image(args.width)
    peak = cpu_peak(torch.get_num_threads()) if device.type == "cpu" else None
    loops = {k: rate[k] for k in ("loop_fast", "loop_fast_compiled") if k in rate}
    settings = {**cfg, "workers": args.workers, "pil_aug_batches": PIL_AUG_BATCHES}
    settings.update(main.record(), channels_last=main.channels_last)
    env = environment(device)
    return {
        "device": device_record(device),
        "versions": {k: env.get(k) for k in ("torch", "torchvision", "python")},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # without machine paths, as every result records it (runtime.command_line)
        "command": command_line(["python -m tools.bench", *sys.argv[1:]]),
        "settings": {**settings, "cudnn_benchmark": device.type == "cuda"},
        "data": {
            "source": source,
            "synthetic": source.startswith("SYNTHETIC"),
            "images": len(labels),
            "mean": list(mean),
            "std": list(std),
        },
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": round(seconds, 1),
        "figures": {c.key: figure(c, rate[c.key], warmup_s[c.key], flops, peak) for c in cands},
        "cpu_peak": peak,
        "compile": compile_figures(args.compile, warmup_s, rate, cfg, args.batch_size),
        "train_flops_per_image": flops,
        "grid_projection": grid_projection(loops, flops) if args.width == 64 else None,
        "ratios": ratios(cands, variant_keys(device, main)),
        "loop_target": loop_target(loops, args.batch_size, device.type == "cuda"),
        "notes": notes(args, cfg, device, source),
    }


def device_record(device: torch.device) -> dict:
    name, cuda = hardware_name(device), device.type == "cuda"
    return {
        "name": name,
        "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") if cuda else "cpu",
        "type": device.type,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def notes(args, cfg, device, source) -> list[str]:
    out = []
    if source.startswith("SYNTHETIC"):
        out.append("CIFAR-10 was not found: the loop and augmentation ran on random images")
    if args.width != 64:
        out.append(
            "torchvision's resnet18 has width 64 only: no reference model, and no full-grid "
            "projection (the full profile trains width 64), at this width"
        )
    load = os.getloadavg()[0]
    if device.type == "cpu" and load > (os.cpu_count() or 1):
        out.append(
            f"busy machine: load average {load:.1f} on {os.cpu_count()} cores, so the CPU "
            "figures vary from run to run; the ratios, timed side by side, less so"
        )
    if device.type == "cpu" and cfg["steps"] * cfg["repeats"] < 10:
        out.append("CPU default: few steps, so each figure is rough; raise --steps for more")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        res = bench(args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threads = f"_threads{args.threads}" if args.threads else ""
    out = args.out or Path("results/bench") / f"bench_{res['device']['slug']}{threads}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(report(res))
    print(f"wrote {out} ({res['seconds']:.0f} s of timing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
