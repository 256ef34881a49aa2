"""The lab's figures from histories (dicts of per-epoch lists): each returns the Figure (shown
inline by a notebook) and saves a PNG when given a path."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

CURVES = ("train_loss", "val_loss", "train_acc", "val_acc")  # labels: "Train loss", ...
# Losses spanning more than this ratio are drawn on a log axis: one exploding run (a validation
# loss of 40,000 beside healthy ones near 1) would otherwise flatten every other curve (#19).
LOG_LOSS_RATIO = 20.0


def _finish(fig, title: str, path):
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _xy(history: Mapping, key: str):
    pairs = [(e, v) for e, v in zip(history["epoch"], history[key]) if v is not None]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _loss_axis(ax, values) -> None:
    ys = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if ys and max(ys) / min(ys) > LOG_LOSS_RATIO:
        ax.set_yscale("log")
        ax.set_ylabel(f"{ax.get_ylabel() or 'loss'} (log scale)")


def plot_history(history: Mapping, title: str = "", path=None):
    """The lab's four curves for one run: losses on the left, accuracies on the right."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in CURVES:
        ax = ax_loss if key.endswith("loss") else ax_acc
        ax.plot(*_xy(history, key), marker=".", label=key.replace("_", " ").capitalize())
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set(xlabel="epoch", ylabel=name)
        ax.grid(alpha=0.3)
        ax.legend()
    _loss_axis(ax_loss, [v for k in ("train_loss", "val_loss") for v in _xy(history, k)[1]])
    return _finish(fig, title, path)


def _mean_band(histories: Sequence[Mapping], key: str):
    """Mean and std over seeds of one curve, on the epochs every seed reached."""
    curves = [_xy(h, key) for h in histories]
    n = min(len(xs) for xs, _ in curves)
    if n == 0:
        return [], np.array([]), np.array([])
    ys = np.array([ys[:n] for _, ys in curves], dtype=float)
    return curves[0][0][:n], ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(n)


def plot_overlay(runs: Mapping, title: str = "", path=None, diverged: Collection[str] = ()):
    """The four curves of several runs on a 2x2 grid. `runs` maps a label to a history or to a
    list of them (seeds: mean with a +-1 std band). The runs in `diverged` are dashed and do not
    set the loss axes: a validation loss of 1e4 would flatten the others (#31)."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for key, ax in zip(CURVES, axes.flat):
        healthy = []  # the curves that set the loss axis
        for name, hs in runs.items():
            hs = [hs] if isinstance(hs, Mapping) else list(hs)
            x, mean, std = _mean_band(hs, key)
            off = name in diverged
            healthy += [] if off else [v for v in mean if np.isfinite(v)]
            shown = f"{name} (n={len(hs)})" if len(hs) > 1 else name
            shown += ", diverged" if off else ""
            (line,) = ax.plot(x, mean, linestyle="--" if off else "-", label=shown)
            if len(hs) > 1:
                ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_title(key.replace("_", " ").capitalize())
        ax.grid(alpha=0.3)
        if key.endswith("loss"):
            _loss_axis(ax, healthy)
            if diverged and healthy:
                low, high = min(healthy), max(healthy)
                pad = 0.1 * (high - low) if ax.get_yscale() == "linear" else 0.0
                ax.set_ylim(low - pad if pad else low / 1.2, high + pad if pad else high * 1.2)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8)
    return _finish(fig, title, path)


def plot_lr_schedules(curves: Mapping[str, Sequence[float]], steps_per_epoch: int, path=None):
    """Learning rate against epoch (fractional) for each named schedule."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, lrs in curves.items():
        ax.plot(np.arange(len(lrs)) / steps_per_epoch, lrs, label=name)
    ax.set(xlabel="epoch", ylabel="learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, "", path)


def show_images(images, labels, classes: Sequence[str], ncols: int = 8, title: str = "", path=None):
    """A grid of uint8 (N, 3, H, W) or float [0,1] images with their class names."""
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, lab in zip(axes.flat, images, labels):
        arr = img.detach().cpu().float()
        arr = arr / 255 if arr.max() > 1.5 else arr
        ax.imshow(arr.clamp(0, 1).permute(1, 2, 0).numpy())
        ax.set_title(classes[int(lab)], fontsize=8)
    return _finish(fig, title, path)


def plot_confusion(confusion, classes: Sequence[str], title: str = "", path=None):
    """Row-normalized confusion matrix (rows: true class) with per-class accuracy on the axis."""
    conf = np.asarray(confusion, dtype=float)
    rates = conf / conf.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [f"{c} ({rates[i, i]:.1%})" for i, c in enumerate(classes)])
    for (i, j), rate in np.ndenumerate(rates):
        if rate >= 0.01:
            color = "white" if rate > 0.5 else "black"
            ax.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax.set(xlabel="predicted", ylabel="true (per-class accuracy)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _finish(fig, title, path)
