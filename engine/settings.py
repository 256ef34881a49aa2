"""A run's settings checked against their types and bounds, before any data is loaded: each bad
value is one LabError naming it and what it may be (train_utils.RunConfig.validate calls this)."""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping

from engine.augment import check_preset
from engine.data import NORM_MODES
from engine.errors import LabError

TRAIN_IMAGES = 50_000  # CIFAR-10's training images; validation is split from them
TEST_IMAGES = 10_000  # and its test images


def train_size(config: Mapping) -> int:
    """Training images of a run: CIFAR-10's 50,000 less the validation split, or the subset."""
    n = TRAIN_IMAGES - config["val_size"]
    subset = config.get("train_subset")
    return min(n, subset) if subset is not None else n


# A run's name becomes a file name (results/<profile>/<name>__seed<k>.json, its checkpoint
# folder): no path separators, no leading dot, so it can never point outside those folders.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,-]{0,199}")


def _type_name(kind) -> str:
    return " or ".join(
        "None" if k is type(None) else k.__name__ for k in (typing.get_args(kind) or (kind,))
    )


def check_settings(cfg) -> None:
    """Raise a LabError for the first setting of the RunConfig `cfg` of the wrong type or out
    of its range."""
    if not isinstance(cfg.name, str) or not _PLAIN_NAME.fullmatch(cfg.name):
        raise LabError(
            f"run name {cfg.name!r} must be a plain file name (letters, digits and "
            "._+=,- ; no / and not starting with a dot)"
        )
    for name, kind in typing.get_type_hints(type(cfg)).items():
        value = getattr(cfg, name)
        kinds = typing.get_args(kind) or (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = math.isfinite(value)
        if isinstance(value, float):
            ok = ok and math.isfinite(value)
        if not ok:
            raise LabError(f"{name} must be of type {_type_name(kind)}, got {value!r}")
    for name in (
        "epochs",
        "batch_size",
        "lr",
        "width",
        "val_size",
        "step_epochs",
        "cycle_epochs",
        "gamma",
    ):
        if getattr(cfg, name) <= 0:
            raise LabError(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ("train_subset", "test_subset", "max_lr", "lr_batch"):
        if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
            raise LabError(f"{name} must be positive (or None for all), got {getattr(cfg, name)}")
    for name in (
        "weight_decay",
        "min_lr",
        "warmup_epochs",
        "split_seed",
        "seed",
        "min_rise_steps",
        "tta_shift",
    ):
        if getattr(cfg, name) < 0:
            raise LabError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.val_size >= TRAIN_IMAGES:  # before any data is loaded
        raise LabError(
            f"val_size {cfg.val_size} does not fit in the {TRAIN_IMAGES} training "
            "images with any left to train on; choose a smaller val_size"
        )
    if cfg.train_subset is not None and cfg.train_subset > TRAIN_IMAGES - cfg.val_size:
        raise LabError(
            f"train_subset must be at most {TRAIN_IMAGES - cfg.val_size} (the training "
            f"images less val_size), got {cfg.train_subset}"
        )
    for name in ("momentum", "label_smoothing"):
        if not 0 <= getattr(cfg, name) < 1:
            raise LabError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not 0 < cfg.pct_start < 1:
        raise LabError(f"pct_start must be in (0, 1), got {cfg.pct_start}")
    if cfg.optimizer not in ("sgd", "adamw"):
        raise LabError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")
    if cfg.norm not in NORM_MODES:
        raise LabError(f"unknown normalization {cfg.norm!r}; choose one of {', '.join(NORM_MODES)}")
    check_preset(cfg.augment)
