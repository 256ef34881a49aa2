"""How fast the lab trains, and where the time goes: one run, ratios first.

    python -m tools.bench                                  # the GPU if torch sees one, else the CPU
    python -m tools.bench --device cpu --threads 1         # steadier figures on a shared machine
    python -m tools.bench --device cuda --steps 200 --out results/bench/mine.json

Three comparisons, each between a candidate and its reference measured in the same run, under
the same conditions: every repeat times each candidate once, in a rotating order, and a ratio is
the median over repeats of the two figures timed side by side in the same repeat.

1. model step: the hand-written resnet18.py against torchvision's resnet18 with the CIFAR stem
   swapped in; forward + backward + SGD step on a synthetic batch already on the device.
2. training loop: the same step fed by the fast path (loader.DeviceLoader: uint8 data on the
   device, batched crop_flip) and by the textbook path (a DataLoader with per-image PIL
   transforms in worker processes), each against the model step alone.
3. augmentation alone: DeviceLoader batches (a whole epoch per repeat on CUDA) against the same
   crop_flip pipeline run image by image through PIL (one process, then stacked into a batch).
4. with --compile MODE: the model step and the fast loop again with the step through
   torch.compile, against the eager step; the compilation's seconds and the images after which
   it has paid for itself are reported beside the ratio.

Last, from cost.py: the training images of the full experiment grid divided by the fast loop's
speed (how long the grid would take run by run on this device at this batch size), the FLOPs of
one training image, the TFLOP/s each candidate achieves, and the TFLOP/s that finishing the
grid in 8 minutes would take.

On CUDA it runs the way train_utils trains: bf16 autocast, channels_last, cudnn.benchmark, with
warm-up steps first and torch.cuda.synchronize around every timed region. Figures go to the
terminal and to a JSON file (default results/bench/bench_<cpu|gpu-name>.json) with the
device, library versions, date and command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.augment import torchvision_transform
from engine.data import load_cifar10, normalization_stats
from engine.errors import LabError
from engine.loader import DeviceLoader, torchvision_loader
from engine.runtime import (
    COMPILE_MODES,
    GRAPH_MODE,
    WholeStepGraph,
    autocast_for,
    compile_for_training,
    optimizer_step,
    pick_device,
)
from resnet18 import resnet18
from tools.cost import GRID_TARGET_MINUTES, grid_projection, train_flops_per_image

# Pass marks, printed beside each ratio (not asserted anywhere).
TARGETS = {
    "model_hand_vs_torchvision": 0.95,  # same architecture, so the same speed within noise
    "loop_fast_vs_model": 0.90,  # the fast data path costs at most 10% of the model's speed
    "aug_batched_vs_pil": 10.0,  # batching beats per-image PIL by an order of magnitude
}
# Run lengths per device. The CPU default keeps the whole bench near 2 minutes on two idle cores
# (a ResNet18 step on 128 images takes seconds there); a CUDA step takes milliseconds. The batched
# augmentation is timed over `aug_batches` batches, or one epoch (None), so that on CUDA the
# epoch's start (shuffle and draws on the CPU) counts at its real weight; on the CPU it is
# negligible beside the batches.
DEFAULTS = {
    "cpu": dict(steps=1, repeats=5, warmup=1, lead_in=0, aug_batches=20),
    "cuda": dict(steps=50, repeats=5, warmup=20, lead_in=10, aug_batches=None),
}
# The whole loop's speed that issue #14 asks of the H200 at batch 512 (bf16, device-resident
# data, augmentation): the grid's seed 0 in about 6 minutes takes that, or lanes that add up to it.
LOOP_TARGET = {"batch_size": 512, "images_per_s": 35_000}
SKIPPABLE = ("model_torchvision", "loop_pil", "aug_pil", "aug_batched")
PIL_AUG_BATCHES = 4  # per-image PIL augmentation timed on this many batches per repeat
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
    p.add_argument("--compile", choices=COMPILE_MODES, help="also time the step torch.compile'd")
    p.add_argument("--skip", default="", help=f"candidates to leave out, comma-separated: any of "
                   f"{', '.join(SKIPPABLE)} (e.g. the slow PIL references at a big batch)")  # fmt: skip
    return p.parse_args(argv)


# ---- what is timed --------------------------------------------------------------------------


def torchvision_cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def mode_label(mode: str) -> str:
    return "whole-step CUDA graph" if mode == GRAPH_MODE else f"torch.compile {mode}"


def make_step(model: nn.Module, device: torch.device, mode: str | None = None) -> Callable:
    """One training step as train_utils.train takes it (without the lr schedule and logging);
    mode "cuda-graph": the whole step captured into a CUDA graph (runtime.WholeStepGraph)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    amp, scaler = autocast_for(device)
    if mode == GRAPH_MODE:
        graphed = WholeStepGraph(model, opt, device, scaler=scaler, log=lambda s: None)
        return lambda x, y: graphed(x, y)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with amp:
            loss = F.cross_entropy(model(x), y)
        optimizer_step(loss, opt, scaler)

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], None]) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


class Candidate:
    """Something timed: each `run()` does `images` images of work and returns its seconds."""

    def __init__(self, key: str, label: str, images: int, run: Callable[[], float],
                 warmup: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.key, self.label, self.images = key, label, images
        self.run, self.warmup = run, warmup or (lambda: None)
        self.seconds: list[float] = []

    def rates(self) -> list[float]:
        return [self.images / s for s in self.seconds]


def model_candidate(key, label, step, batch, steps, warmup, device) -> Candidate:
    x, y = batch

    def steps_of(n: int) -> None:
        for _ in range(n):
            step(x, y)

    return Candidate(key, label, steps * len(y), lambda: timed(device, lambda: steps_of(steps)),
                     lambda: timed(device, lambda: steps_of(warmup)))  # fmt: skip


def loop_candidate(key, label, step, new_epoch, steps, lead_in, batch_size, device,
                   memory_format) -> Candidate:  # fmt: skip
    """The training loop over one loader's batches, moved to the device as a training loop would.

    Each repeat starts a fresh epoch (so DataLoader workers that prefetched while something else
    was timed give no free batches), runs `lead_in` untimed steps, then times `steps` steps. The
    epoch's iterator is made before the clock starts: a DataLoader with persistent workers then
    drops what the last repeat left unread, which a real epoch, run to its end, never does."""
    epochs = itertools.count()

    def next_step(batches: Iterator) -> None:
        x, y = next(batches)  # already on the device for a DeviceLoader: no-ops then
        step(x.to(device, non_blocking=True, memory_format=memory_format),
             y.to(device, non_blocking=True))  # fmt: skip

    def run() -> float:
        first = iter(new_epoch(next(epochs)))
        batches = itertools.chain(first, itertools.chain.from_iterable(map(new_epoch, epochs)))
        for _ in range(lead_in):
            next_step(batches)
        return timed(device, lambda: [next_step(batches) for _ in range(steps)])

    return Candidate(key, label, steps * batch_size, run)


# ---- the run --------------------------------------------------------------------------------


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


def device_name(device: torch.device) -> tuple[str, str]:
    """(a readable name, a file-name slug) for the device."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return name, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"CPU: {model}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores", "cpu"


def run_settings(args: argparse.Namespace, device: torch.device) -> dict:
    """The device's defaults, overridden by the flags given, checked."""
    cfg = dict(DEFAULTS["cuda" if device.type == "cuda" else "cpu"])
    cfg.update({k: getattr(args, k) for k in ("steps", "repeats", "warmup")
                if getattr(args, k) is not None})  # fmt: skip
    for k, v in (("batch-size", args.batch_size), ("width", args.width),
                 ("steps", cfg["steps"]), ("repeats", cfg["repeats"])):  # fmt: skip
        if v < 1:
            raise LabError(f"--{k} must be at least 1, got {v}")
    if cfg["warmup"] < 0 or args.workers < 0:
        raise LabError("--warmup and --workers cannot be negative")
    return cfg


def candidates(args, cfg: dict, device: torch.device, images, labels, mean, std) -> list:
    """Everything to time, in the order of the first repeat (later repeats rotate it)."""
    bs, steps, cuda = args.batch_size, cfg["steps"], device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    torch.manual_seed(0)
    synthetic = (
        torch.randn(bs, 3, 32, 32, device=device).contiguous(memory_format=fmt),
        torch.randint(0, 10, (bs,), device=device),
    )
    hand = resnet18(num_classes=10, width=args.width).to(device, memory_format=fmt)
    hand_step = make_step(hand, device)
    cands = [model_candidate("model_hand", "model step, hand-written resnet18.py", hand_step,
                             synthetic, steps, cfg["warmup"], device)]  # fmt: skip
    if args.width == 64:
        tv_step = make_step(torchvision_cifar_resnet18().to(device, memory_format=fmt), device)
        cands.append(model_candidate("model_torchvision", "model step, torchvision resnet18",
                                     tv_step, synthetic, steps, cfg["warmup"], device))  # fmt: skip
    compiled_step = None
    if args.compile:
        # The one-time cost measured cold, as a first run meets it: inductor's on-disk caches
        # (which a second run on the same machine would hit, compiling in ~1 s) are bypassed.
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # says just that
        # Its own copy of the model, so that eager and compiled steps never share weights.
        compiled = resnet18(num_classes=10, width=args.width).to(device, memory_format=fmt)
        compiled_step = make_step(compile_for_training(compiled, args.compile), device,
                                  args.compile)  # fmt: skip
        cands.append(model_candidate("model_compiled", f"model step, {mode_label(args.compile)}",
                                     compiled_step, synthetic, steps, max(1, cfg["warmup"]),
                                     device))  # fmt: skip

    fast = DeviceLoader(images, labels, bs, mean, std, device=device, augment="crop_flip",
                        shuffle=True, seed=0, channels_last=cuda)  # fmt: skip
    pil = torchvision_loader(images, labels, bs, mean, std, augment="crop_flip", shuffle=True,
                             seed=0, num_workers=args.workers, pil=True)  # fmt: skip
    cands += [
        loop_candidate("loop_fast", "training loop, DeviceLoader (crop_flip)", hand_step,
                       fast.batches, steps, cfg["lead_in"], bs, device, fmt),
        loop_candidate("loop_pil", f"training loop, DataLoader + PIL ({args.workers} workers)",
                       hand_step, lambda e: iter(pil), steps, cfg["lead_in"], bs, device, fmt),
    ]  # fmt: skip
    if compiled_step is not None:
        cands.append(loop_candidate("loop_fast_compiled", "training loop, DeviceLoader, compiled",
                                    compiled_step, fast.batches, steps, cfg["lead_in"], bs, device,
                                    fmt))  # fmt: skip

    cfg["aug_batches"] = cfg["aug_batches"] or len(fast)
    aug_batches = itertools.chain.from_iterable(map(fast.batches, itertools.count()))
    pil_tf = torchvision_transform("crop_flip", mean, std, pil=True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    pil_batches = itertools.cycle(order.split(bs)[: PIL_AUG_BATCHES * 8])

    def aug_batched():
        for _ in range(cfg["aug_batches"]):
            next(aug_batches)

    def aug_pil():
        for _ in range(PIL_AUG_BATCHES):
            torch.stack([pil_tf(images[i]) for i in next(pil_batches)])

    return cands + [
        Candidate("aug_batched", "augmentation, batched (DeviceLoader)", cfg["aug_batches"] * bs,
                  lambda: timed(device, aug_batched), aug_batched),
        Candidate("aug_pil", "augmentation, per-image PIL (1 process)", PIL_AUG_BATCHES * bs,
                  lambda: timed(device, aug_pil), aug_pil),
    ]  # fmt: skip


def bench(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = run_settings(args, device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    name, slug = device_name(device)
    load_before = os.getloadavg()
    images, labels, source = load_images(args.data_dir, args.batch_size)
    mean, std = normalization_stats("standard_sampled", images)
    skip = {k for k in args.skip.split(",") if k}
    if skip - set(SKIPPABLE):
        raise LabError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(skip))}")
    cands = [c for c in candidates(args, cfg, device, images, labels, mean, std)
             if c.key not in skip]  # fmt: skip

    t_start = time.perf_counter()
    warmup_s = {}  # the compiled step's first call compiles: its warm-up holds that cost
    for c in cands:
        t0 = time.perf_counter()
        c.warmup()
        sync(device)
        warmup_s[c.key] = time.perf_counter() - t0
    for r in range(cfg["repeats"]):
        for c in cands[r % len(cands) :] + cands[: r % len(cands)]:
            c.seconds.append(c.run())
    seconds = time.perf_counter() - t_start

    by_key = {c.key: c for c in cands}

    def paired(a: str, b: str) -> float | None:
        """Median over repeats of a's rate / b's rate, both timed in the same repeat."""
        if a not in by_key or b not in by_key:
            return None
        return statistics.median(x / y for x, y in zip(by_key[a].rates(), by_key[b].rates()))

    ratios = {
        "model_hand_vs_torchvision": paired("model_hand", "model_torchvision"),
        "loop_fast_vs_model": paired("loop_fast", "model_hand"),
        "loop_pil_vs_model": paired("loop_pil", "model_hand"),
        "loop_fast_vs_pil": paired("loop_fast", "loop_pil"),
        "aug_batched_vs_pil": paired("aug_batched", "aug_pil"),
        "model_compiled_vs_eager": paired("model_compiled", "model_hand"),
        "loop_fast_compiled_vs_model_compiled": paired("loop_fast_compiled", "model_compiled"),
    }
    rate = {c.key: statistics.median(c.rates()) for c in cands}
    flops = train_flops_per_image(args.width)
    amp, _ = autocast_for(device)
    autocast = str(amp.fast_dtype).removeprefix("torch.") if cuda else "off (float32)"
    return {
        "device": {"name": name, "slug": slug, "type": device.type, "cpu_count": os.cpu_count(),
                   "torch_threads": torch.get_num_threads()},
        "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {"batch_size": args.batch_size, "width": args.width,
                     "workers": args.workers, **cfg, "pil_aug_batches": PIL_AUG_BATCHES,
                     "autocast": autocast, "channels_last": cuda, "cudnn_benchmark": cuda},
        "data": {"source": source, "synthetic": source.startswith("SYNTHETIC"),
                 "images": len(labels), "mean": list(mean), "std": list(std)},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": round(seconds, 1),
        "figures": {
            c.key: {"label": c.label, "images_per_s": rate[c.key], "repeats": c.rates(),
                    "images_per_repeat": c.images, "warmup_seconds": warmup_s[c.key],
                    "tflops": rate[c.key] * flops / 1e12 if c.key.startswith(("model", "loop"))
                    else None}
            for c in cands
        },
        "compile": compile_figures(args.compile, warmup_s, rate, cfg["warmup"], args.batch_size),
        "train_flops_per_image": flops,
        "grid_projection": grid_projection(
            {k: rate[k] for k in ("loop_fast", "loop_fast_compiled") if k in rate}, flops
        ) if args.width == 64 else None,
        "ratios": {
            k: {"value": v, "target": TARGETS.get(k),
                "pass": None if v is None or k not in TARGETS else v >= TARGETS[k]}
            for k, v in ratios.items()
        },
        "loop_target": loop_target(rate, args.batch_size, cuda),
        "notes": notes(args, cfg, device, source),
    }  # fmt: skip


def loop_target(rate: dict, batch_size: int, cuda: bool) -> dict | None:
    """The fastest whole loop measured (eager or compiled) against LOOP_TARGET; None where it
    does not apply (the CPU, another batch size)."""
    if not cuda or batch_size != LOOP_TARGET["batch_size"]:
        return None
    key = max((k for k in ("loop_fast", "loop_fast_compiled") if k in rate), key=rate.get)
    target = LOOP_TARGET["images_per_s"]
    return {"key": key, "images_per_s": rate[key], "target": target, "pass": rate[key] >= target}


def compile_figures(mode, warmup_s: dict, rate: dict, warmup_steps: int, bs: int) -> dict | None:
    """What compiling costs once (its warm-up less the eager warm-up's share of steps) and after
    how many training images the faster steps have paid it back (None: they never do)."""
    if mode is None:
        return None
    eager_steps_s = max(1, warmup_steps) * bs / rate["model_hand"]
    compile_s = max(0.0, warmup_s["model_compiled"] - eager_steps_s)
    saved_per_image = 1 / rate["model_hand"] - 1 / rate["model_compiled"]
    return {"mode": mode, "compile_seconds": compile_s, "caches": "disabled (a cold compile)",
            "break_even_images": compile_s / saved_per_image if saved_per_image > 0 else None}  # fmt: skip


def versions() -> dict:
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version()}  # fmt: skip


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
        out.append(f"busy machine: load average {load:.1f} on {os.cpu_count()} cores, so the "
                   "CPU figures vary from run to run; the ratios, timed side by side, less so")  # fmt: skip
    if device.type == "cpu" and cfg["steps"] * cfg["repeats"] < 10:
        out.append("CPU default: few steps, so each figure is rough; raise --steps for more")
    return out


RATIO_LABELS = {
    "model_hand_vs_torchvision": "model step: hand-written / torchvision",
    "loop_fast_vs_model": "training loop: DeviceLoader / model step",
    "loop_pil_vs_model": "training loop: DataLoader+PIL / model step",
    "loop_fast_vs_pil": "training loop: DeviceLoader / DataLoader+PIL",
    "aug_batched_vs_pil": "augmentation: batched / per-image PIL",
    "model_compiled_vs_eager": "model step: torch.compile / eager",
    "loop_fast_compiled_vs_model_compiled": "training loop compiled / model step compiled",
}


def report(res: dict) -> str:
    s = res["settings"]
    lines = [
        f"ResNet18 x CIFAR-10 bench on {res['device']['name']}",
        f"torch {res['versions']['torch']}, torchvision {res['versions']['torchvision']}; batch "
        f"{s['batch_size']}, width {s['width']}, {s['steps']} timed steps x {s['repeats']} "
        f"repeats (median); autocast {s['autocast']}, channels_last {s['channels_last']}",
        f"data: {res['data']['source']}",
        "",
        f"{'ratio':48s}{'value':>8s}{'target':>10s}",
    ]
    for key, r in res["ratios"].items():
        if r["value"] is None and key.startswith(("model_compiled", "loop_fast_compiled")):
            continue  # not asked for (--compile)
        value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
        target = "" if r["target"] is None else f">= {r['target']:g}"
        verdict = {True: "PASS", False: "FAIL", None: ""}[r["pass"]]
        lines.append(f"{RATIO_LABELS[key]:48s}{value:>8s}{target:>10s}  {verdict}".rstrip())
    lines += ["", f"{'images/s':48s}{'median':>8s}   min..max over repeats   TFLOP/s"]
    for f in res["figures"].values():
        rates = f["repeats"]
        tflops = "" if f["tflops"] is None else f"{f['tflops']:10.2f}"
        lines.append(f"{f['label']:48s}{f['images_per_s']:8.0f}   "
                     f"{f'{min(rates):.0f}..{max(rates):.0f}':22s}{tflops}".rstrip())  # fmt: skip
    if c := res.get("compile"):
        paid = c["break_even_images"]
        lines.append(f"{mode_label(c['mode'])}: {c['compile_seconds']:.0f} s to compile; "
                     + ("never pays back at this speed" if paid is None
                        else f"paid back after {paid:,.0f} training images"))  # fmt: skip
    if t := res.get("loop_target"):
        lines.append(f"whole loop at batch {res['settings']['batch_size']} ({t['key']}): "
                     f"{t['images_per_s']:,.0f} images/s, target >= {t['target']:,}  "
                     + ("PASS" if t["pass"] else "FAIL"))  # fmt: skip
    lines.append("")
    for g in (res["grid_projection"] or {}).values():
        minutes = ", ".join(f"{g[k]:.1f} min {how}" for k, how in
                            (("minutes_loop_fast", "eager"), ("minutes_loop_fast_compiled", "compiled"))
                            if k in g)  # fmt: skip
        lines.append(f"full grid, {g['experiments']} experiments x {g['seeds']} seed(s), "
                     f"{g['train_images'] / 1e6:.1f}M training images: {minutes} (one run at a "
                     f"time); under {GRID_TARGET_MINUTES} min takes {g['tflops_for_target']:.0f} TFLOP/s")  # fmt: skip
    lines.append(
        f"one training image (forward + backward): "
        f"{res['train_flops_per_image'] / 1e9:.2f} GFLOP (torch.utils.flop_counter)"
    )
    lines += [f"note: {n}" for n in res["notes"]]
    return "\n".join(lines)


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
