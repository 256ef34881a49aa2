"""How fast the lab trains, and where the time goes: candidates against their references, timed
side by side in one run, ratios first.

    python -m tools.bench                                  # the GPU if torch sees one, else the CPU
    python -m tools.bench --device cpu --compile default   # precision, layout and compile on a CPU

Every step is train()'s (train_step on make_model's model) in choose_precision's precision. Each
repeat times every candidate once, in a rotating order; a ratio is the median over repeats of
candidate / reference timed in the same repeat. Timed: the model step on one batch (resnet18.py;
torchvision's resnet18 with the CIFAR stem); the loop fed by the DeviceLoader and by a DataLoader
with per-image PIL transforms; bf16 and fp32, with and without channels_last; augmentation
alone; with --compile, the compiled step and loop, and the cold compile's seconds. Figures go
to the terminal and to results/bench/bench_<cpu|gpu-name>.json.
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
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from engine.augment import torchvision_loader, torchvision_transform
from engine.data import load_cifar10, normalization_stats
from engine.errors import LabError
from engine.loader import DeviceLoader
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
    probe_compile,
    torchvision,
    train_step,
)
from lab.cost import train_flops_per_image
from train_utils import RunConfig, make_model, make_optimizer

# A ResNet18 step on 128 images takes seconds on two CPU cores, milliseconds on a GPU. Batched
# augmentation runs `aug_batches` batches, or on CUDA a whole epoch (None), so that the epoch's
# start (shuffle and draws on the CPU) counts at its real weight.
DEFAULTS = {
    "cpu": dict(steps=1, repeats=5, warmup=1, lead_in=0, aug_batches=20),
    "cuda": dict(steps=50, repeats=5, warmup=20, lead_in=10, aug_batches=None),
}
SKIPPABLE = ("model_torchvision", "loop_pil", "aug_pil", "aug_batched", "precisions")
PIL_AUG_BATCHES = 4  # batches per repeat of per-image PIL augmentation
# name: (candidate, reference, what). The precision variants' candidates are <model|loop>_<tag>;
# the one the main step runs in is the main step's (model_hand, loop_fast).
RATIOS = {
    "model_hand_vs_torchvision": ("model_hand", "model_torchvision", "hand-written / torchvision"),
    "loop_fast_vs_model": ("loop_fast", "model_hand", "DeviceLoader / model step"),
    "loop_pil_vs_model": ("loop_pil", "model_hand", "DataLoader+PIL / model step"),
    "loop_fast_vs_pil": ("loop_fast", "loop_pil", "DeviceLoader / DataLoader+PIL"),
    "aug_batched_vs_pil": ("aug_batched", "aug_pil", "batched / per-image PIL"),
}
for _k in ("model", "loop"):
    RATIOS[f"{_k}_bf16_vs_fp32"] = (f"{_k}_bf16", f"{_k}_fp32", "bf16 / fp32")
    for _p, _name in (("bf16", ""), ("fp32", "fp32_")):
        _what = f"{_p}, channels_last / NCHW"
        RATIOS[f"{_k}_{_name}channels_last_vs_not"] = (f"{_k}_{_p}", f"{_k}_{_p}_nchw", _what)
RATIOS["model_compiled_vs_eager"] = ("model_compiled", "model_hand", "torch.compile / eager")
RATIOS["loop_fast_compiled_vs_eager"] = ("loop_fast_compiled", "loop_fast", "torch.compile / eager")
# Pass marks, printed beside their ratios (asserted nowhere): the same architecture runs at the
# same speed; the fast data path costs at most 10% of the step; batching beats PIL tenfold.
TARGETS = {"model_hand_vs_torchvision": 0.95, "loop_fast_vs_model": 0.90, "aug_batched_vs_pil": 10}
KINDS = {"model": "model step", "loop": "training loop", "aug": "augmentation"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=64, help="channels of the first stage")
    p.add_argument("--steps", type=int, help="timed steps per repeat (CPU 1, CUDA 50)")
    p.add_argument("--repeats", type=int, help="repeats; figures are medians (5)")
    p.add_argument("--warmup", type=int, help="untimed steps per model first (CPU 1, CUDA 20)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (the tutorial's 2)")
    p.add_argument("--data-dir", help="CIFAR-10 (default: $LAB3_DATA_DIR, ./data, ../shared/data)")
    p.add_argument("--out", type=Path, help="JSON file (default results/bench/bench_<device>.json)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="of the main step")
    p.add_argument("--compile", choices=COMPILE_MODES, help="also time the step torch.compile'd")
    p.add_argument("--skip", default="", help=f"leave out, comma-separated: {', '.join(SKIPPABLE)}")
    return p.parse_args(argv)


def load_images(data_dir, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """CIFAR-10's training images (random ones if it is not found), trimmed to whole batches: a
    smaller last batch would make cudnn.benchmark tune a new shape inside a timed region."""
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


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """fn()'s seconds, the device's queued kernels finished on both sides of the clock."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
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
    warmup: Callable[[], object]
    precision: str | None  # of a training step; None for augmentation alone
    seconds: list[float] = dataclasses.field(default_factory=list)

    def rates(self) -> list[float]:
        return [self.images / s for s in self.seconds]


def candidates(args, cfg: dict, device, main: Precision, data, skip: set) -> list[Candidate]:
    """Everything to time, in the order of the first repeat (later repeats rotate it)."""
    images, labels, mean, std = data
    bs, steps, warm = args.batch_size, cfg["steps"], cfg["warmup"]
    run_cfg = RunConfig(width=args.width, batch_size=bs)
    torch.manual_seed(0)
    x, y = torch.randn(bs, 3, 32, 32, device=device), torch.randint(0, 10, (bs,), device=device)
    aug = dict(augment="crop_flip", shuffle=True, seed=0)
    fast = {
        cl: DeviceLoader(images, labels, bs, mean, std, device=device, channels_last=cl, **aug)
        for cl in (True, False)
    }

    def loop(key, label, epoch_of, n=steps, model=None, prec=main, warm=0) -> Candidate:
        """`n` batches of `epoch_of(e)` a repeat, each through train()'s step with `model`, moved
        to the device as train() moves them (or only made, for augmentation alone). Each repeat
        starts a fresh epoch, made before the clock starts, so that DataLoader workers that
        prefetched while another candidate was timed give no free batches, then takes `lead_in`
        untimed steps."""
        opt = make_optimizer(run_cfg, model) if model is not None else None
        scaler, epochs = prec.scaler(), itertools.count()

        def steps_of(k: int, batches) -> None:
            for xb, yb in itertools.islice(batches, k):
                if model is not None:  # for a DeviceLoader's batches the moves are no-ops
                    xb = xb.to(device, non_blocking=True, memory_format=prec.memory_format)
                    train_step(model, opt, xb, yb.to(device, non_blocking=True), prec, scaler)

        def run() -> float:
            batches = itertools.chain(iter(epoch_of(next(epochs))), endless(epoch_of, epochs))
            steps_of(cfg["lead_in"] if model is not None else 0, batches)
            return timed(device, lambda: steps_of(n, batches))

        warmup = functools.partial(steps_of, warm, endless(epoch_of, epochs))
        return Candidate(key, label, n * bs, run, warmup, prec.name if model is not None else None)

    def pair(keys: tuple, model, prec: Precision, what: str, warm: int = warm) -> list:
        """The model step on one batch, and the DeviceLoader-fed loop, with `model` in `prec`."""
        batch = [(x.contiguous(memory_format=prec.memory_format), y)] * steps
        step = loop(
            keys[0], f"model step, {what}", lambda e: batch, model=model, prec=prec, warm=warm
        )
        what = f"training loop, DeviceLoader, {what}"
        return [step, loop(keys[1], what, fast[prec.channels_last].batches, model=model, prec=prec)]

    def layout(p: Precision) -> str:
        return p.name + (", channels_last" if p.channels_last else ", NCHW")

    hand = make_model(run_cfg, device, main)
    cands = pair(("model_hand", "loop_fast"), hand, main, f"resnet18.py, {layout(main)}")
    if args.width == 64 and "model_torchvision" not in skip:
        tv = torchvision().models.resnet18(weights=None, num_classes=10)
        tv.conv1, tv.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()  # CIFAR stem
        tv = tv.to(device, memory_format=main.memory_format)
        batch = [(x.contiguous(memory_format=main.memory_format), y)] * steps
        label = "model step, torchvision resnet18"
        cands.append(loop("model_torchvision", label, lambda e: batch, model=tv, warm=warm))
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
    for name in ("bf16", "fp32") if bf16 and "precisions" not in skip else ():
        p = choose_precision(device, name)  # each variant its own model: they never share weights
        for tag, prec in ((name, p), (f"{name}_nchw", dataclasses.replace(p, channels_last=False))):
            if (prec.name, prec.channels_last) != (main.name, main.channels_last):
                model = make_model(run_cfg, device, prec)
                cands += pair((f"model_{tag}", f"loop_{tag}"), model, prec, layout(prec))
    if args.compile:
        # A cold compile, as a first run meets it: inductor's on-disk caches are bypassed.
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # says just that
        model = make_model(run_cfg, device, main)
        if device.type == "cpu":  # where inductor's CPU backend crashes: one line
            probe_compile(model, [(bs, *images.shape[1:])] * 2, args.compile, main)
        what = f"torch.compile {args.compile}, {main.name}"  # its warm-up compiles: >= 1 step
        compiled = compile_for_training(model, args.compile)
        cands += pair(("model_compiled", "loop_fast_compiled"), compiled, main, what, max(1, warm))
    pil = torchvision_loader(
        images, labels, bs, mean, std, pil=True, num_workers=args.workers, **aug
    )
    what = f"training loop, DataLoader + PIL ({args.workers} workers), {main.name}"
    cands.append(loop("loop_pil", what, lambda e: pil, model=hand))
    # Augmentation alone: the DeviceLoader's batches against PIL image by image, then stacked.
    n = cfg["aug_batches"] = cfg["aug_batches"] or len(fast[main.channels_last])
    pil_tf = torchvision_transform("crop_flip", mean, std, pil=True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))

    def pil_epoch(e: int):  # a few batches' images, each through PIL, stacked into a batch
        for idx in order.split(bs)[:PIL_AUG_BATCHES]:
            yield torch.stack([pil_tf(images[i]) for i in idx]), None

    what = "augmentation, batched (DeviceLoader)"
    aug_batched = loop("aug_batched", what, fast[main.channels_last].batches, n, warm=n)
    what = "augmentation, per-image PIL (1 process)"
    return cands + [
        aug_batched,
        loop("aug_pil", what, pil_epoch, PIL_AUG_BATCHES, warm=PIL_AUG_BATCHES),
    ]


def endless(epoch_of, epochs):
    """The batches of one epoch after another."""
    return itertools.chain.from_iterable(map(epoch_of, epochs))


def cpu_peak(threads: int, cpuinfo: str | None = None) -> dict | None:
    """The CPU's peak GFLOP/s: threads x clock x FLOPs per cycle. Per cycle: float32 lanes (vector
    bits / 32) x 2 (an FMA) x the FMA pipes taking a full vector each cycle (2 on AVX-512 Xeons
    and Zen 5; 1 on Zen 4, family 25, which splits a 512-bit FMA); bf16 twice that with
    AVX512-BF16 (vdpbf16ps), else emulated (1x); AMX not counted. The clock: the highest "cpu
    MHz" in /proc/cpuinfo (the current one, not the turbo limit); None where Linux does not say.
    `cpuinfo` stands in for the file in tests."""
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
    gflops = {k: threads * ghz * v for k, v in per_cycle.items()}
    return dict(
        ghz=ghz, vector_bits=bits, fma_pipes=pipes, flops_per_cycle=per_cycle, gflops=gflops
    )


def bench(args: argparse.Namespace) -> dict:
    device = pick_device(args.device)
    cfg = DEFAULTS["cuda" if device.type == "cuda" else "cpu"].copy()
    cfg.update(
        {k: v for k in ("steps", "repeats", "warmup") if (v := getattr(args, k)) is not None}
    )
    cfg.update(batch_size=args.batch_size, width=args.width, workers=args.workers)
    for k in ("batch_size", "width", "steps", "repeats"):
        if cfg[k] < 1:
            raise LabError(f"--{k.replace('_', '-')} must be at least 1, got {cfg[k]}")
    skip = {k for k in args.skip.split(",") if k}
    if skip - set(SKIPPABLE):
        raise LabError(f"--skip takes {', '.join(SKIPPABLE)}; got {', '.join(sorted(skip))}")
    main = choose_precision(device, args.precision)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    load_before = os.getloadavg()
    images, labels, source = load_images(args.data_dir, args.batch_size)
    mean, std = normalization_stats("standard_sampled", images)
    data = (images, labels, mean, std)
    cands = [c for c in candidates(args, cfg, device, main, data, skip) if c.key not in skip]
    t_start = time.perf_counter()
    warmup_s = {c.key: timed(device, c.warmup) for c in cands}  # a compiled step's: its compile
    for r in range(cfg["repeats"]):
        for c in cands[r % len(cands) :] + cands[: r % len(cands)]:
            c.seconds.append(c.run())
    seconds = time.perf_counter() - t_start

    by_key, rate = {c.key: c for c in cands}, {c.key: statistics.median(c.rates()) for c in cands}
    flops, threads = train_flops_per_image(args.width), torch.get_num_threads()
    peak = cpu_peak(threads) if device.type == "cpu" else None
    figures, ratios = {}, {}
    for c in cands:
        tflops = rate[c.key] * flops / 1e12 if c.precision else None
        share = peak and tflops and tflops * 1e3 / peak["gflops"][c.precision]
        figures[c.key] = dict(label=c.label, precision=c.precision, images_per_s=rate[c.key])
        figures[c.key].update(repeats=c.rates(), warmup_seconds=warmup_s[c.key], tflops=tflops)
        figures[c.key]["peak_fraction"] = share or None
    alias = {f"model_{main.name}": "model_hand", f"loop_{main.name}": "loop_fast"}
    for key, (a, b, what) in RATIOS.items():
        a, b = (by_key.get(alias.get(k, k)) for k in (a, b))
        value = statistics.median(p / q for p, q in zip(a.rates(), b.rates())) if a and b else None
        target = TARGETS.get(key)
        passed = None if value is None or target is None else value >= target
        label = f"{KINDS[key.split('_')[0]]}: {what}"
        ratios[key] = {"label": label, "value": value, "target": target, "pass": passed}
    compiled = None
    if args.compile:  # the compiled warm-up less as many eager steps; training images to pay back
        eager = 1 / rate["model_hand"]  # seconds per image
        eager_s = max(1, cfg["warmup"]) * args.batch_size * eager  # its warm-up's eager steps
        compile_s = max(0.0, warmup_s["model_compiled"] - eager_s)
        saved = eager - 1 / rate["model_compiled"]
        paid = compile_s / saved if saved > 0 else None
        compiled = dict(mode=args.compile, compile_seconds=compile_s, break_even_images=paid)
    env = environment(device)
    return {
        "device": dict(name=hardware_name(device), type=device.type, torch_threads=threads),
        "versions": {k: env.get(k) for k in ("torch", "torchvision", "python")},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(["python -m tools.bench", *sys.argv[1:]]),
        "settings": cfg | main.record() | {"channels_last": main.channels_last},
        "data": {"source": source, "images": len(labels), "mean": list(mean), "std": list(std)},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": round(seconds, 1),
        "figures": figures,
        "cpu_peak": peak,
        "compile": compiled,
        "train_flops_per_image": flops,
        "ratios": ratios,
    }


def report(res: dict) -> str:
    s, v = res["settings"], res["versions"]
    lines = [
        f"ResNet18 x CIFAR-10 bench on {res['device']['name']}; data: {res['data']['source']}",
        f"torch {v['torch']}, torchvision {v['torchvision']}; batch {s['batch_size']}, width "
        f"{s['width']}, {s['steps']} timed steps x {s['repeats']} repeats (median); main step "
        f"{s['precision']} ({s['precision_reason']}), channels_last {s['channels_last']}",
        f"\n{'ratio':48s}{'value':>8s}{'target':>10s}",
    ]
    for r in res["ratios"].values():
        if r["value"] is not None or "compile" not in r["label"]:  # compile: only when asked
            value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
            target = "" if r["target"] is None else f">= {r['target']:g}"
            verdict = {True: "PASS", False: "FAIL", None: ""}[r["pass"]]
            lines.append(f"{r['label']:48s}{value:>8s}{target:>10s}  {verdict}".rstrip())
    lines.append(f"\n{'images/s':62s}{'median':>8s}   min..max over repeats   GFLOP/s")
    for f in res["figures"].values():
        spread = f"{min(f['repeats']):.0f}..{max(f['repeats']):.0f}"
        gflops = "" if f["tflops"] is None else f"{f['tflops'] * 1e3:9.1f}"
        gflops += f" ({f['peak_fraction']:.1%} of peak)" if f["peak_fraction"] else ""
        lines.append(f"{f['label']:62s}{f['images_per_s']:8.0f}   {spread:22s}{gflops}".rstrip())
    if c := res["compile"]:
        paid = c["break_even_images"]
        paid = "never" if paid is None else f"after {paid:,.0f} training images"
        lines.append(
            f"torch.compile {c['mode']}: {c['compile_seconds']:.0f} s cold, paid back {paid}"
        )
    if p := res["cpu_peak"]:
        n, g = p["flops_per_cycle"], p["gflops"]
        lines.append(
            f"CPU peak: {res['device']['torch_threads']} threads x {p['ghz']:.2f} GHz (/proc/cpuinfo)"
            f" x FLOP/cycle (fp32 {n['fp32']}: {p['vector_bits'] // 32} lanes x 2 (FMA) x "
            f"{p['fma_pipes']} pipes; bf16 {n['bf16']}) = fp32 {g['fp32']:.0f}, bf16 "
            f"{g['bf16']:.0f} GFLOP/s"
        )
    flops = res["train_flops_per_image"] / 1e9
    lines.append(f"one training image (forward + backward): {flops:.2f} GFLOP")
    if res["data"]["source"].startswith("SYNTHETIC"):
        lines.append(
            "note: CIFAR-10 was not found: the loops and augmentation ran on random images"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        res = bench(args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = res["device"]["name"].lower() if res["device"]["type"] == "cuda" else "cpu"
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    out = args.out or Path(f"results/bench/bench_{slug}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(report(res))
    print(f"wrote {out} ({res['seconds']:.0f} s of timing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
