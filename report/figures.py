"""The report's figures, drawn from saved results (and a few real images), written as PNG.

Each function saves one figure to `path`, closes it, and returns `path`; the curves and tables
come from `plotting.py` so the report shows what the notebook shows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from engine.augment import augment_batch
from engine.plotting import plot_confusion, plot_history, plot_lr_schedules, plot_overlay, plt
from engine.schedules import lr_curve
from engine.stats import train_size
from train_utils import RunConfig

# What each augmentation row of the example figure adds to the one above it.
PRESET_LABELS = {
    "none": "original",
    "crop_flip": "crop + flip",
    "crop_flip_rotate": "+ rotate",
    "crop_flip_jitter": "+ colour jitter",
    "crop_flip_noise": "+ noise",
    "strong": "+ cutout",
}


def _done(fig, path) -> Path:
    plt.close(fig)
    return Path(path)


def histories(runs: Sequence[Mapping]) -> list[dict]:
    """The histories of a run's seeds that reached at least one epoch (diverged ones included:
    their curve shows how they blew up)."""
    return [r["history"] for r in runs if r.get("history", {}).get("epoch")]


def overlay(results: Mapping[str, Sequence[Mapping]], names: Sequence[str], title: str, path):
    """Train/val curves of `names` (mean +- std band over seeds) on one 2x2 grid."""
    runs = {n: hs for n in names if n in results and (hs := histories(results[n]))}
    return _done(plot_overlay(runs, title=title, path=path), path)


def run_config(config: Mapping) -> RunConfig:
    """A saved config dict as a RunConfig, ignoring fields that this version no longer has."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in config.items() if k in known})


def schedule_curve(config: Mapping) -> tuple[list[float], int]:
    """(lr per optimizer step, steps per epoch) of a saved run, from schedules.lr_curve."""
    cfg = run_config(config)
    steps_per_epoch = math.ceil(train_size(config) / cfg.batch_size)
    sched = cfg.make_schedule(steps_per_epoch)
    return lr_curve(cfg.epochs * steps_per_epoch, sched), steps_per_epoch


def lr_schedules(results: Mapping[str, Sequence[Mapping]], names: Sequence[str], path):
    """The learning rate of each run in `names` against epoch, as the runs were configured.

    plot_lr_schedules takes one steps-per-epoch, so runs with another batch size are left out
    (they are named in the returned list)."""
    curves, spe, skipped = {}, None, []
    for name in names:
        if name not in results:
            continue
        lrs, s = schedule_curve(results[name][0]["config"])
        if spe is None or s == spe:
            curves[name], spe = lrs, s
        else:
            skipped.append(name)
    return _done(plot_lr_schedules(curves, spe or 1, path=path), path), skipped


def final_history(name: str, runs: Sequence[Mapping], path):
    """The lab's four curves of one run, or the mean +- std of several seeds."""
    hs = histories(runs)
    if len(hs) == 1:
        fig = plot_history(hs[0], title=f"{name} (seed {runs[0]['seed']})", path=path)
    else:
        fig = plot_overlay({name: hs}, title=f"{name}, {len(hs)} seeds", path=path)
    return _done(fig, path)


def summed_confusion(runs: Sequence[Mapping]) -> np.ndarray | None:
    """The test confusion matrices of the finished seeds, summed (rows: true class)."""
    mats = [np.asarray(r["confusion"]) for r in runs if r.get("confusion") is not None]
    return np.sum(mats, axis=0) if mats else None


def confusion(conf: np.ndarray, classes: Sequence[str], title: str, path):
    return _done(plot_confusion(conf, classes, title=title, path=path), path)


def augmentation_examples(images: torch.Tensor, labels: Sequence[int], classes: Sequence[str],
                          rows: Sequence[tuple[str, str, Sequence[float], Sequence[float]]], path,
                          seed: int = 0) -> tuple[Path, list[str]]:  # fmt: skip
    """What the runs saw: uint8 (N, 3, 32, 32) `images`, one column each (titled with its class),
    one row per (label, preset, mean, std) of `rows`, each drawn with that run's own
    normalization and mapped back to [0, 1] for display.

    Every row draws from a generator with the same seed, so the crop and flip are the same in
    every row and each row shows what its preset adds. Cutout sets its square to 0 after
    normalization: black for a run without normalization (mean 0, std 1), the mean colour for a
    standardized one; the figure shows whichever the run had. Returns the path and the presets
    that raised (their row says so), so one broken preset does not hide the others.
    """
    n = len(images)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.0 * n + 1.4, 1.1 * len(rows) + 0.3),
                             squeeze=False)  # fmt: skip
    failed = []
    for r, (row, (label, preset, mean, std)) in enumerate(zip(axes, rows)):
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        g = torch.Generator().manual_seed(seed)
        try:
            x = augment_batch(images, preset, m, s, g)
            x = (x * s.view(1, 3, 1, 1) + m.view(1, 3, 1, 1)).clamp(0, 1)
        except Exception as e:  # shown in the figure and returned: the report says it failed
            failed.append(f"{preset}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            x = torch.ones_like(images, dtype=torch.float32)
            row[n // 2].text(0.5, 0.5, f"{preset} failed", ha="center", va="center", fontsize=8,
                             color="red", transform=row[n // 2].transAxes)  # fmt: skip
        for c, (ax, img) in enumerate(zip(row, x)):
            ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(classes[int(labels[c])], fontsize=8)
        row[0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return _done(fig, path), failed


def lr_range(result: Mapping, path) -> Path:
    from engine.lr_finder import plot_lr_range

    return _done(plot_lr_range(dict(result), path), path)
