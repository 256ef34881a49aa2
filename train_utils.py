"""Training and evaluation of the lab's ResNet18 on CIFAR-10.

One `RunConfig` holds a run's settings; `train(cfg, data)` runs it and returns a `RunResult`
(history per epoch, test loss/accuracy, status) and prints the lab handout's log lines:

    Epoch: 1
    learning rate: 0.05
    Train loss: 1.6021 | Train acc: 0.4123
    Val loss: 1.3312 | Val acc: 0.5210
    ...
    Test loss: 0.4501 | Test acc: 0.8712

The precision is one decision (engine/runtime.py `choose_precision`): on CUDA bf16 autocast
(fp16 + GradScaler where bf16 is missing), channels_last and cudnn.benchmark; on a CPU with
native bfloat16 (AVX512-BF16 or AMX) bf16 autocast and channels_last, else float32; `precision`
forces bf16 or fp32. Every result records it. `compile_mode` optionally runs the training forward
and backward through `torch.compile` (an execution choice, like the device: not part of the
RunConfig, so it never makes a saved result stale). Checkpoints every epoch make a run resumable
(`resume=True`), and a non-finite or exploding loss (see `DIVERGENCE_LOSS`) ends the run with
status "diverged" instead of crashing or finishing "ok" with a wrecked network.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.checkpoint import (
    atomic_write,
    latest_checkpoint,
    load_checkpoint,
    resume_run,
    run_state,
    save_run_state,
)
from engine.data import (
    Cifar10,
    get_mean_std,
    load_cifar10,
    normalization_stats,
    split_train_val,
)
from engine.distributed import World
from engine.errors import LabError, bar_file
from engine.loader import DeviceLoader
from engine.plotting import plot_history, plot_overlay  # noqa: F401  (re-exported for the notebook)
from engine.runtime import (  # noqa: F401  (pick_device, optimizer_step re-exported)
    Precision,
    check_compile_mode,
    choose_precision,
    compile_for_training,
    environment,
    optimizer_step,
    pick_device,
    probe_compile,
    seed_everything,
    set_lr,
    train_step,
)
from engine.schedules import Schedule, lr_at, scaled_peak
from engine.settings import check_settings
from resnet18 import resnet18

__all__ = [
    "RunConfig",
    "RunResult",
    "train",
    "evaluate",
    "load_cifar10",
    "get_mean_std",
    "plot_history",
    "plot_overlay",
    "pick_device",
]


# A run has diverged when a training step's loss is not finite, or when an epoch's mean training
# loss, its validation loss or the test loss is not finite or exceeds this. Cross-entropy at chance
# is ln(10) = 2.30 and no committed full-profile run ever exceeded 2.1, so 1e3 (430x chance: the
# mean probability given to the true class is e^-1000) is far beyond any run that is still
# learning, yet well below the blown-up previews of issue #19 (validation losses 19,932 and
# ~40,000). Like Lightning's `EarlyStopping(divergence_threshold=...)`, it is a fixed bound on the
# monitored loss; it is not part of RunConfig, so saved results stay comparable.
DIVERGENCE_LOSS = 1e3


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
    # Fitting lr and max_lr to the run (schedules.scaled_peak; off at the defaults): they are
    # the values for batch `lr_batch`, scaled by batch_size / lr_batch; and a onecycle run whose
    # rise is shorter than `min_rise_steps` optimizer steps peaks lower, in proportion.
    lr_batch: int | None = None
    min_rise_steps: int = 0
    # Set by a recipe, applied by lab.grid.make_config: batch_size is halved (not below 32)
    # until an epoch makes at least this many steps, unless the user sets batch_size
    # (schedules.fitted_batch). 0: off.
    min_steps_per_epoch: int = 0
    # evaluation
    tta: bool = False  # average logits over the image and its mirror at test time
    tta_shift: int = 0  # and over both shifted by this many pixels (airbench's TTA: 1)
    seed: int = 0

    def validate(self) -> RunConfig:
        """Every setting's type and range, checked before any data is loaded or trained on; a
        LabError naming the first bad one (engine/settings.py)."""
        check_settings(self)
        self.make_schedule(1)  # raises on a bad schedule name or missing max_lr
        return self

    def make_schedule(self, steps_per_epoch: int) -> Schedule:
        def steps(epochs: float) -> int:
            return max(1, round(epochs * steps_per_epoch))

        # The factor scaled_peak applies to max_lr applies to lr too (batch and run length).
        fit = scaled_peak(
            1.0,
            self.batch_size,
            self.epochs * steps_per_epoch,
            self.lr_batch,
            self.pct_start,
            self.min_rise_steps if self.schedule in ("onecycle", "triangle") else 0,
        )
        try:
            return Schedule(
                kind=self.schedule,
                base_lr=self.lr * fit,
                max_lr=None if self.max_lr is None else self.max_lr * fit,
                min_lr=self.min_lr,
                step_every=steps(self.step_epochs),
                gamma=self.gamma,
                cycle_steps=steps(self.cycle_epochs),
                pct_start=self.pct_start,
                warmup_steps=round(self.warmup_epochs * steps_per_epoch),
            )
        except ValueError as e:
            raise LabError(str(e)) from None


@dataclass
class RunResult:
    config: dict
    history: dict = field(default_factory=dict)  # lists per epoch: see `_new_history`
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

    @property
    def best_val_acc(self) -> float | None:
        return max(self.history["val_acc"], default=None) if self.history else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _new_history() -> dict:
    keys = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
    return {k: [] for k in keys}


@torch.no_grad()
def evaluate(
    model,
    loader: DeviceLoader,
    tta: bool = False,
    num_classes: int = 10,
    world: World | None = None,
    precision: Precision | None = None,
    tta_shift: int = 0,
) -> dict:
    """Mean loss, accuracy and confusion matrix of `model` over a whole loader (under DDP: over
    every rank's part of the split, with rank 0's BN statistics). `precision` defaults to the
    device's automatic choice. With `tta`, the logits are averaged over the image and its mirror;
    with `tta_shift` also over both shifted by that many pixels (see `tta_logits`)."""
    world = world or World()
    world.sync_buffers(model)
    model.eval()
    precision = precision or choose_precision(loader.device)
    loss_sum = torch.zeros((), device=loader.device)
    conf = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=loader.device)
    for x, y in loader:
        with precision.autocast():
            logits = tta_logits(model, x, tta, tta_shift).float()
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        conf += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes**2)
    loss_sum, conf = world.sum(loss_sum), world.sum(conf)
    conf = conf.view(num_classes, num_classes).cpu()
    n = int(conf.sum())
    return {
        "loss": loss_sum.item() / n,
        "acc": conf.diag().sum().item() / n,
        "confusion": conf.tolist(),
    }


def tta_logits(model, x: torch.Tensor, flip: bool = False, shift: int = 0) -> torch.Tensor:
    """Test-time augmentation as airbench evaluates (Jordan 2024, tta_level 2): the mean of the
    logits of the image and its mirror; with `shift`, that mean averaged half and half with the
    same mean over the image translated by `shift` pixels up-left and down-right (reflect
    padding)."""

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return (model(v) + model(v.flip(3))) / 2 if flip else model(v)

    logits = mirrored(x)
    if shift <= 0:
        return logits
    h, w = x.shape[-2:]
    padded = F.pad(x, (shift,) * 4, mode="reflect")
    moved = [padded[:, :, :h, :w], padded[:, :, 2 * shift :, 2 * shift :]]
    return 0.5 * logits + 0.25 * (mirrored(moved[0]) + mirrored(moved[1]))


def _subset(idx: torch.Tensor, k: int | None, seed: int) -> torch.Tensor:
    if k is None or k >= len(idx):
        return idx
    pick = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + 1))[:k]
    return idx[pick.sort().values]


def build_loaders(
    cfg: RunConfig,
    data: Cifar10,
    device: torch.device,
    eval_batch: int = 1024,
    world: World | None = None,
    channels_last: bool | None = None,
):
    """Train/val/test loaders and the normalization statistics, from the training split only.
    Under DDP the training loader yields this rank's part of each batch, and the validation and
    test loaders this rank's part of their split. `channels_last` defaults to what the device's
    automatic precision uses."""
    world = world or World()
    if channels_last is None:
        channels_last = choose_precision(device).channels_last
    train_idx, val_idx = split_train_val(len(data.train_labels), cfg.val_size, cfg.split_seed)
    train_idx = _subset(train_idx, cfg.train_subset, cfg.split_seed)
    test_idx = _subset(torch.arange(len(data.test_labels)), cfg.test_subset, cfg.split_seed)
    val_idx, test_idx = val_idx[world.part(len(val_idx))], test_idx[world.part(len(test_idx))]
    train_images = data.train_images[train_idx]
    mean, std = normalization_stats(cfg.norm, train_images, seed=cfg.seed)
    common = dict(mean=mean, std=std, device=device, channels_last=channels_last)
    loaders = (
        DeviceLoader(
            train_images,
            data.train_labels[train_idx],
            cfg.batch_size,
            augment=cfg.augment,
            shuffle=True,
            seed=cfg.seed,
            **world.loader_args(),
            **common,
        ),
        DeviceLoader(data.train_images[val_idx], data.train_labels[val_idx], eval_batch, **common),
        DeviceLoader(data.test_images[test_idx], data.test_labels[test_idx], eval_batch, **common),
    )
    return loaders, {"mode": cfg.norm, "mean": list(mean), "std": list(std)}


def make_model(cfg: RunConfig, device: torch.device, precision: Precision) -> torch.nn.Module:
    """The run's ResNet18 on `device`, in the memory layout `precision` trains with."""
    model = resnet18(num_classes=10, width=cfg.width, zero_init_residual=cfg.zero_init_residual)
    return model.to(device, memory_format=precision.memory_format)


def make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


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
    divergence_loss: float | None = None,
    world: World | None = None,
    precision: str | None = "auto",
) -> RunResult:
    """Train `cfg` on `data`; evaluate on validation every epoch and on test once at the end.

    `ckpt_dir` gets a checkpoint every `ckpt_every` epochs (and `model.pt`, the final weights);
    `resume` continues from its newest one. `world` (default: one process) spreads the run over
    a DDP process group (engine/distributed.py's `start` forms it). `precision` is auto | bf16 |
    fp32 (runtime.choose_precision); the results record the one used and why. The losses are
    looked at every `check_every` steps, not after each step: a look costs a device sync."""
    cfg.validate()
    world = world or World()
    if world.helper:  # under DDP rank 0 alone prints and writes files
        log, progress, ckpt_dir = (lambda line: None), False, None
    device = pick_device(device)
    check_compile_mode(compile_mode)
    prec = choose_precision(device, precision)
    limit = DIVERGENCE_LOSS if divergence_loss is None else divergence_loss
    t_start, prior_seconds = time.perf_counter(), 0.0  # prior: the segments before a resume
    lines: list[str] = []  # this run's log, saved in each checkpoint so a resume keeps it

    def say(line: str) -> None:
        lines.append(line)
        log(line)

    def elapsed() -> float:
        return prior_seconds + time.perf_counter() - t_start

    # ---- set-up: seed, loaders, model, optimizer, schedule
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    (train_dl, val_dl, test_dl), norm = build_loaders(
        cfg, data, device, world=world, channels_last=prec.channels_last
    )
    _warn_missing_classes(data, say)
    model = world.prepare(make_model(cfg, device, prec))  # SyncBatchNorm on request
    if compile_mode and device.type == "cpu":  # a crash there is one line, not a dead kernel
        sizes = train_dl.batch_sizes()
        probe_compile(
            model,
            [(n, *data.train_images.shape[1:]) for n in sizes[:1] + sizes],
            compile_mode,
            prec,
        )
    step_model = compile_for_training(world.wrap(model), compile_mode)
    opt = make_optimizer(cfg, model)
    scaler = prec.scaler()
    steps_per_epoch = len(train_dl)
    sched = cfg.make_schedule(steps_per_epoch)
    total_steps = cfg.epochs * steps_per_epoch
    result = RunResult(
        config=dataclasses.asdict(cfg),
        history=_new_history(),
        norm_stats=norm,
        env={**environment(device), **prec.record(), "compile": compile_mode, **world.record()},
        log=lines,
    )
    hist = result.history

    def diverged(message: str) -> RunResult:
        result.status, result.message = "diverged", message
        result.wall_seconds = elapsed()
        say(message)
        return result

    # ---- resume: the newest checkpoint's weights, optimizer, random state, history and log
    start = 0
    path = latest_checkpoint(ckpt_dir) if resume and ckpt_dir is not None else None
    # Under DDP rank 0 reads the checkpoint and sends it to the others, on the CPU (a tensor
    # pickled on cuda:0 would arrive on cuda:0 everywhere).
    state = load_checkpoint(path, map_location="cpu" if world.ddp else device) if path else None
    if (state := world.from_main(state)) is None:
        say(f"Normalization {norm['mode']}: mean {norm['mean']} std {norm['std']}")
    else:
        resume_run(
            state,
            path,
            model,
            opt,
            scaler,
            config=result.config,
            precision=prec.name,
            data=data.source,
        )
        result.history = hist = state["history"]
        lines += state.get("log", [])
        prior_seconds = state.get("wall_seconds", 0.0)
        start = state["epoch"]
        say(f"Resumed from {path} after epoch {start}")

    # ---- the epochs
    step = start * steps_per_epoch  # optimizer steps taken, over every epoch
    for epoch in range(start, cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        losses = torch.zeros(steps_per_epoch, device=device)  # summed over each batch's images
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        batches = tqdm(
            train_dl.batches(epoch),
            total=steps_per_epoch,
            leave=False,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            file=bar_file(),
            mininterval=1.0,
            ascii=True,
        )
        for i, (x, y) in enumerate(batches):
            lr = lr_at(step, total_steps, sched)
            set_lr(opt, lr)
            weight = train_dl.weight(i) if world.ddp else 1.0  # a DDP rank's share of the batch
            logits, loss = train_step(
                step_model, opt, x, y, prec, scaler, cfg.label_smoothing, weight
            )
            step += 1
            losses[i] = loss.detach().float() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                so_far = world.sum(losses[: i + 1])  # every rank stops at the same step
                bad = (~torch.isfinite(so_far)).nonzero()
                if len(bad):
                    batches.close()
                    first = int(bad[0])
                    if first > 0:  # keep the finite steps: the curve shows how it blew up
                        mean = so_far[:first].sum().item() / (first * train_dl.batch_size)
                        for key, value in zip(hist, (epoch + 1, lr, mean) + (None,) * 4):
                            hist[key].append(value)
                    return diverged(
                        f"diverged: non-finite loss at epoch {epoch + 1}, step {first + 1} "
                        f"(lr {lr:g}); lower the learning rate"
                    )
        batches.close()
        if world.ddp:  # the epoch's figures over the global batches
            losses, correct, seen = world.sum(losses), world.sum(correct), train_dl.num_images
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_loss, train_acc = losses.sum().item() / seen, correct.item() / seen
        seconds = time.perf_counter() - t0
        val = evaluate(model, val_dl, world=world, precision=prec)
        row = (epoch + 1, lr, train_loss, train_acc, val["loss"], val["acc"], seconds)
        for key, value in zip(hist, row):
            hist[key].append(value if math.isfinite(value) else None)
        _log_epoch(say, hist, -1)
        for what, value in (("training", train_loss), ("validation", val["loss"])):
            if not value <= limit:  # also true for nan
                return diverged(
                    _exploded(f"{what} loss {value:.4g} at epoch {epoch + 1}", lr, limit)
                )
        if ckpt_dir is not None and ckpt_every > 0 and (epoch + 1) % ckpt_every == 0:
            state = run_state(
                model,
                opt,
                scaler,
                epoch=epoch + 1,
                config=result.config,
                history=hist,
                log=lines,
                wall_seconds=elapsed(),
                precision=prec.name,
                data=data.source,
            )
            save_run_state(state, ckpt_dir, epoch + 1)

    # ---- the test, once, with the configured test-time augmentation
    test = evaluate(
        model, test_dl, tta=cfg.tta, world=world, precision=prec, tta_shift=cfg.tta_shift
    )
    result.test_loss, result.test_acc, result.confusion = (
        test["loss"],
        test["acc"],
        test["confusion"],
    )
    say(f"Test loss: {result.test_loss:.4f} | Test acc: {result.test_acc:.4f}")
    if ckpt_dir is not None:  # the weights alone, after the test figures: a failed save (a full
        weights = model.state_dict()  # disk) loses neither
        try:
            atomic_write(Path(ckpt_dir) / "model.pt", lambda f: torch.save(weights, f))
        except OSError as e:
            say(
                f"warning: cannot write {Path(ckpt_dir) / 'model.pt'} ({e.strerror or e}); the "
                "test figures and results are kept, the final weights are not saved"
            )
    if device.type == "cuda":
        result.peak_mem_mb = torch.cuda.max_memory_allocated(device) / 2**20
    if not result.test_loss <= limit:
        last_lr = hist["lr"][-1] if hist["lr"] else cfg.lr
        diverged(_exploded(f"test loss {result.test_loss:.4g}", last_lr, limit))
    result.test_loss = result.test_loss if math.isfinite(result.test_loss) else None
    result.wall_seconds = elapsed()
    return result


def _exploded(what: str, lr: float, limit: float) -> str:
    """The message for a loss that is not finite or above `limit` after an epoch or at test."""
    return (
        f"diverged: {what} (limit {limit:g}, lr {lr:g}); lower the learning rate or "
        "lengthen the warm-up"
    )


def _warn_missing_classes(data: Cifar10, say) -> None:
    """A warning when a class has no image: an incomplete copy, whose figures are not CIFAR-10's."""
    for part, labels in (("training", data.train_labels), ("test", data.test_labels)):
        counts = torch.bincount(labels.cpu(), minlength=len(data.classes))
        missing = [c for c, k in zip(data.classes, counts.tolist()) if k == 0]
        if missing:
            say(
                f"warning: the {part} images have no {', '.join(missing)} (a class folder "
                f"missing from {data.source}?); the figures are not CIFAR-10's: fix the copy"
            )


def _log_epoch(log, hist: dict, i: int) -> None:
    def num(v) -> str:  # a non-finite value is stored as None (JSON has no nan)
        return "nan" if v is None else f"{v:.4f}"

    log(f"Epoch: {hist['epoch'][i]}")
    log(f"learning rate: {hist['lr'][i]:.6g}")
    log(f"Train loss: {num(hist['train_loss'][i])} | Train acc: {hist['train_acc'][i]:.4f}")
    if hist["val_acc"][i] is not None:
        log(f"Val loss: {num(hist['val_loss'][i])} | Val acc: {hist['val_acc'][i]:.4f}")
