"""CIFAR-10 as uint8 tensors: where it comes from, the validation split, normalization statistics.

The whole dataset is 60,000 x 3 x 32 x 32 bytes (184 MB), so it is decoded once, cached as a
`.npz` of uint8 arrays, and kept in memory (on the GPU when there is one; see `loader.py`).

Sources, tried in this order for a data folder D (an argument, else `LAB3_DATA_DIR`, else ./data):
1. an image folder: D/train/<class>/*.{png,jpg} and D/test/<class>/*, or the same under
   D/cifar10-jpeg/ (the offline copy's layout);
2. a `.tar.gz` of such a folder (D itself, or D/cifar10-jpeg.tar.gz), unpacked into the cache;
3. torchvision's pickled release in D/cifar-10-batches-py, downloaded there if allowed.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import LabError

CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NORM_MODES = ("none", "minmax", "standard_sampled", "standard_exact")
_HOW_TO = (
    "pass --data-dir (or set LAB3_DATA_DIR) to a folder holding train/<class>/*.png|jpg and "
    "test/<class>/*, cifar-10-batches-py/, or cifar10-jpeg.tar.gz"
)


@dataclass
class Cifar10:
    """The CIFAR-10 train and test sets as uint8 (N, 3, 32, 32) tensors and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # where the pixels came from, saved with every run
    classes: tuple[str, ...] = CLASSES


def default_data_dir() -> Path:
    return Path(os.environ.get("LAB3_DATA_DIR", "data"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("LAB3_CACHE_DIR", ".cache"))


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Cifar10:
    """Load CIFAR-10 from a local folder, a tarball or torchvision (see the module docstring)."""
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = root.expanduser()
    if not root.exists() and (data_dir is not None or "LAB3_DATA_DIR" in os.environ):
        raise LabError(f"data location {root} does not exist; {_HOW_TO}")

    tarball = _find_tarball(root)
    if tarball is not None:
        root = _unpack(tarball, cache)
    folder = _find_image_folder(root)
    if folder is not None:
        return _load_image_folder(folder, cache)
    return _load_torchvision(root, download)


def _find_tarball(root: Path) -> Path | None:
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        return root
    candidate = root / "cifar10-jpeg.tar.gz"
    has_folder = _find_image_folder(root) is not None
    return candidate if candidate.is_file() and not has_folder else None


def _unpack(tarball: Path, cache: Path) -> Path:
    """Unpack an image-folder tarball into the cache once; return the unpacked folder."""
    key = hashlib.sha1(f"{tarball.resolve()}:{tarball.stat().st_size}".encode()).hexdigest()[:10]
    dest = cache / f"unpacked-{key}"
    done = dest / ".complete"
    if not done.exists():
        dest.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(tarball) as tar:
                try:  # the "data" filter refuses absolute paths and links out of `dest`
                    tar.extractall(dest, filter="data")
                except TypeError:  # Python < 3.10.12 / 3.11.4 has no filter argument
                    tar.extractall(dest)  # noqa: S202
        except (tarfile.TarError, OSError, EOFError) as e:
            raise LabError(f"cannot unpack {tarball}: {e}; re-copy the file or {_HOW_TO}") from e
        done.touch()
    found = _find_image_folder(dest)
    if found is None:
        raise LabError(f"{tarball} holds no train/<class>/ and test/<class>/ folders; {_HOW_TO}")
    return found


def _find_image_folder(root: Path) -> Path | None:
    for candidate in (root, root / "cifar10-jpeg"):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _list_split(folder: Path, split: str) -> tuple[list[str], list[int]]:
    split_dir = folder / split
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if tuple(names) != CLASSES:
        raise LabError(
            f"{split_dir} has class folders {names}; expected the 10 CIFAR-10 classes "
            f"{list(CLASSES)} -- rename or remove the others"
        )
    files, labels = [], []
    for label, name in enumerate(CLASSES):
        paths = sorted(
            str(p) for p in (split_dir / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
        )
        files += paths
        labels += [label] * len(paths)
    if not files:
        raise LabError(f"{split_dir} holds no .png/.jpg images; {_HOW_TO}")
    return files, labels


def _decode(paths: list[str]) -> np.ndarray:
    """Decode a chunk of image files to a uint8 (n, 32, 32, 3) array (runs in a worker)."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise LabError(f"cannot read image {path} ({e}); delete or replace it") from None
        if arr.shape != (32, 32, 3):
            raise LabError(f"image {path} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
        out[i] = arr
    return out


def _decode_all(paths: list[str]) -> np.ndarray:
    chunk = 2000
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    workers = min(len(chunks), os.cpu_count() or 1, 16)
    if workers <= 1:
        return np.concatenate([_decode(c) for c in chunks])
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_decode, chunks)))


def _load_image_folder(folder: Path, cache: Path) -> Cifar10:
    train_files, train_labels = _list_split(folder, "train")
    test_files, test_labels = _list_split(folder, "test")
    sig = f"{folder.resolve()}:{len(train_files)}:{len(test_files)}"
    npz = cache / f"cifar10-{hashlib.sha1(sig.encode()).hexdigest()[:10]}.npz"
    if npz.exists():
        arrays = np.load(npz)
        train_x, test_x = arrays["train_x"], arrays["test_x"]
    else:
        train_x, test_x = _decode_all(train_files), _decode_all(test_files)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = npz.with_suffix(".tmp.npz")
        np.savez(tmp, train_x=train_x, test_x=test_x)
        os.replace(tmp, npz)  # a crash mid-write never leaves a half cache behind
    return Cifar10(
        train_images=_to_nchw(train_x),
        train_labels=torch.tensor(train_labels, dtype=torch.int64),
        test_images=_to_nchw(test_x),
        test_labels=torch.tensor(test_labels, dtype=torch.int64),
        source=f"image folder {folder}",
    )


def _load_torchvision(root: Path, download: bool) -> Cifar10:
    from torchvision.datasets import CIFAR10

    have = (root / "cifar-10-batches-py").is_dir()
    if not have and not download:
        raise LabError(f"no CIFAR-10 found in {root}; {_HOW_TO}")
    try:
        train = CIFAR10(str(root), train=True, download=download and not have)
        test = CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # offline, a proxy, a broken archive: all end the same way
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LabError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({reason}); {_HOW_TO}"
        ) from None
    return Cifar10(
        train_images=_to_nchw(train.data),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_to_nchw(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        source=f"torchvision CIFAR10 in {root}",
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
