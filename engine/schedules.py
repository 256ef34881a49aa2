"""Learning-rate strategies as pure functions of the optimizer step.

Every strategy is `lr_at(step, total_steps, sched)`: no optimizer, no state, so a schedule can be
plotted and unit-tested without training anything (nanoGPT's `get_lr(it)`). The training loop
writes the returned value into each parameter group before every step.

References
- Step decay: the lab handout (lr 0.05 halved every 10 epochs); He et al. 2015 (divide by 10).
- Cosine annealing: Loshchilov & Hutter 2017, "SGDR" (without restarts).
- Cyclical learning rates, triangular policy: Smith 2015/2017, "Cyclical Learning Rates for
  Training Neural Networks".
- One-cycle: Smith & Topin 2017, "Super-Convergence" (linear up, then annealed down).
- Linear warm-up: Goyal et al. 2017, "Accurate, Large Minibatch SGD".
- Triangle: linear up from base_lr to max_lr, then linear down to min_lr (0): the schedule of
  Keller Jordan's airbench ResNet-18 baseline (0.2x the peak up to the peak at 20% of the steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("constant", "step", "cosine", "cyclical", "onecycle", "triangle")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate strategy; all lengths are in optimizer steps."""

    kind: str = "step"
    base_lr: float = 0.05  # constant/step/cosine: the starting lr; cyclical: the lower bound
    max_lr: float | None = None  # cyclical and onecycle: the peak lr
    min_lr: float = 0.0  # cosine, triangle: the final lr; onecycle: max_lr / final_div
    step_every: int = 1  # step: decay every this many steps
    gamma: float = 0.5  # step: multiply the lr by this at each decay
    cycle_steps: int = 1  # cyclical: steps in one full up-and-down cycle
    pct_start: float = 0.25  # onecycle, triangle: fraction of the run spent rising
    div_factor: float = 25.0  # onecycle: starting lr = max_lr / div_factor
    final_div: float = 1e4  # onecycle: final lr = max_lr / (div_factor * final_div)
    warmup_steps: int = 0  # linear warm-up from ~0 to the schedule's value

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.base_lr <= 0:
            raise ValueError(f"learning rate must be positive, got {self.base_lr}")
        if self.kind in ("cyclical", "onecycle", "triangle") and (
            self.max_lr is None or self.max_lr <= 0
        ):
            raise ValueError(f"the {self.kind} schedule needs a positive max_lr")


def _base(step: int, total_steps: int, s: Schedule) -> float:
    """The schedule's value before warm-up is applied."""
    if s.kind == "constant":
        return s.base_lr
    if s.kind == "step":
        return s.base_lr * s.gamma ** (step // max(1, s.step_every))
    if s.kind == "cosine":
        t = min(step / max(1, total_steps), 1.0)
        return s.min_lr + 0.5 * (s.base_lr - s.min_lr) * (1 + math.cos(math.pi * t))
    if s.kind == "cyclical":
        # Smith's triangular policy: a triangle wave between base_lr and max_lr.
        half = max(1, s.cycle_steps // 2)
        x = abs(step / half % 2 - 1)  # 1 at the start of a cycle, 0 at its peak
        return s.base_lr + (s.max_lr - s.base_lr) * (1 - x)
    if s.kind == "triangle":
        assert s.max_lr is not None
        peak_step = max(1, round(s.pct_start * total_steps))
        if step < peak_step:
            return s.base_lr + (s.max_lr - s.base_lr) * step / peak_step
        t = min((step - peak_step) / max(1, total_steps - peak_step), 1.0)
        return s.max_lr + (s.min_lr - s.max_lr) * t
    # onecycle: linear from max_lr/div_factor up to max_lr, then cosine down to
    # max_lr/(div_factor*final_div) -- the shape torch.optim.lr_scheduler.OneCycleLR uses.
    assert s.max_lr is not None
    start = s.max_lr / s.div_factor
    end = start / s.final_div
    peak_step = max(1, round(s.pct_start * total_steps))
    if step < peak_step:
        return start + (s.max_lr - start) * step / peak_step
    t = min((step - peak_step) / max(1, total_steps - peak_step), 1.0)
    return end + 0.5 * (s.max_lr - end) * (1 + math.cos(math.pi * t))


def scaled_peak(
    peak: float,
    batch_size: int,
    total_steps: int,
    lr_batch: int | None = None,
    pct_start: float = 0.25,
    min_rise_steps: int = 0,
) -> float:
    """A recipe's peak lr fitted to this run's batch and length (issue #19).

    - Batch: a recipe tuned at batch `lr_batch` scales its lr linearly with `batch_size /
      lr_batch` (Goyal et al. 2017), so the lr per image seen stays the same.
    - Length: the rise to the peak takes `pct_start * total_steps` steps, and a run whose rise is
      shorter than `min_rise_steps` peaks lower, in proportion, so that the lr never climbs faster
      than `peak / min_rise_steps` per step. A freshly initialised network cannot take a large lr
      at once (the reason for warm-up: Goyal et al. 2017; Gotmare et al. 2019): issue #19's preview
      reached lr 0.4 in 16 steps and ended at 17.7%, where 76 steps at a lower peak learn.
      Runs whose rise is at least `min_rise_steps` long keep the recipe's peak untouched.
    """
    if lr_batch:
        peak *= batch_size / lr_batch
    rise = max(1, round(pct_start * total_steps))
    if rise < min_rise_steps:
        peak *= rise / min_rise_steps
    return peak


def fitted_batch(batch_size: int, images: int, min_steps_per_epoch: int, floor: int = 32) -> int:
    """A recipe's batch for a run on `images` training images: halved (not below `floor`) until
    an epoch makes at least `min_steps_per_epoch` optimizer steps (issue #19).

    Myrtle's batch of 512 makes 88 steps an epoch of 45,000 images. On a CPU preview's few
    thousand images it would make 10-20, too few to learn from at any lr: measured at the CPU
    budget, batch 512 with 19 steps an epoch diverged where batch 128 learned. Small batches use
    few images better early in training, when the gradient noise scale is small (McCandlish et
    al. 2018, "An Empirical Model of Large-Batch Training"); the lr follows the batch through
    `scaled_peak`'s linear scaling. On a CPU an image costs about the same at any batch size.
    """
    while batch_size // 2 >= floor and -(-images // batch_size) < min_steps_per_epoch:
        batch_size //= 2
    return batch_size


def lr_at(step: int, total_steps: int, s: Schedule) -> float:
    """The learning rate to use for optimizer step `step` (0-based) of `total_steps`."""
    lr = _base(step, total_steps, s)
    if s.warmup_steps > 0 and step < s.warmup_steps:
        # Ramp linearly so that step 0 already moves (never exactly 0) and the end of the
        # warm-up meets the schedule.
        lr *= (step + 1) / s.warmup_steps
    return lr


def lr_curve(total_steps: int, s: Schedule) -> list[float]:
    """The whole schedule, one value per step, for plots."""
    return [lr_at(i, total_steps, s) for i in range(total_steps)]
