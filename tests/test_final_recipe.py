"""The final recipe (issue #19): Myrtle's ResNet-18 settings, an 8x8 cutout, and a peak lr
fitted to the run's batch and length, so that a CPU preview of a few dozen steps is not wrecked
by a peak meant for thousands. Pure functions and configurations: no training, milliseconds."""

import math

import pytest
import torch

from engine import grid
from engine.augment import CUTOUT, PRESETS, augment_batch, draw, torchvision_transform
from engine.schedules import lr_curve, scaled_peak
from tools.budget_check import BUDGET, RECIPES


def steps_per_epoch(cfg) -> int:
    return math.ceil((cfg.train_subset or 50_000 - cfg.val_size) / cfg.batch_size)


def peak_of(cfg) -> float:
    n = steps_per_epoch(cfg)
    return max(lr_curve(cfg.epochs * n, cfg.make_schedule(n)))


# ---- scaled_peak ----------------------------------------------------------------------------


def test_scaled_peak_scales_linearly_with_the_batch() -> None:
    assert scaled_peak(0.4, 512, 10_000, lr_batch=512) == pytest.approx(0.4)
    assert scaled_peak(0.4, 128, 10_000, lr_batch=512) == pytest.approx(0.1)
    assert scaled_peak(0.4, 2048, 10_000, lr_batch=512) == pytest.approx(1.6)
    assert scaled_peak(0.4, 128, 10_000) == pytest.approx(0.4)  # no lr_batch: untouched


def test_scaled_peak_lowers_the_peak_of_a_short_climb_in_proportion() -> None:
    # a rise of 25% of 76 steps = 19 steps against a minimum of 100: 19% of the peak
    assert scaled_peak(0.4, 512, 76, pct_start=0.25, min_rise_steps=100) == pytest.approx(0.076)
    # a long run keeps the recipe's peak
    assert scaled_peak(0.4, 512, 2640, pct_start=0.25, min_rise_steps=100) == pytest.approx(0.4)
    # the climb's slope never exceeds peak / min_rise_steps, whatever the length
    for total in (4, 40, 76, 200, 399, 400, 401, 5000):
        rise = max(1, round(0.25 * total))
        assert scaled_peak(0.4, 512, total, pct_start=0.25, min_rise_steps=100) / rise <= (
            0.4 / 100 + 1e-12
        )


# ---- the final recipe in the grid -----------------------------------------------------------


def test_final_is_myrtles_recipe_on_the_full_profile() -> None:
    cfg = grid.make_config("final", "full")
    assert (cfg.batch_size, cfg.epochs, cfg.max_lr, cfg.pct_start) == (512, 30, 0.4, 0.25)
    assert cfg.nesterov and cfg.momentum == 0.9 and cfg.weight_decay == 5e-4
    assert cfg.augment == "crop_flip_cutout8" and cfg.label_smoothing == 0
    assert cfg.norm == "standard_exact" and cfg.schedule == "onecycle" and cfg.tta
    assert peak_of(cfg) == pytest.approx(0.4)  # 660-step rise: Myrtle's peak, untouched


@pytest.mark.parametrize("profile", ["quick", "smoke"])
def test_final_previews_climb_no_faster_than_the_full_run(profile: str) -> None:
    full = grid.make_config("final", "full")
    cfg = grid.make_config("final", profile)
    rise = max(1, round(cfg.pct_start * cfg.epochs * steps_per_epoch(cfg)))
    assert rise < grid.MIN_RISE_STEPS  # a preview's climb is short ...
    assert peak_of(cfg) < full.max_lr  # ... so it peaks lower
    assert peak_of(cfg) / rise <= full.max_lr / grid.MIN_RISE_STEPS + 1e-12


def test_the_cpu_budget_is_issue_19s() -> None:
    # 10,000 training images (9,600 trained on, 400 for validation), 4 epochs: 38,400 images
    assert BUDGET["train_subset"] + BUDGET["val_size"] == 10_000
    assert BUDGET["train_subset"] * BUDGET["epochs"] == 38_400
    assert BUDGET["test_subset"] == 2_000 and BUDGET["width"] == 64
    final = grid.make_config("final", "full", overrides=BUDGET)
    # 19 steps of batch 512 an epoch, a climb of 19 steps: the peak is 19 / MIN_RISE_STEPS of 0.4
    assert final.batch_size == 512
    assert peak_of(final) == pytest.approx(0.4 * min(1, 19 / grid.MIN_RISE_STEPS), rel=1e-3)
    experiment, change = RECIPES["plain"]
    plain = grid.make_config(experiment, "full", overrides={**change, **BUDGET})
    assert (plain.lr, plain.schedule, plain.batch_size, plain.augment) == (
        0.1,
        "cosine",
        128,
        "crop_flip",
    )


def test_final_why_names_a_source_for_every_setting() -> None:
    keys = " ".join(grid.FINAL_WHY)
    missing = [k for k in grid.GROUPS["final"]["final"] if f"{k}=" not in keys]
    assert not missing, f"FINAL_WHY says nothing about {missing}"
    for setting, why in grid.FINAL_WHY.items():
        assert why.strip(), setting
        # each names a run of the grid, an issue or a paper (author and year)
        runs = any(name in why for name in grid.EXPERIMENTS)
        paper = any(ch.isdigit() for ch in why)
        assert runs or paper, setting


# ---- the 8x8 cutout -------------------------------------------------------------------------


def zeros_box(img: torch.Tensor) -> tuple[int, int]:
    zero = (img == 0).all(0)
    rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
    h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
    assert zero.sum() == h * w  # one full rectangle
    return h, w


@pytest.mark.parametrize("path", ["fast", "torchvision"])
def test_cutout8_cuts_one_8x8_square_inside_the_image(path: str) -> None:
    assert "crop_flip_cutout8" in PRESETS
    images = torch.full((32, 3, 32, 32), 255, dtype=torch.uint8)
    half = torch.tensor((0.5, 0.5, 0.5))
    if path == "fast":
        out = augment_batch(
            images, "crop_flip_cutout8", half, half, torch.Generator().manual_seed(0)
        )
    else:
        torch.manual_seed(0)
        tf = torchvision_transform("crop_flip_cutout8", half.tolist(), half.tolist())
        out = torch.stack([tf(im) for im in images])
    for img in out:
        assert zeros_box(img) == (8, 8)
    corners = draw("crop_flip_cutout8", 2000, torch.Generator().manual_seed(0)).corner
    assert corners.min() == 0 and corners.max() == 32 - 8


def test_strong_still_cuts_16x16() -> None:
    # committed results used `strong`: adding a preset must not change it
    images = torch.full((16, 3, 32, 32), 255, dtype=torch.uint8)
    half = torch.tensor((0.5, 0.5, 0.5))
    out = augment_batch(images, "strong", half, half, torch.Generator().manual_seed(0))
    assert all(zeros_box(img) == (CUTOUT, CUTOUT) for img in out) and CUTOUT == 16
