"""The two final recipes: `final`, the recipe of the lab's >90% run, exactly as its results file
records it; `final_airbench`, airbench's ResNet-18 settings with a peak lr fitted to the run's
batch and length, so that a CPU preview of a few dozen steps is not wrecked by a peak meant for
thousands. Pure functions and configurations: no training, milliseconds."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from engine.augment import CUTOUT, PRESETS, augment_batch, draw, torchvision_transform
from engine.schedules import fitted_batch, lr_curve, scaled_peak
from lab import grid

ROOT = Path(__file__).resolve().parent.parent


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


def test_final_airbench_is_the_anchors_recipe_on_the_full_profile() -> None:
    # airbench's ResNet-18 baseline (KellerJordan/cifar10-zoo, train_resnet18_94.py)
    cfg = grid.make_config("final_airbench", "full")
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.max_lr, cfg.pct_start) == (
        500,
        26,
        0.04,
        0.2,
        0.2,
    )
    assert cfg.nesterov and cfg.momentum == 0.9 and cfg.weight_decay == 5e-4
    assert cfg.augment == "translate_flip_cutout12" and cfg.label_smoothing == 0
    assert cfg.norm == "standard_exact" and cfg.schedule == "triangle"
    assert cfg.tta and cfg.tta_shift == 1
    n = steps_per_epoch(cfg)
    curve = lr_curve(cfg.epochs * n, cfg.make_schedule(n))
    assert n == 90 and max(curve) == pytest.approx(0.2)  # 468-step rise: the anchor's peak
    assert curve[0] == pytest.approx(0.04) and curve.index(max(curve)) == round(0.2 * 26 * 90)
    assert curve[-1] == pytest.approx(0.2 / (26 * 90 - 468))  # one step short of 0


def test_fitted_batch_keeps_the_recipes_steps_per_epoch() -> None:
    assert fitted_batch(512, 45_000, 88) == 512  # Myrtle's own run: 88 steps an epoch
    assert fitted_batch(512, 9_600, 88) == 64  # 150 steps an epoch (128 would make 75)
    assert fitted_batch(512, 5_000, 88) == 32  # 157
    assert fitted_batch(512, 400, 88) == 32  # never below the floor
    assert fitted_batch(512, 400, 0) == 512  # off


def test_final_on_a_subset_trains_smaller_batches_at_a_scaled_lr() -> None:
    quick = grid.make_config("final_airbench", "quick")  # 2,000 images: 500 -> 250 -> 125 -> 62
    assert quick.batch_size == 62 and steps_per_epoch(quick) == 33  # 31 is below the floor
    # linear scaling, and a 26-step rise (20% of 4 x 33 steps) under the 40-step cap peaks lower
    rise = round(0.2 * quick.epochs * 33)
    assert peak_of(quick) == pytest.approx(0.2 * 62 / 500 * rise / grid.MIN_RISE_STEPS)
    # what the user sets is what runs
    assert (
        grid.make_config("final_airbench", "quick", overrides={"batch_size": 512}).batch_size == 512
    )


def test_a_short_climb_peaks_lower() -> None:
    # smoke: 400 images, batch 62, 7 steps an epoch, a 4-step climb
    cfg = grid.make_config("final_airbench", "smoke")
    rise = max(1, round(cfg.pct_start * cfg.epochs * steps_per_epoch(cfg)))
    assert cfg.batch_size == 62 and rise < grid.MIN_RISE_STEPS
    assert peak_of(cfg) == pytest.approx(0.2 * 62 / 500 * rise / grid.MIN_RISE_STEPS, rel=1e-3)


@pytest.mark.parametrize("name, why", [("final", "FINAL_WHY"), ("final_airbench", "AIRBENCH_WHY")])
def test_each_final_recipe_names_a_source_for_every_setting(name: str, why: str) -> None:
    table = getattr(grid, why)
    keys = " ".join(table)
    missing = [k for k in grid.GROUPS["final"][name] if f"{k}=" not in keys]
    assert not missing, f"{why} says nothing about {missing}"
    for setting, text in table.items():
        # each names a paper (author and year) or a measured figure
        assert any(ch.isdigit() for ch in text), setting


def test_final_replays_the_committed_run_that_reached_90_percent() -> None:
    # the lab's >90% run was made by the grid's `final`: the same configuration, field by field
    # (fields added since default to what the run did)
    saved = json.loads((ROOT / "results" / "full" / "final__seed0.json").read_text())
    assert saved["test_acc"] > 0.90
    now = dataclasses.asdict(grid.make_config("final", "full"))
    assert {k: now[k] for k in saved["config"]} == saved["config"]
    defaults = dataclasses.asdict(grid.BASELINE)
    assert all(now[k] == defaults[k] for k in set(now) - set(saved["config"]))


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


def test_translate_pads_by_reflection_on_both_paths() -> None:
    from engine.augment import PAD, pad_images

    img = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).remainder(251).to(torch.uint8)
    img = img.view(2, 3, 32, 32)
    want = torch.nn.functional.pad(img.float(), (PAD,) * 4, mode="reflect").to(torch.uint8)
    assert torch.equal(pad_images(img, reflect=True), want)
    assert torch.equal(pad_images(img), torch.nn.functional.pad(img, (PAD,) * 4))
    # a white image keeps no zero border under reflection: only the 12x12 cutout is zero
    images = torch.full((16, 3, 32, 32), 255, dtype=torch.uint8)
    half = torch.tensor((0.5, 0.5, 0.5))
    g = torch.Generator().manual_seed(0)
    out = augment_batch(images, "translate_flip_cutout12", half, half, g)
    assert all(zeros_box(im) == (12, 12) for im in out)
    torch.manual_seed(0)
    tf = torchvision_transform("translate_flip_cutout12", half.tolist(), half.tolist())
    assert all(zeros_box(tf(im)) == (12, 12) for im in images)


def test_run_final_trains_the_recipe_not_its_whole_group() -> None:
    # `experiments.py run final` retrains the >90% run; the second candidate is named apart
    assert list(grid.GROUPS["final"]) == ["final", "final_airbench"]
    assert grid.expand(["final"]) == ["final"]
    assert grid.expand(["lr"]) == list(grid.GROUPS["lr"])
    assert grid.expand(["final_airbench", "final"]) == ["final_airbench", "final"]
