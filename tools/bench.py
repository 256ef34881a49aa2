"""How fast the lab trains (`python -m tools.bench --device cpu --compile default`): README's
"Speed" names the candidates. Each repeat times every candidate once, in a rotating order; a ratio
is the median over repeats of candidate / reference timed in the same repeat. Figures go to the
terminal and to results/bench/bench_<cpu|gpu-name>.json."""

import argparse
import dataclasses
import datetime as dt
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from itertools import chain, count, islice
from pathlib import Path

import torch
from torch import nn

from engine.augment import torchvision_loader
from engine.checkpoint import save_json
from engine.data import load_cifar10, normalization_stats
from engine.errors import LabError, run_cli
from engine.loader import DeviceLoader
from engine.runtime import (
    COMPILE_MODES,
    PRECISIONS,
    Precision,
    choose_precision,
    command_line,
    environment,
    hardware_name,
    pick_device,
    probe_compile,
    torchvision,
    train_step,
)
from lab.cost import timed, train_flops_per_image
from train_utils import RunConfig, make_model, make_optimizer

# A ResNet18 step on 128 images takes seconds on two CPU cores, milliseconds on a GPU.
DEFAULTS = dict(cpu=dict(steps=1, warmup=1, lead_in=0), cuda=dict(steps=50, warmup=20, lead_in=10))
# name: (candidate, reference, what); the main step's precision variant is model_hand/loop_fast.
RATIOS = {
    "model_hand_vs_torchvision": ("model_hand", "model_torchvision", "hand-written / torchvision"),
    "loop_fast_vs_model": ("loop_fast", "model_hand", "DeviceLoader / model step"),
    "loop_pil_vs_model": ("loop_pil", "model_hand", "DataLoader+PIL / model step"),
    "loop_fast_vs_pil": ("loop_fast", "loop_pil", "DeviceLoader / DataLoader+PIL"),
}
for _k in ("model", "loop"):
    RATIOS[f"{_k}_bf16_vs_fp32"] = (f"{_k}_bf16", f"{_k}_fp32", "bf16 / fp32")
    for _p, _name in (("bf16", ""), ("fp32", "fp32_")):
        _what = f"{_p}, channels_last / NCHW"
        RATIOS[f"{_k}_{_name}channels_last_vs_not"] = (f"{_k}_{_p}", f"{_k}_{_p}_nchw", _what)
RATIOS["model_compiled_vs_eager"] = ("model_compiled", "model_hand", "torch.compile / eager")
RATIOS["loop_fast_compiled_vs_eager"] = ("loop_fast_compiled", "loop_fast", "torch.compile / eager")


@dataclasses.dataclass
class Candidate:
    """Something timed: `run(k, lead_in)` times k training steps and returns their seconds."""

    key: str
    label: str
    precision: str
    run: Callable[..., float]
    warm: int  # steps before the first repeat, timed apart (a compiled step's compile)
    rates: list[float] = dataclasses.field(default_factory=list)  # images/s, one a repeat


def candidates(cfg: dict, device, main: Precision, data, compile_mode) -> list[Candidate]:
    """Everything to time, in the order of the first repeat (later repeats rotate it)."""
    images, labels, mean, std = data
    bs, steps = cfg["batch_size"], cfg["steps"]
    run_cfg = RunConfig(width=cfg["width"], batch_size=bs)
    torch.manual_seed(0)
    x, y = torch.randn(bs, 3, 32, 32, device=device), torch.randint(0, 10, (bs,), device=device)
    aug = dict(augment="crop_flip", shuffle=True, seed=0)
    fast = {
        cl: DeviceLoader(images, labels, bs, mean, std, device=device, channels_last=cl, **aug)
        for cl in (True, False)
    }

    def loop(key: str, label: str, epoch_of, model, prec: Precision = main, warm=0) -> Candidate:
        """train()'s step over `epoch_of(e)`'s batches. A repeat starts a fresh epoch (batches that
        a DataLoader prefetched meanwhile are not free) and takes `lead_in` steps untimed."""
        opt, scaler, epochs = make_optimizer(run_cfg, model), prec.scaler(), count()

        def steps_of(k: int, batches) -> None:
            for xb, yb in islice(batches, k):  # on a DeviceLoader's, the moves are no-ops
                xb = xb.to(device, non_blocking=True, memory_format=prec.memory_format)
                train_step(model, opt, xb, yb.to(device, non_blocking=True), prec, scaler)

        def run(k: int = steps, lead_in: int = cfg["lead_in"]) -> float:
            first = iter(epoch_of(next(epochs)))  # a DataLoader's workers start untimed
            batches = chain(first, chain.from_iterable(map(epoch_of, epochs)))
            steps_of(lead_in, batches)
            return timed(device, lambda: steps_of(k, batches))

        return Candidate(key, label, prec.name, run, warm)

    def step(key: str, what: str, model, prec: Precision = main) -> Candidate:
        """The model step alone, on one batch already on the device."""
        batch = [(x.contiguous(memory_format=prec.memory_format), y)] * steps
        return loop(key, f"model step, {what}", lambda e: batch, model, prec, cfg["warmup"])

    def pair(keys: tuple, model, prec: Precision, what: str = "") -> list:
        """The model step, and the DeviceLoader-fed loop, with `model` in `prec`."""
        what += f"{prec.name}, {'channels_last' if prec.channels_last else 'NCHW'}"
        fed = fast[prec.channels_last].batches
        fed = loop(keys[1], f"training loop, DeviceLoader, {what}", fed, model, prec)
        return [step(keys[0], what, model, prec), fed]

    hand = make_model(run_cfg, device, main)
    cands = pair(("model_hand", "loop_fast"), hand, main, "resnet18.py, ")
    if cfg["width"] == 64:  # torchvision's has no other width
        tv = torchvision().models.resnet18(weights=None, num_classes=10)
        tv.conv1, tv.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()  # CIFAR stem
        tv = tv.to(device, memory_format=main.memory_format)
        cands.append(step("model_torchvision", "torchvision resnet18", tv))
    bf16 = device.type == "cpu" or torch.cuda.is_bf16_supported()
    for name in ("bf16", "fp32") if bf16 else ():
        p = choose_precision(device, name)  # each variant its own model: they never share weights
        for tag, prec in ((name, p), (f"{name}_nchw", dataclasses.replace(p, channels_last=False))):
            if tag != main.name:  # the main step's (channels_last) is model_hand
                model = make_model(run_cfg, device, prec)
                cands += pair((f"model_{tag}", f"loop_{tag}"), model, prec)
    if compile_mode:
        torch._inductor.config.force_disable_caches = True  # a cold compile, as a run meets it
        model = make_model(run_cfg, device, main)
        if device.type == "cpu":  # where inductor's CPU backend crashes: one line
            probe_compile(model, [(bs, *images.shape[1:])] * 2, compile_mode, main)
        what = f"torch.compile {compile_mode}, "  # its warm-up (one step or more) compiles
        compiled = torch.compile(model, mode=compile_mode)
        cands += pair(("model_compiled", "loop_fast_compiled"), compiled, main, what)
    w = cfg["workers"]
    pil = torchvision_loader(images, labels, bs, mean, std, pil=True, num_workers=w, **aug)
    what = f"training loop, DataLoader + PIL ({w} workers), {main.name}"
    return [*cands, loop("loop_pil", what, lambda e: pil, hand)]


def bench(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    main = choose_precision(device, args.precision)  # refuses a device other than cpu or cuda
    given = {k: getattr(args, k) for k in ("steps", "repeats", "batch_size", "width", "workers")}
    cfg = DEFAULTS[device.type] | {k: v for k, v in given.items() if v is not None}
    for k in ("batch_size", "width", "steps", "repeats"):
        if cfg[k] < 1:
            raise LabError(f"--{k.replace('_', '-')} must be at least 1, got {cfg[k]}")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    cifar = load_cifar10(args.data_dir, download=False)
    # whole batches: a smaller last one would make cudnn.benchmark tune a shape while timed
    n = len(cifar.train_labels) // cfg["batch_size"] * cfg["batch_size"]
    images, labels = cifar.train_images[:n], cifar.train_labels[:n]
    mean, std = normalization_stats("standard_sampled", images)
    cands = candidates(cfg, device, main, (images, labels, mean, std), args.compile)
    t_start = time.perf_counter()
    warmup_s = {c.key: c.run(c.warm, 0) if c.warm else 0.0 for c in cands}
    for r in range(cfg["repeats"]):
        for c in cands[r % len(cands) :] + cands[: r % len(cands)]:
            c.rates.append(cfg["steps"] * cfg["batch_size"] / c.run())
    seconds = time.perf_counter() - t_start
    flops, figures, ratios = train_flops_per_image(cfg["width"]), {}, {}
    for c in cands:  # a training step's FLOP rate: the FLOPs it does, not the ones it could
        rate = statistics.median(c.rates)
        figures[c.key] = dict(label=c.label, precision=c.precision, images_per_s=rate)
        figures[c.key].update(repeats=c.rates, warmup_seconds=warmup_s[c.key])
        figures[c.key]["tflops"] = rate * flops / 1e12
    alias = {f"model_{main.name}": "model_hand", f"loop_{main.name}": "loop_fast"}
    for key, (a, b, what) in RATIOS.items():
        a, b = (figures.get(alias.get(k, k), {}).get("repeats") for k in (a, b))
        value = statistics.median(p / q for p, q in zip(a, b)) if a and b else None
        kind = "model step" if key.startswith("model") else "training loop"
        ratios[key] = {"label": f"{kind}: {what}", "value": value}
    compiled = None
    if args.compile:  # its one-time cost: the compiled warm-up less as many eager steps
        eager, hot = (1 / figures[k]["images_per_s"] for k in ("model_hand", "model_compiled"))
        cost = max(0.0, warmup_s["model_compiled"] - cfg["warmup"] * cfg["batch_size"] * eager)
        paid = cost / (eager - hot) if eager > hot else None  # training images to pay it back
        compiled = dict(mode=args.compile, compile_seconds=cost, break_even_images=paid)
    env = environment(device)
    res = {
        "device": dict(name=hardware_name(device), type=device.type),
        "versions": {k: env.get(k) for k in ("torch", "torchvision", "python")},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(["python -m tools.bench", *sys.argv[1:]]),
        "settings": cfg | main.record() | {"channels_last": main.channels_last},
        "data": dict(source=cifar.source, images=n, mean=list(mean), std=list(std)),
        "load_average": os.getloadavg(),
        "seconds": round(seconds, 1),
        "figures": figures,
        "compile": compiled,
        "train_flops_per_image": flops,
        "ratios": ratios,
    }
    slug = re.sub(r"[^a-z0-9]+", "-", res["device"]["name"].lower()).strip("-")
    out = args.out or Path(f"results/bench/bench_{slug if device.type == 'cuda' else 'cpu'}.json")
    save_json(res, out)
    print(report(res))
    print(f"wrote {out} ({res['seconds']:.0f} s of timing)")
    return 0


def report(res: dict) -> str:
    s, v = res["settings"], res["versions"]
    lines = [
        f"ResNet18 x CIFAR-10 bench on {res['device']['name']}; data: {res['data']['source']}",
        f"torch {v['torch']}, torchvision {v['torchvision']}; batch {s['batch_size']}, width "
        f"{s['width']}, {s['steps']} timed steps x {s['repeats']} repeats (median); main step "
        f"{s['precision']} ({s['precision_reason']}), channels_last {s['channels_last']}",
        f"\n{'ratio: candidate / reference (median)':48s}{'value':>8s}",
    ]
    for r in res["ratios"].values():
        if r["value"] is not None or "compile" not in r["label"]:  # compile: only when asked
            value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
            lines.append(f"{r['label']:48s}{value:>8s}")
    lines.append(f"\n{'images/s':62s}{'median':>8s}   min..max over repeats   GFLOP/s")
    for f in res["figures"].values():
        spread = f"{min(f['repeats']):.0f}..{max(f['repeats']):.0f}"
        gflops = f["tflops"] * 1e3
        lines.append(f"{f['label']:62s}{f['images_per_s']:8.0f}   {spread:22s}{gflops:9.1f}")
    if c := res["compile"]:
        paid = c["break_even_images"]
        paid = "never" if paid is None else f"after {paid:,.0f} training images"
        lines.append(f"torch.compile {c['mode']}: {c['compile_seconds']:.0f} s, paid back {paid}")
    flops = res["train_flops_per_image"] / 1e9
    lines.append(f"one training image (forward + backward): {flops:.2f} GFLOP")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=64, help="channels of the first stage")
    p.add_argument("--steps", type=int, help="timed steps per repeat (CPU 1, CUDA 50)")
    p.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians (5)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (the tutorial's 2)")
    p.add_argument("--data-dir", help="CIFAR-10 (default: $LAB3_DATA_DIR, ./data, ../shared/data)")
    p.add_argument("--out", type=Path, help="JSON file (default results/bench/bench_<device>.json)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="of the main step")
    p.add_argument("--compile", choices=COMPILE_MODES, help="also time the step torch.compile'd")
    return run_cli(bench, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
