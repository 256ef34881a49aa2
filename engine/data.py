"""CIFAR-10 as uint8 tensors: where it comes from, the validation split, normalization statistics.

The whole dataset is 60,000 x 3 x 32 x 32 bytes (184 MB), so it is decoded once, cached as a
`.npz` of uint8 arrays, and kept in memory (on the GPU when there is one; see `loader.py`).
Finding, decoding and caching the copies is `copies.py`'s; this module holds the entry points.

Sources, for a data location D (an argument, else `LAB3_DATA_DIR`, else ./data when it holds
CIFAR-10, else the lossless copy beside the checkout, ../shared/data/cifar10-png.tar.gz):
1. an image copy, PNG or JPEG: `train/<class>/*` and `test/<class>/*` in D, in the one folder D
   holds, or in a tarball (D itself, or the tarball in D; a lossless one is preferred);
2. torchvision's release in D/cifar-10-batches-py, downloaded there if allowed.

Order: where every file name of a split is a number (the PNG copy names each image by its index
in the official batches), images come out in that numeric order, which is the official order,
so the seeded validation split is the same as with torchvision's batches. Otherwise they come
out class by class, in sorted file-name order.

`Cifar10.source` names the data by content, never by a machine path (it is saved with every
run): the tarball's sha256, the decoded pixels' sha256 for a folder, or torchvision's official
batches (checked against their published md5 by torchvision).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine import copies
from engine.copies import (  # noqa: F401  (CACHE_VERSION, IMAGE_SUFFIXES, SPLITS re-exported)
    CACHE_VERSION,
    CLASSES,
    HOW_TO,
    IMAGE_SUFFIXES,
    SPLITS,
    TARBALL_SUFFIXES,
)
from engine.errors import LabError

NORM_MODES = ("none", "minmax", "standard_sampled", "standard_exact")
REPO = Path(__file__).resolve().parents[1]
# The lossless copy as this project's machines hold it: beside the checkout (see ../shared/data).
BESIDE_CHECKOUT = REPO.parent / "shared" / "data" / "cifar10-png.tar.gz"


@dataclass
class Cifar10:
    """The CIFAR-10 train and test sets as uint8 (N, 3, 32, 32) tensors and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # what the pixels are, by content (no machine path); saved with every run
    classes: tuple[str, ...] = CLASSES


def default_data_dir() -> Path:
    """$LAB3_DATA_DIR; else ./data when it holds CIFAR-10 or no lossless copy sits beside the
    checkout (torchvision downloads into ./data); else that lossless copy."""
    if os.environ.get("LAB3_DATA_DIR"):
        return Path(os.environ["LAB3_DATA_DIR"])
    local = Path("data")
    if not BESIDE_CHECKOUT.is_file() or copies.holds_cifar(local):
        return local
    return BESIDE_CHECKOUT


def default_cache_dir() -> Path:
    return Path(os.environ.get("LAB3_CACHE_DIR", ".cache"))


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Cifar10:
    """Load CIFAR-10 from an image copy or torchvision's release (see the module docstring)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not root.exists() and (data_dir is not None or os.environ.get("LAB3_DATA_DIR")):
        raise LabError(f"data location {root} does not exist; {HOW_TO}")
    if root.is_file():
        if not root.name.endswith(TARBALL_SUFFIXES):
            raise LabError(f"{root} is neither a folder nor a .tar.gz of CIFAR-10 images; {HOW_TO}")
        return _as_cifar10(copies.read_tarball(root, cache))
    folder = copies.find_image_folder(root)
    if folder is not None:
        return _as_cifar10(copies.read_folder(folder, cache))
    if (root / "cifar-10-batches-py").is_dir():
        return _as_cifar10(copies.read_torchvision(root, download=False))
    tarball = copies.find_tarball(root)
    if tarball is not None:
        return _as_cifar10(copies.read_tarball(tarball, cache))
    return _as_cifar10(copies.read_torchvision(root, download))


def _as_cifar10(arrays: dict) -> Cifar10:
    """The Cifar10 of a reader's arrays (see copies.py)."""
    return Cifar10(
        train_images=_to_nchw(arrays["train_x"]),
        train_labels=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_images=_to_nchw(arrays["test_x"]),
        test_labels=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        source=str(arrays["source"]),
    )


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def split_train_val(n: int, val_size: int = 5000, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded, disjoint (train_idx, val_idx) over range(n): validation comes out of train."""
    if not 0 < val_size < n:
        raise LabError(
            f"validation split of {val_size} does not fit in {n} training images; use 0 < val_size < {n}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def get_mean_std(dataset, ratio: float = 0.3, seed: int = 0) -> tuple[tuple[float, ...], ...]:
    """The lab's sampled statistics: per-channel mean and std of a random `ratio` of `dataset`.

    `dataset` is a uint8 (N, 3, H, W) tensor or a torch Dataset of (image tensor in [0,1], label)
    pairs. Values are on the [0, 1] scale, ready for `Normalize(mean, std)`.
    """
    if not 0 < ratio <= 1:
        raise LabError(f"ratio must be in (0, 1], got {ratio}")
    n = len(dataset)
    k = max(1, int(n * ratio))
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    if isinstance(dataset, torch.Tensor):
        sample = dataset[idx].float() / (255.0 if dataset.dtype == torch.uint8 else 1.0)
    else:
        sample = torch.stack([torch.as_tensor(dataset[int(i)][0]).float() for i in idx])
    return _channel_stats(sample)


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], ...]:
    x = x.double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def normalization_stats(mode: str, train_images: torch.Tensor, seed: int = 0):
    """(mean, std) on the [0,1] scale so that (x - mean) / std implements `mode`.

    none: x stays in [0, 1]. minmax: each channel's min..max over the training images maps to
    [-1, 1]. standard_sampled: the lab's `get_mean_std` on 30% of the training images.
    standard_exact: the statistics of every training image.
    """
    if mode == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if mode == "minmax":
        lo = train_images.amin(dim=(0, 2, 3)).double() / 255
        hi = train_images.amax(dim=(0, 2, 3)).double() / 255
        mean, half = (lo + hi) / 2, (hi - lo).clamp_min(1e-6) / 2
        return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in half.tolist())
    if mode == "standard_sampled":
        return get_mean_std(train_images, ratio=0.3, seed=seed)
    if mode == "standard_exact":
        # Chunked so the float copy of 45,000 images never exists at once.
        total = torch.zeros(3, dtype=torch.float64)
        total_sq = torch.zeros(3, dtype=torch.float64)
        for chunk in train_images.split(5000):
            c = chunk.double() / 255
            total += c.sum(dim=(0, 2, 3))
            total_sq += (c * c).sum(dim=(0, 2, 3))
        count = train_images.shape[0] * train_images.shape[2] * train_images.shape[3]
        mean = total / count
        std = (total_sq / count - mean**2).sqrt()
        return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
    raise LabError(f"unknown normalization {mode!r}; choose one of {', '.join(NORM_MODES)}")
