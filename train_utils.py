"""One run of the lab's ResNet18 on CIFAR-10: `train(cfg, data)` trains a `RunConfig`, prints the
handout's lines and returns a `RunResult`; its loop reads top to bottom, as in nanoGPT."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine import runtime
from engine.augment import check_preset
from engine.checkpoint import atomic_write, latest_checkpoint, load_checkpoint, save_checkpoint
from engine.data import NORM_MODES, Cifar10, normalization_stats, split_train_val
from engine.distributed import World
from engine.errors import LabError, bar_file
from engine.loader import DeviceLoader
from engine.schedules import Schedule, lr_at, scaled_peak
from resnet18 import resnet18

# A run has diverged when a step's loss is not finite, or an epoch's training or validation loss
# or the test loss is above this (Lightning's `divergence_threshold`). Chance is ln(10) = 2.30, no
# full run ever exceeded 2.1, and the blown-up previews of issue #19 reached 19,932.
DIVERGENCE_LOSS = 1e3
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000  # CIFAR-10's; validation is split from the training
HISTORY = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
POSITIVE = {"epochs", "batch_size", "lr", "width", "val_size", "step_epochs", "gamma"}
POSITIVE |= {"cycle_epochs", "train_subset", "test_subset", "max_lr", "lr_batch"}
RANGES = {"momentum": "in [0, 1)", "label_smoothing": "in [0, 1)", "pct_start": "in (0, 1)"}


@dataclass
class RunConfig:
    """Everything that defines a run. Each experiment is the baseline plus a small change."""

    name: str = "baseline"
    # model
    width: int = 64  # channels of the first stage (64 = the paper's ResNet18)
    zero_init_residual: bool = False  # zero each block's last BN (Goyal et al. 2017)
    # data
    norm: str = "none"  # none | minmax | standard_sampled | standard_exact (see data.py)
    augment: str = "none"  # a preset from augment.py
    val_size: int = 5000  # images held out of the 50,000 training images for validation
    split_seed: int = 0  # fixed across runs so every run is scored on the same validation set
    train_subset: int | None = None  # train on this many of the remaining images (previews)
    test_subset: int | None = None  # evaluate on this many test images (previews)
    # optimisation
    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.05  # base learning rate (the lower bound for the cyclical schedule)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0  # Szegedy et al. 2016
    schedule: str = "step"  # constant | step | cosine | cyclical | onecycle | triangle
    step_epochs: float = 10  # step: multiply the lr by `gamma` every this many epochs
    gamma: float = 0.5
    max_lr: float | None = None  # cyclical / onecycle / triangle peak
    cycle_epochs: float = 4  # cyclical: epochs per up-and-down cycle
    pct_start: float = 0.25  # onecycle / triangle: fraction of the run spent rising
    min_lr: float = 0.0  # cosine: final lr
    warmup_epochs: float = 0  # linear warm-up (Goyal et al. 2017)
    lr_batch: int | None = None  # lr and max_lr are for this batch, scaled by batch_size / it
    min_rise_steps: int = 0  # a onecycle rise shorter than this peaks lower (scaled_peak)
    min_steps_per_epoch: int = 0  # lab.grid.make_config: halve batch_size to this; 0: off
    # evaluation
    tta: bool = False  # average logits over the image and its mirror at test time
    tta_shift: int = 0  # and over both shifted by this many pixels (airbench's TTA: 1)
    seed: int = 0

    def validate(self) -> RunConfig:
        """A LabError naming the first setting no run can use, before any data is loaded (the
        --set parser has checked the types)."""
        for name, v in dataclasses.asdict(self).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue  # a flag, a string (checked below), or None (all, or off)
            rule = RANGES.get(name, "positive" if name in POSITIVE else ">= 0")
            ok = {"in [0, 1)": 0 <= v < 1, "in (0, 1)": 0 < v < 1, "positive": v > 0}
            if not ok.get(rule, v >= 0):
                raise LabError(f"{name} must be {rule}, got {v}")
        if self.val_size >= TRAIN_IMAGES:
            raise LabError(f"val_size {self.val_size} does not fit in the training images")
        if self.optimizer not in ("sgd", "adamw"):
            raise LabError(f"unknown optimizer {self.optimizer!r}; choose sgd or adamw")
        if self.norm not in NORM_MODES:
            raise LabError(f"unknown normalization {self.norm!r}; use {', '.join(NORM_MODES)}")
        check_preset(self.augment)
        self.make_schedule(1)  # an unknown schedule, or one without its max_lr
        return self

    def make_schedule(self, steps_per_epoch: int) -> Schedule:
        """The schedule in optimizer steps; scaled_peak's factor for max_lr (batch size and run
        length) applies to lr too."""
        rise = self.min_rise_steps if self.schedule in ("onecycle", "triangle") else 0
        total = self.epochs * steps_per_epoch
        fit = scaled_peak(1.0, self.batch_size, total, self.lr_batch, self.pct_start, rise)
        try:
            return Schedule(
                kind=self.schedule,
                base_lr=self.lr * fit,
                max_lr=None if self.max_lr is None else self.max_lr * fit,
                min_lr=self.min_lr,
                step_every=max(1, round(self.step_epochs * steps_per_epoch)),
                gamma=self.gamma,
                cycle_steps=max(1, round(self.cycle_epochs * steps_per_epoch)),
                pct_start=self.pct_start,
                warmup_steps=round(self.warmup_epochs * steps_per_epoch),
            )
        except ValueError as e:
            raise LabError(str(e)) from None


def train_size(config: Mapping) -> int:
    """Training images of a run (a RunConfig as a dict): 50,000 less validation, or the subset."""
    n = TRAIN_IMAGES - config["val_size"]
    subset = config.get("train_subset")
    return min(n, subset) if subset is not None else n


@dataclass
class RunResult:
    config: dict
    history: dict = field(default_factory=dict)  # a list per key of HISTORY, one item an epoch
    test_loss: float | None = None
    test_acc: float | None = None
    status: str = "ok"  # ok | diverged
    message: str = ""
    log: list = field(default_factory=list)  # every line the run printed, across resumes
    norm_stats: dict = field(default_factory=dict)
    confusion: list | None = None  # 10x10 test confusion matrix, rows = true class
    env: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    peak_mem_mb: float | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _subset(idx: torch.Tensor, k: int | None, seed: int) -> torch.Tensor:
    if k is None or k >= len(idx):
        return idx
    pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + 1))[:k]
    return idx[pick.sort().values]


def build_loaders(cfg: RunConfig, data: Cifar10, device, world=None, channels_last=True):
    """Train/val/test loaders and the normalization statistics (of the training split). Under DDP
    each loader yields this rank's part of each training batch or of its split."""
    world = world or World()
    train_idx, val_idx = split_train_val(len(data.train_labels), cfg.val_size, cfg.split_seed)
    train_idx = _subset(train_idx, cfg.train_subset, cfg.split_seed)
    test_idx = _subset(torch.arange(len(data.test_labels)), cfg.test_subset, cfg.split_seed)
    val_idx, test_idx = val_idx[world.part(len(val_idx))], test_idx[world.part(len(test_idx))]
    train_images, train_labels = data.train_images[train_idx], data.train_labels[train_idx]
    mean, std = normalization_stats(cfg.norm, train_images, seed=cfg.seed)
    common = dict(mean=mean, std=std, device=device, channels_last=channels_last)
    shuffled = dict(augment=cfg.augment, shuffle=True, seed=cfg.seed, **world.loader_args())
    loaders = (
        DeviceLoader(train_images, train_labels, cfg.batch_size, **shuffled, **common),
        DeviceLoader(data.train_images[val_idx], data.train_labels[val_idx], 1024, **common),
        DeviceLoader(data.test_images[test_idx], data.test_labels[test_idx], 1024, **common),
    )
    return loaders, {"mode": cfg.norm, "mean": list(mean), "std": list(std)}


def make_model(cfg: RunConfig, device: torch.device, precision) -> torch.nn.Module:
    """The run's ResNet18 on `device`, in the memory layout `precision` trains with."""
    model = resnet18(num_classes=10, width=cfg.width, zero_init_residual=cfg.zero_init_residual)
    return model.to(device, memory_format=precision.memory_format)


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    kw = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), **kw)
    nesterov = cfg.nesterov and cfg.momentum > 0  # torch refuses nesterov without momentum
    return torch.optim.SGD(model.parameters(), momentum=cfg.momentum, nesterov=nesterov, **kw)


@torch.no_grad()
def evaluate(model, loader: DeviceLoader, precision, tta=False, tta_shift=0, world=None):
    """Mean loss, accuracy and confusion matrix over a loader (under DDP every rank's part, with
    rank 0's BN statistics). TTA as airbench's: `tta` averages the image and its mirror; with
    `tta_shift` that counts half, and a quarter each the same moved up-left and down-right."""
    world = world or World()
    world.sync_buffers(model)
    model.eval()

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return (model(v) + model(v.flip(3))) / 2 if tta else model(v)

    loss_sum = torch.zeros((), device=loader.device)
    conf = torch.zeros(100, dtype=torch.int64, device=loader.device)
    for x, y in loader:
        with precision.autocast():
            logits = mirrored(x)
            if (s := tta_shift) > 0:
                padded = F.pad(x, (s,) * 4, mode="reflect")
                moved = padded[..., : -2 * s, : -2 * s], padded[..., 2 * s :, 2 * s :]
                logits = 0.5 * logits + 0.25 * (mirrored(moved[0]) + mirrored(moved[1]))
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        conf += torch.bincount(y * 10 + logits.float().argmax(1), minlength=100)
    loss_sum, conf = world.sum(loss_sum), world.sum(conf).view(10, 10).cpu()
    n = int(conf.sum())
    return dict(loss=loss_sum.item() / n, acc=conf.diag().sum().item() / n, confusion=conf.tolist())


def train(
    cfg: RunConfig,
    data: Cifar10,
    device: str | torch.device | None = None,
    ckpt_dir=None,
    resume: bool = False,
    progress: bool = True,
    log=print,
    check_every: int = 50,
    ckpt_every: int = 1,
    compile_mode: str | None = None,
    world: World | None = None,
    precision: str | None = "auto",
) -> RunResult:
    """Train `cfg` on `data`, validating every epoch and testing once at the end. `ckpt_dir` gets
    a checkpoint every `ckpt_every` epochs and the final weights (model.pt); `resume` continues
    from its newest checkpoint; `world` spreads the run over a DDP group. The losses are looked at
    every `check_every` steps (a device sync). Precision and `compile_mode` go in the env."""
    cfg.validate()
    world = world or World()
    if world.helper:  # under DDP rank 0 alone prints and writes files
        log, progress, ckpt_dir = (lambda line: None), False, None
    device = runtime.pick_device(device)
    prec = runtime.choose_precision(device, precision)
    t_start = time.perf_counter()  # moved back by the seconds of the segments before a resume
    lines: list[str] = []  # this run's log, saved in each checkpoint so a resume keeps it

    def say(line: str) -> None:
        lines.append(line)
        log(line)

    # ---- set-up: seed, loaders, model, optimizer, schedule
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    (train_dl, val_dl, test_dl), norm = build_loaders(cfg, data, device, world, prec.channels_last)
    for part, labels in (("training", data.train_labels), ("test", data.test_labels)):
        counts = torch.bincount(labels.cpu(), minlength=len(data.classes)).tolist()
        if missing := [c for c, k in zip(data.classes, counts) if k == 0]:
            say(f"warning: the {part} images have no {', '.join(missing)}: fix {data.source}")
    model = world.prepare(make_model(cfg, device, prec))  # SyncBatchNorm on request
    if compile_mode and device.type == "cpu":  # a crash there is one line, not a dead kernel
        shapes = [(n, *data.train_images.shape[1:]) for n in train_dl.batch_sizes()]
        runtime.probe_compile(model, shapes[:1] + shapes, compile_mode, prec)
    step_model = world.wrap(model)  # compiled, it shares `model`'s parameters and keys
    if compile_mode:
        step_model = torch.compile(step_model, mode=compile_mode)
    opt, scaler = make_optimizer(cfg, model), prec.scaler()
    steps_per_epoch = len(train_dl)
    sched, total_steps = cfg.make_schedule(steps_per_epoch), cfg.epochs * steps_per_epoch
    env = runtime.environment(device) | prec.record() | {"compile": compile_mode} | world.record()
    result = RunResult(dataclasses.asdict(cfg), {k: [] for k in HISTORY}, norm_stats=norm, env=env)
    hist, result.log = result.history, lines

    def diverged(what: str, lr: float) -> RunResult:
        result.status, result.wall_seconds = "diverged", time.perf_counter() - t_start
        advice = "lower the learning rate or lengthen the warm-up"
        result.message = f"diverged: {what} (limit {DIVERGENCE_LOSS:g}, lr {lr:g}); {advice}"
        say(result.message)
        return result

    # ---- resume: the newest checkpoint's weights, optimizer, random state, history and log
    start = 0
    path = latest_checkpoint(ckpt_dir) if resume and ckpt_dir is not None else None
    if (state := world.from_main(load_checkpoint(path) if path else None)) is None:
        say(f"Normalization {norm['mode']}: mean {norm['mean']} std {norm['std']}")
    else:
        saved, mine = state["config"], result.config  # refused unless the same run (the name aside)
        diff = sorted(k for k in {*saved, *mine} - {"name"} if saved.get(k) != mine.get(k))
        if diff:
            raise LabError(
                f"checkpoint {path} was written by a different configuration ({', '.join(diff)} "
                "differ); delete its folder or rerun with --force to start over"
            )
        if (saved_prec := state.get("precision", "fp32")) != prec.name:  # older files: fp32
            raise LabError(
                f"checkpoint {path} was trained in {saved_prec}, this run would continue in "
                f"{prec.name}; rerun with --precision {saved_prec}, or --force to start over"
            )
        if state.get("data") not in (None, data.source):  # older files did not record it
            raise LabError(
                f"checkpoint {path} was trained on other data ({state['data']}), this run has "
                f"{data.source}; point --data-dir at that copy to resume, or --force to start over"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None:  # fp16 in both (checked above)
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        torch.cuda.set_rng_state_all(state["rng"].get("cuda", []))  # none without a GPU
        result.history = hist = state["history"]
        lines += state.get("log", [])
        t_start, start = t_start - state.get("wall_seconds", 0.0), state["epoch"]
        say(f"Resumed from {path} after epoch {start}")

    # ---- the epochs
    step = start * steps_per_epoch  # optimizer steps taken, over every epoch
    bar = dict(total=steps_per_epoch, leave=False, disable=not progress, file=bar_file())
    for epoch in range(start, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        losses = torch.zeros(steps_per_epoch, device=device)  # summed over each batch's images
        correct = torch.zeros((), dtype=torch.int64, device=device)
        batches = tqdm(train_dl.batches(epoch), f"epoch {epoch + 1}/{cfg.epochs}", **bar)
        for i, (x, y) in enumerate(batches):
            lr = lr_at(step, total_steps, sched)
            runtime.set_lr(opt, lr)
            # weight: this rank's share of the global batch under DDP (1.0 in one process)
            logits, loss = runtime.train_step(
                step_model, opt, x, y, prec, scaler, cfg.label_smoothing, train_dl.weight(i)
            )
            step += 1
            losses[i] = loss.detach().float() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                so_far = world.sum(losses[: i + 1])  # every rank stops at the same step
                if len(bad := (~torch.isfinite(so_far)).nonzero()):
                    batches.close()
                    first = int(bad[0])
                    if first > 0:  # keep the finite steps: the curve shows how it blew up
                        mean = so_far[:first].sum().item() / (first * train_dl.batch_size)
                        for key, value in zip(HISTORY, (epoch + 1, lr, mean) + (None,) * 4):
                            hist[key].append(value)
                    return diverged(f"non-finite loss at epoch {epoch + 1}, step {first + 1}", lr)
        batches.close()
        # the epoch's figures over the global batches (every rank's, under DDP)
        seen, seconds = train_dl.num_images, time.perf_counter() - t0
        train_loss = world.sum(losses).sum().item() / seen
        train_acc = world.sum(correct).item() / seen
        val = evaluate(model, val_dl, prec, world=world)
        row = (epoch + 1, lr, train_loss, train_acc, val["loss"], val["acc"], seconds)
        for key, value in zip(HISTORY, row):
            hist[key].append(value if math.isfinite(value) else None)
        say(f"Epoch: {epoch + 1}")
        say(f"learning rate: {lr:.6g}")
        say(f"Train loss: {train_loss:.4f} | Train acc: {train_acc:.4f}")
        say(f"Val loss: {val['loss']:.4f} | Val acc: {val['acc']:.4f}")  # nan stays "nan"
        for what, value in (("training", train_loss), ("validation", val["loss"])):
            if not value <= DIVERGENCE_LOSS:  # also true for nan
                return diverged(f"{what} loss {value:.4g} at epoch {epoch + 1}", lr)
        if ckpt_dir is not None and ckpt_every > 0 and (epoch + 1) % ckpt_every == 0:
            rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all()}
            state = dict(model=model.state_dict(), optimizer=opt.state_dict(), epoch=epoch + 1)
            state.update(config=result.config, history=hist, log=lines, rng=rng, data=data.source)
            state.update(wall_seconds=time.perf_counter() - t_start, precision=prec.name)
            state.update(scaler=scaler and scaler.state_dict())  # fp16 alone has one
            save_checkpoint(state, ckpt_dir)

    # ---- the test, once, with the configured test-time augmentation
    test = evaluate(model, test_dl, prec, cfg.tta, cfg.tta_shift, world)
    result.test_loss, result.test_acc = test["loss"], test["acc"]
    result.confusion = test["confusion"]
    say(f"Test loss: {result.test_loss:.4f} | Test acc: {result.test_acc:.4f}")
    if ckpt_dir is not None:  # the weights, after the test figures: a full disk loses neither
        weights, path = model.state_dict(), Path(ckpt_dir) / "model.pt"
        try:
            atomic_write(path, lambda f: torch.save(weights, f))
        except OSError as e:
            say(f"warning: cannot write {path} ({e.strerror or e}); results kept without it")
    if device.type == "cuda":
        result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    if not result.test_loss <= DIVERGENCE_LOSS:
        diverged(f"test loss {result.test_loss:.4g}", hist["lr"][-1])
    result.test_loss = result.test_loss if math.isfinite(result.test_loss) else None
    result.wall_seconds = time.perf_counter() - t_start
    return result
