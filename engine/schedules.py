"""Learning-rate strategies as pure functions of the optimizer step (nanoGPT's `get_lr(it)`), so
a schedule is plotted and tested without training; the loop writes lr_at's value every step.

- step: the handout's lr 0.05 halved every 10 epochs (He et al. 2015 divide by 10)
- cosine: Loshchilov & Hutter 2017, "SGDR", without restarts
- cyclical: Smith 2017, "Cyclical Learning Rates", the triangular policy
- onecycle: Smith & Topin 2017, "Super-Convergence": linear up, cosine down (as torch's OneCycleLR)
- triangle: linear up from base_lr to max_lr, linear down to min_lr: airbench's ResNet-18 baseline
- warm-up: linear, Goyal et al. 2017, "Accurate, Large Minibatch SGD"
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("constant", "step", "cosine", "cyclical", "onecycle", "triangle")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate strategy; all lengths are in optimizer steps."""

    kind: str = "step"
    base_lr: float = 0.05  # the starting lr (cyclical: the lower bound; onecycle: unused)
    max_lr: float | None = None  # cyclical, onecycle, triangle: the peak lr
    min_lr: float = 0.0  # cosine, triangle: the final lr
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
        if self.kind in ("cyclical", "onecycle", "triangle") and (self.max_lr or 0) <= 0:
            raise ValueError(f"the {self.kind} schedule needs a positive max_lr")


def _base(step: int, total_steps: int, s: Schedule) -> float:
    if s.kind == "constant":
        return s.base_lr
    if s.kind == "step":
        return s.base_lr * s.gamma ** (step // max(1, s.step_every))
    if s.kind == "cosine":
        t = min(step / max(1, total_steps), 1.0)
        return s.min_lr + 0.5 * (s.base_lr - s.min_lr) * (1 + math.cos(math.pi * t))
    if s.kind == "cyclical":
        half = max(1, s.cycle_steps // 2)
        x = abs(step / half % 2 - 1)  # 1 at the start of a cycle, 0 at its peak
        return s.base_lr + (s.max_lr - s.base_lr) * (1 - x)
    # triangle and onecycle: linear up to max_lr, then down to `end`
    if s.kind == "triangle":
        start, end = s.base_lr, s.min_lr
    else:
        start = s.max_lr / s.div_factor
        end = start / s.final_div
    peak_step = max(1, round(s.pct_start * total_steps))
    if step < peak_step:
        return start + (s.max_lr - start) * step / peak_step
    t = min((step - peak_step) / max(1, total_steps - peak_step), 1.0)
    if s.kind == "triangle":
        return s.max_lr + (end - s.max_lr) * t
    return end + 0.5 * (s.max_lr - end) * (1 + math.cos(math.pi * t))


def scaled_peak(peak, batch_size, total_steps, lr_batch=None, pct_start=0.25, min_rise_steps=0):
    """A recipe's peak lr scaled by `batch_size / lr_batch` (Goyal et al. 2017), and lowered in
    proportion when its rise is shorter than `min_rise_steps`: a fresh network cannot take a
    large lr at once (issue #19: a preview reached 0.4 in 16 steps and ended at 17.7%)."""
    if lr_batch:
        peak *= batch_size / lr_batch
    rise = max(1, round(pct_start * total_steps))
    if rise < min_rise_steps:
        peak *= rise / min_rise_steps
    return peak


def fitted_batch(batch_size: int, images: int, min_steps_per_epoch: int, floor: int = 32) -> int:
    """`batch_size` halved (not below `floor`) until an epoch of `images` makes at least
    `min_steps_per_epoch` steps (issue #19): on a CPU preview's few thousand images batch 512
    makes too few steps to learn from, and diverged where batch 128 learned."""
    while batch_size // 2 >= floor and -(-images // batch_size) < min_steps_per_epoch:
        batch_size //= 2
    return batch_size


def lr_at(step: int, total_steps: int, s: Schedule) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total_steps`."""
    lr = _base(step, total_steps, s)
    if step < s.warmup_steps:
        lr *= (step + 1) / s.warmup_steps  # step 0 already moves; the ramp ends on the schedule
    return lr


def lr_curve(total_steps: int, s: Schedule) -> list[float]:
    return [lr_at(i, total_steps, s) for i in range(total_steps)]
