"""What tools/bench.py times: the candidates (a model step, a training loop, augmentation
alone), each a `Candidate` that does a known number of images of work per run, and the rotating
repeats that time them side by side."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn

from engine.augment import torchvision_loader, torchvision_transform
from engine.loader import DeviceLoader
from engine.runtime import (
    Precision,
    choose_precision,
    compile_for_training,
    probe_compile,
    torchvision,
    train_step,
)
from train_utils import RunConfig, make_model, make_optimizer

PIL_AUG_BATCHES = 4  # per-image PIL augmentation timed on this many batches per repeat


def torchvision_cifar_resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    model = torchvision().models.resnet18(weights=None, num_classes=num_classes)
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


def precision_variants(device: torch.device) -> dict[str, Precision]:
    """The precisions compared: bf16 and fp32, each with and without channels_last (on a GPU
    without bf16, none). The one equal to `main` is timed as the main step itself."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return {}
    bf16, fp32 = choose_precision(device, "bf16"), choose_precision(device, "fp32")
    nchw = {f"{p.name}_nchw": dataclasses.replace(p, channels_last=False) for p in (bf16, fp32)}
    return {"bf16": bf16, "fp32": fp32, **nchw}


def variant_keys(device: torch.device, main: Precision) -> dict[str, str]:
    """The candidates of the variant equal to `main`: they are the main step's."""
    for tag, p in precision_variants(device).items():
        if (p.name, p.channels_last) == (main.name, main.channels_last):
            return {f"model_{tag}": "model_hand", f"loop_{tag}": "loop_fast"}
    return {}


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
        for tag, prec in precision_variants(device).items():
            if f"model_{tag}" not in same:  # its own model: variants never share weights
                model = make_model(run_cfg, device, prec)
                cands += pair((f"model_{tag}", f"loop_{tag}"), prec, model, layout(prec))
    if args.compile:
        # The one-time cost measured cold, as a first run meets it: inductor's on-disk caches
        # (which a second run on the same machine would hit, compiling in ~1 s) are bypassed.
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
        warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # says just that
        model = make_model(run_cfg, device, main)
        if device.type == "cpu":  # a crash of the backend is one line (runtime.probe_compile)
            probe_compile(model, [(bs, *images.shape[1:])] * 2, args.compile, main)
        compiled = compile_for_training(model, args.compile)
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

    n_batched = cfg["aug_batches"] * bs
    return [
        cand("aug_batched", "augmentation, batched (DeviceLoader)", n_batched, aug_batched),
        cand("aug_pil", "augmentation, per-image PIL (1 process)", PIL_AUG_BATCHES * bs, aug_pil),
    ]


def time_all(cands: list[Candidate], repeats: int, device) -> dict[str, float]:
    """Warm every candidate up, then time `repeats` rounds in a rotating order; returns the
    warm-up seconds (a compiled step's hold its compile)."""
    warmup_s = {c.key: timed(device, c.warmup) for c in cands}
    for r in range(repeats):
        for c in cands[r % len(cands) :] + cands[: r % len(cands)]:
            c.seconds.append(c.run())
    return warmup_s
