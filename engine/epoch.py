"""One epoch of training steps, and the checks that a run has not diverged.

`train_epoch` runs a `step(i, x, y)` (train_utils.train's: the schedule's lr, then
runtime.train_step) on each of an epoch's batches and sums the losses and correct predictions
on the device. It looks at the losses every `check_every` steps and at the epoch's end, not
after each step, because a look costs a device sync; under DDP every rank looks at the summed
losses, so all stop at the same step. A non-finite loss ends the epoch with the step it first
appeared at; `exploded` words the other divergence, a mean loss beyond the run's limit
(train_utils.DIVERGENCE_LOSS unless train() is given another).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

from engine.distributed import World
from engine.loader import DeviceLoader
from engine.progress import bar_file


@dataclass
class Epoch:
    """An epoch's training figures over every rank's batches, or where it diverged."""

    lr: float  # the learning rate of the last step taken
    loss: float | None  # mean per image; diverged: over the finite steps (None if there were none)
    acc: float | None = None
    seconds: float = 0.0  # the steps' wall time, after a device sync
    diverged: str = ""  # the one-line message when a step's loss was not finite


def train_epoch(
    loader: DeviceLoader,
    epoch: int,
    step: Callable,
    world: World,
    check_every: int = 50,
    progress: bool = True,
    desc: str = "",
) -> Epoch:
    """Epoch `epoch` of `loader`'s batches, each through `step(i, x, y) -> (logits, loss, lr)`."""
    t0 = time.perf_counter()
    steps = len(loader)
    losses = torch.zeros(steps, device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    seen = 0
    bar = tqdm(
        loader.batches(epoch),
        total=steps,
        desc=desc,
        disable=not progress,
        leave=False,
        file=bar_file(),
        mininterval=1.0,
        ascii=True,
    )
    for i, (x, y) in enumerate(bar):
        logits, loss, lr = step(i, x, y)
        losses[i] = loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if (i + 1) % check_every == 0 or i + 1 == steps:
            so_far = world.sum(losses[: i + 1])  # all ranks must stop at the same step
            bad = (~torch.isfinite(so_far)).nonzero()
            if len(bad):
                bar.close()
                return _diverged(epoch, int(bad[0]), lr, so_far, loader.batch_size)
    bar.close()
    if world.ddp:  # the epoch's figures over the global batches
        losses, correct, seen = world.sum(losses), world.sum(correct), loader.num_images
    if loader.device.type == "cuda":
        torch.cuda.synchronize(loader.device)
    return Epoch(lr, losses.sum().item() / seen, correct.item() / seen, time.perf_counter() - t0)


def _diverged(epoch: int, first: int, lr: float, losses: torch.Tensor, batch_size: int) -> Epoch:
    """A non-finite loss at step `first`: where, and the mean of the finite steps before it, so
    the curve shows how it blew up."""
    message = (
        f"diverged: non-finite loss at epoch {epoch + 1}, step {first + 1} "
        f"(lr {lr:g}); lower the learning rate"
    )
    loss = losses[:first].sum().item() / (first * batch_size) if first > 0 else None
    return Epoch(lr, loss, diverged=message)


def exploded(what: str, lr: float, limit: float) -> str:
    """The message for a loss that is not finite or above `limit` after an epoch or at test."""
    return (
        f"diverged: {what} (limit {limit:g}, lr {lr:g}); lower the learning rate or "
        "lengthen the warm-up"
    )
