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
2. precision: the model step and the whole loop in bf16 against fp32, and bf16 with
   channels_last against bf16 without it (not on a GPU without bf16).
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
import dataclasses
import datetime as dt
import functools
import itertools
import json
import os
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from engine.augment import torchvision_transform
from engine.data import load_cifar10, normalization_stats
from engine.errors import LabError
from engine.loader import DeviceLoader, torchvision_loader
from engine.runtime import (
    COMPILE_MODES,
    PRECISIONS,
    Precision,
    choose_precision,
    command_line,
    compile_for_training,
    environment,
    hardware_name,
    pick_device,
    train_step,
)
from tools.cost import GRID_TARGET_MINUTES, grid_projection, train_flops_per_image
from train_utils import RunConfig, make_model, make_optimizer

# Pass marks, printed beside each ratio (not asserted anywhere).
TARGETS = {
    "model_hand_vs_torchvision": 0.95,  # same architecture, so the same speed within noise
    "loop_fast_vs_model": 0.90,  # the fast data path costs at most 10% of the model's speed
    "aug_batched_vs_pil": 10.0,  # batching beats per-image PIL by an order of magnitude
}
# Run lengths per device. The CPU default keeps the whole bench to a few minutes on two idle
# cores (a ResNet18 step on 128 images takes seconds there); a CUDA step takes milliseconds. The
# batched augmentation is timed over `aug_batches` batches, or one epoch (None), so that on CUDA
# the epoch's start (shuffle and draws on the CPU) counts at its real weight.
DEFAULTS = {
    "cpu": dict(steps=1, repeats=5, warmup=1, lead_in=0, aug_batches=20),
    "cuda": dict(steps=50, repeats=5, warmup=20, lead_in=10, aug_batches=None),
}
# The whole loop's speed that issue #14 asks of the H200 at batch 512 (bf16, device-resident
# data, augmentation): the grid's seed 0 in about 6 minutes takes that, or lanes that add up to it.
LOOP_TARGET = {"batch_size": 512, "images_per_s": 35_000}
# Each ratio: (candidate, reference, what). A precision variant's candidates are model_<tag> and
# loop_<tag> (precision_variants), or the main step's where it is that variant.
RATIOS = {
    "model_hand_vs_torchvision": ("model_hand", "model_torchvision", "hand-written / torchvision"),
    "loop_fast_vs_model": ("loop_fast", "model_hand", "DeviceLoader / model step"),
    "loop_pil_vs_model": ("loop_pil", "model_hand", "DataLoader+PIL / model step"),
    "loop_fast_vs_pil": ("loop_fast", "loop_pil", "DeviceLoader / DataLoader+PIL"),
    "aug_batched_vs_pil": ("aug_batched", "aug_pil", "batched / per-image PIL"),
    "model_bf16_vs_fp32": ("model_bf16", "model_fp32", "bf16 / fp32"),
    "loop_bf16_vs_fp32": ("loop_bf16", "loop_fp32", "bf16 / fp32 (DeviceLoader)"),
    "model_channels_last_vs_not": ("model_bf16", "model_bf16_nchw", "bf16, channels_last / not"),
    "loop_channels_last_vs_not": ("loop_bf16", "loop_bf16_nchw", "bf16, channels_last / not"),
    "model_compiled_vs_eager": ("model_compiled", "model_hand", "torch.compile / eager"),
    "loop_fast_compiled_vs_eager": ("loop_fast_compiled", "loop_fast", "torch.compile / eager"),
}
KINDS = {"model": "model step", "loop": "training loop", "aug": "augmentation"}
SKIPPABLE = ("model_torchvision", "loop_pil", "aug_pil", "aug_batched", "precisions")
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
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="of the main step")
    p.add_argument("--compile", choices=COMPILE_MODES, help="also time the step torch.compile'd")
    p.add_argument(
        "--skip",
        default="",
        help=f"candidates to leave out, comma-separated: any of {', '.join(SKIPPABLE)} "
        "(e.g. the slow PIL references at a big batch)",
    )
    return p.parse_args(argv)


# ---- the CPU's peak -------------------------------------------------------------------------


def cpu_peak(threads: int, cpuinfo: str | None = None) -> dict | None:
    """The CPU's peak GFLOP/s for `threads` cores: cores x clock x FLOPs per cycle per core.

    FLOPs per cycle: (vector bits / 32) float32 lanes x 2 (a fused multiply-add is a multiply
    and an add) x the FMA pipes that take a full vector each cycle: 2 on AVX-512 Xeons and Zen 5,
    1 on Zen 4 (family 25), which splits a 512-bit FMA over its two 256-bit pipes. AVX512-BF16's
    dot product (vdpbf16ps) does two bf16 multiply-adds per float32 lane, so bf16 counts 2x;
    without it bf16 is emulated through float32, so 1x. AMX tiles are not counted. Each torch
    thread counts as a core. The clock is the highest "cpu MHz" in /proc/cpuinfo: the current
    clock, neither the turbo limit nor an all-core average. None where Linux does not say;
    `cpuinfo` stands in for the file's text in tests."""
    try:
        cpuinfo = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    info = [line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line]
    field = {k.strip(): v.strip() for k, v in reversed(info)}  # the first core's values
    mhz = [float(v) for k, v in info if k.strip() == "cpu MHz"]
    if not mhz:
        return None
    flags = field.get("flags", "").split()
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    zen4 = field.get("vendor_id") == "AuthenticAMD" and field.get("cpu family") == "25"
    pipes = 1 if bits == 512 and zen4 else 2
    fp32 = bits // 32 * 2 * pipes
    per_cycle = {"fp32": fp32, "bf16": 2 * fp32 if "avx512_bf16" in flags else fp32}
    ghz = max(mhz) / 1000
    return {
        "cores": threads,
        "ghz": ghz,
        "clock_source": "highest 'cpu MHz' in /proc/cpuinfo (current clock)",
        "vector_bits": bits,
        "fma_pipes": pipes,
        "flops_per_cycle": per_cycle,
        "gflops": {k: threads * ghz * v for k, v in per_cycle.items()},
    }


# ---- what is timed --------------------------------------------------------------------------


def torchvision_cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def make_step(model: nn.Module, cfg: RunConfig, prec: Precision) -> Callable:
    """train()'s step (without its lr schedule and logging) with the run's optimizer."""
    opt, scaler = make_optimizer(cfg, model), prec.scaler()
    return lambda x, y: train_step(model, opt, x, y, prec, scaler)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], None]) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


@dataclasses.dataclass
class Candidate:
    """Something timed: each `run()` does `images` images of work and returns its seconds."""

    key: str
    label: str
    images: int
    run: Callable[[], float]
    warmup: Callable[[], None] = lambda: None
    precision: str | None = None  # of a training step; None for augmentation alone
    seconds: list[float] = dataclasses.field(default_factory=list)

    def rates(self) -> list[float]:
        return [self.images / s for s in self.seconds]


def loop_candidate(key, label, step, new_epoch, cfg, bs, device, prec) -> Candidate:
    """The training loop over one loader's batches, moved to the device as a training loop would.

    Each repeat starts a fresh epoch (so DataLoader workers that prefetched while something else
    was timed give no free batches), runs `lead_in` untimed steps, then times `steps` steps. The
    epoch's iterator is made before the clock starts: a DataLoader with persistent workers then
    drops what the last repeat left unread, which a real epoch, run to its end, never does."""
    epochs = itertools.count()

    def next_step(batches: Iterator) -> None:
        x, y = next(batches)  # already on the device for a DeviceLoader: no-ops then
        x = x.to(device, non_blocking=True, memory_format=prec.memory_format)
        step(x, y.to(device, non_blocking=True))

    def run() -> float:
        first = iter(new_epoch(next(epochs)))
        batches = itertools.chain(first, itertools.chain.from_iterable(map(new_epoch, epochs)))
        for _ in range(cfg["lead_in"]):
            next_step(batches)
        return timed(device, lambda: [next_step(batches) for _ in range(cfg["steps"])])

    return Candidate(key, label, cfg["steps"] * bs, run, precision=prec.name)


def precision_variants(device: torch.device, main: Precision) -> dict[str, Precision]:
    """The precisions compared: bf16 with and without channels_last, and fp32 (none on a GPU
    without bf16). The one equal to `main` is timed as the main step itself."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return {}
    bf16 = choose_precision(device, "bf16")
    nchw = dataclasses.replace(bf16, channels_last=False)
    return {"bf16": bf16, "bf16_nchw": nchw, "fp32": choose_precision(device, "fp32")}


def variant_keys(device: torch.device, main: Precision) -> dict[str, str]:
    """The candidates of the variant equal to `main`: they are the main step's."""
    for tag, p in precision_variants(device, main).items():
        if (p.name, p.channels_last) == (main.name, main.channels_last):
            return {f"model_{tag}": "model_hand", f"loop_{tag}": "loop_fast"}
    return {}


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


def candidates(args, cfg: dict, device, main: Precision, data, skip: set) -> list[Candidate]:
    """Everything to time, in the order of the first repeat (later repeats rotate it)."""
    images, labels, mean, std = data
    bs, steps, warm = args.batch_size, cfg["steps"], cfg["warmup"]
    run_cfg = RunConfig(width=args.width, batch_size=bs)
    torch.manual_seed(0)
    x, y = torch.randn(bs, 3, 32, 32, device=device), torch.randint(0, 10, (bs,), device=device)
    aug = dict(augment="crop_flip", shuffle=True, seed=0)

    @functools.cache
    def fast(cl: bool) -> DeviceLoader:  # one per memory layout
        return DeviceLoader(images, labels, bs, mean, std, device=device, channels_last=cl, **aug)

    def model_step(key: str, label: str, step, prec: Precision, n_warm: int = warm):
        xs = x.contiguous(memory_format=prec.memory_format)

        def steps_of(n: int) -> None:
            for _ in range(n):
                step(xs, y)

        def run() -> float:
            return timed(device, lambda: steps_of(steps))

        return Candidate(key, label, steps * bs, run, lambda: steps_of(n_warm), prec.name)

    def pair(keys, prec: Precision, model: nn.Module, what: str, n_warm: int = warm) -> list:
        """The model step alone and the DeviceLoader-fed loop, both with `model` in `prec`."""
        step, batches = make_step(model, run_cfg, prec), fast(prec.channels_last).batches
        loop_label = f"training loop, DeviceLoader, {what}"
        return [
            model_step(keys[0], f"model step, {what}", step, prec, n_warm),
            loop_candidate(keys[1], loop_label, step, batches, cfg, bs, device, prec),
        ]

    def layout(p: Precision) -> str:
        return p.name + (", channels_last" if p.channels_last else ", NCHW")

    hand = make_model(run_cfg, device, main)
    cands = pair(("model_hand", "loop_fast"), main, hand, f"resnet18.py, {layout(main)}")
    if args.width == 64 and "model_torchvision" not in skip:
        tv = torchvision_cifar_resnet18().to(device, memory_format=main.memory_format)
        step = make_step(tv, run_cfg, main)
        cands.append(
            model_step("model_torchvision", "model step, torchvision resnet18", step, main)
        )
    if "precisions" not in skip:
        same = variant_keys(device, main)
        for tag, prec in precision_variants(device, main).items():
            if f"model_{tag}" not in same:  # its own model: variants never share weights
                model = make_model(run_cfg, device, prec)
                cands += pair((f"model_{tag}", f"loop_{tag}"), prec, model, layout(prec))
    if args.compile:
        # The one-time cost measured cold, as a first run meets it: inductor's on-disk caches
        # (which a second run on the same machine would hit, compiling in ~1 s) are bypassed.
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # says just that
        compiled = compile_for_training(make_model(run_cfg, device, main), args.compile)
        what = f"torch.compile {args.compile}, {main.name}"  # its warm-up compiles: >= 1 step
        cands += pair(("model_compiled", "loop_fast_compiled"), main, compiled, what, max(1, warm))
    pil = torchvision_loader(
        images, labels, bs, mean, std, num_workers=args.workers, pil=True, **aug
    )
    label = f"training loop, DataLoader + PIL ({args.workers} workers), {main.name}"
    step = make_step(hand, run_cfg, main)
    cands.append(
        loop_candidate("loop_pil", label, step, lambda e: iter(pil), cfg, bs, device, main)
    )
    return cands + aug_candidates(cfg, device, fast(main.channels_last), images, labels, mean, std)


def aug_candidates(cfg, device, fast: DeviceLoader, images, labels, mean, std) -> list:
    """Augmentation alone: the DeviceLoader's batches against PIL image by image."""
    cfg["aug_batches"] = cfg["aug_batches"] or len(fast)
    bs = fast.batch_size
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

    def cand(key: str, label: str, n: int, fn: Callable[[], None]) -> Candidate:
        return Candidate(key, label, n, lambda: timed(device, fn), fn)

    return [
        cand(
            "aug_batched",
            "augmentation, batched (DeviceLoader)",
            cfg["aug_batches"] * bs,
            aug_batched,
        ),
        cand("aug_pil", "augmentation, per-image PIL (1 process)", PIL_AUG_BATCHES * bs, aug_pil),
    ]


def time_all(cands: list[Candidate], repeats: int, device) -> dict[str, float]:
    """Warm every candidate up, then time `repeats` rounds in a rotating order; returns the
    warm-up seconds (a compiled step's hold its compile)."""
    warmup_s = {}
    for c in cands:
        t0 = time.perf_counter()
        c.warmup()
        sync(device)
        warmup_s[c.key] = time.perf_counter() - t0
    for r in range(repeats):
        for c in cands[r % len(cands) :] + cands[: r % len(cands)]:
            c.seconds.append(c.run())
    return warmup_s


def ratios(cands: list[Candidate], alias: dict[str, str]) -> dict:
    """RATIOS: the median over repeats of candidate / reference, the two timed in the same
    repeat (None where either was not timed), with its label and pass mark."""
    by_key = {c.key: c for c in cands}
    out = {}
    for key, (a, b, what) in RATIOS.items():
        a, b = alias.get(a, a), alias.get(b, b)
        value = None
        if a in by_key and b in by_key:
            pairs = zip(by_key[a].rates(), by_key[b].rates())
            value = statistics.median(x / y for x, y in pairs)
        target = TARGETS.get(key)
        out[key] = {
            "label": f"{KINDS[key.split('_')[0]]}: {what}",
            "value": value,
            "target": target,
            "pass": None if value is None or target is None else value >= target,
        }
    return out


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
    return {
        "device": device_record(device),
        "versions": {k: environment(device).get(k) for k in ("torch", "torchvision", "python")},
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
        "loop_target": loop_target(rate, args.batch_size, device.type == "cuda"),
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


def figure(c: Candidate, rate: float, warmup_s: float, flops: float, peak: dict | None) -> dict:
    """One candidate's figures; a training step's FLOP rate, and on the CPU its share of the
    peak in its precision."""
    gflops = rate * flops / 1e9 if c.precision else None
    of_peak = (peak or {}).get("gflops", {}).get(c.precision)
    return {
        "label": c.label,
        "precision": c.precision,
        "images_per_s": rate,
        "repeats": c.rates(),
        "images_per_repeat": c.images,
        "warmup_seconds": warmup_s,
        "tflops": None if gflops is None else gflops / 1e3,
        "peak_fraction": gflops / of_peak if gflops and of_peak else None,
    }


def loop_target(rate: dict, batch_size: int, cuda: bool) -> dict | None:
    """The fastest whole loop measured (eager or compiled) against LOOP_TARGET; None where it
    does not apply (the CPU, another batch size)."""
    if not cuda or batch_size != LOOP_TARGET["batch_size"]:
        return None
    key = max((k for k in ("loop_fast", "loop_fast_compiled") if k in rate), key=rate.get)
    target = LOOP_TARGET["images_per_s"]
    return {"key": key, "images_per_s": rate[key], "target": target, "pass": rate[key] >= target}


def compile_figures(mode, warmup_s: dict, rate: dict, cfg: dict, bs: int) -> dict | None:
    """What compiling costs once (the compiled step's warm-up less the eager step's time for as
    many steps) and after how many training images the faster steps have paid it back (None:
    they never do)."""
    if mode is None:
        return None
    eager_s = max(1, cfg["warmup"]) * bs / rate["model_hand"]  # its warm-up steps, uncompiled
    compile_s = max(0.0, warmup_s["model_compiled"] - eager_s)
    saved_per_image = 1 / rate["model_hand"] - 1 / rate["model_compiled"]
    return {
        "mode": mode,
        "compile_seconds": compile_s,
        "caches": "disabled (a cold compile)",
        "break_even_images": compile_s / saved_per_image if saved_per_image > 0 else None,
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


def report(res: dict) -> str:
    s = res["settings"]
    lines = [
        f"ResNet18 x CIFAR-10 bench on {res['device']['name']}",
        f"torch {res['versions']['torch']}, torchvision {res['versions'].get('torchvision')}; "
        f"batch {s['batch_size']}, width {s['width']}, {s['steps']} timed steps x "
        f"{s['repeats']} repeats (median); main step {s['precision']} ({s['precision_reason']}),"
        f" channels_last {s['channels_last']}",
        f"data: {res['data']['source']}",
        "",
        f"{'ratio':48s}{'value':>8s}{'target':>10s}",
    ]
    for r in res["ratios"].values():
        if r["value"] is None and "compile" in r["label"]:
            continue  # not asked for (--compile)
        value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
        target = "" if r["target"] is None else f">= {r['target']:g}"
        verdict = {True: "PASS", False: "FAIL", None: ""}[r["pass"]]
        lines.append(f"{r['label']:48s}{value:>8s}{target:>10s}  {verdict}".rstrip())
    lines += ["", f"{'images/s':62s}{'median':>8s}   min..max over repeats   GFLOP/s"]
    for f in res["figures"].values():
        spread = f"{min(f['repeats']):.0f}..{max(f['repeats']):.0f}"
        gflops = "" if f["tflops"] is None else f"{f['tflops'] * 1e3:9.1f}"
        if f["peak_fraction"]:
            gflops += f" ({f['peak_fraction']:.1%} of peak)"
        lines.append(f"{f['label']:62s}{f['images_per_s']:8.0f}   {spread:22s}{gflops}".rstrip())
    lines += extra_lines(res)
    lines += [f"note: {n}" for n in res["notes"]]
    return "\n".join(lines)


def extra_lines(res: dict) -> list[str]:
    """The compile's cost, the loop target, the CPU's peak, the FLOPs and the grid."""
    lines = []
    if c := res.get("compile"):
        paid = c["break_even_images"]
        paid = "never" if paid is None else f"after {paid:,.0f} training images"
        lines.append(
            f"torch.compile {c['mode']}: {c['compile_seconds']:.0f} s to compile "
            f"(cold), paid back {paid}"
        )
    if t := res.get("loop_target"):
        lines.append(
            f"whole loop at batch {res['settings']['batch_size']} ({t['key']}): "
            f"{t['images_per_s']:,.0f} images/s, target >= {t['target']:,}  "
            + ("PASS" if t["pass"] else "FAIL")
        )
    if p := res.get("cpu_peak"):
        per = p["flops_per_cycle"]
        lines.append(
            f"CPU peak: {p['cores']} threads x {p['ghz']:.2f} GHz ({p['clock_source']})\n  x "
            f"{per['fp32']} fp32 FLOP/cycle ({p['vector_bits'] // 32} lanes x 2 (FMA) x "
            f"{p['fma_pipes']} FMA pipe(s)) = {p['gflops']['fp32']:.0f} GFLOP/s fp32;\n  bf16 "
            f"{per['bf16']} FLOP/cycle (2x with AVX512-BF16, else emulated: 1x) = "
            f"{p['gflops']['bf16']:.0f} GFLOP/s; AMX not counted"
        )
    lines.append(
        f"one training image (forward + backward): {res['train_flops_per_image'] / 1e9:.2f} "
        "GFLOP (torch.utils.flop_counter: convolutions and matrix products)"
    )
    for g in (res["grid_projection"] or {}).values():
        how = {"minutes_loop_fast": "eager", "minutes_loop_fast_compiled": "compiled"}
        minutes = ", ".join(f"{g[k]:.1f} min {v}" for k, v in how.items() if k in g)
        lines.append(
            f"full grid, {g['experiments']} experiments x {g['seeds']} seed(s), "
            f"{g['train_images'] / 1e6:.1f}M training images: {minutes} (one run at a time); "
            f"under {GRID_TARGET_MINUTES} min takes {g['tflops_for_target']:.0f} TFLOP/s"
        )
    return lines


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
