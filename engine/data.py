"""CIFAR-10 as uint8 tensors: where it comes from, the validation split, normalization statistics.

A data location D (an argument, else `LAB3_DATA_DIR`, else ./data when it holds CIFAR-10, else
the lossless copy beside the checkout, ../shared/data/cifar10-png.tar.gz) holds an image copy
(`train/<class>/*`, `test/<class>/*`, PNG or JPEG: D itself, a folder in D, or a tarball, read
without unpacking) or torchvision's release in D/cifar-10-batches-py, downloaded if allowed.
Decoding the PNG copy takes ~17 s on two cores; the tensors cached in .cache/ load in ~0.15 s.
Numbered files (the PNG copy's names are indices in the official batches) come out in that
order, so the seeded validation split is torchvision's; others class by class, by name.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from engine.checkpoint import atomic_write
from engine.errors import LabError

# torchvision's order, also the names' sorted order
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NORM_MODES = ("none", "minmax", "standard_sampled", "standard_exact")
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
HOW_TO = (
    "put cifar10-png.tar.gz (or torchvision's cifar-10-batches-py/) in ./data, or point --data-dir"
    " or LAB3_DATA_DIR at a CIFAR-10 image folder, its .tar.gz, or a folder holding either"
)
# The lossless copy as this project's machines hold it: beside the checkout (see ../shared/data).
BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-png.tar.gz"


@dataclass
class Cifar10:
    """The CIFAR-10 train and test sets as uint8 (N, 3, 32, 32) tensors and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str  # what the pixels are, by content (no machine path); saved with every run
    classes: tuple[str, ...] = CLASSES


def load_cifar10(data_dir=None, cache_dir=None, download: bool = True) -> Cifar10:
    """CIFAR-10 from an image copy or torchvision's release (see the module docstring)."""
    given = data_dir if data_dir is not None else os.environ.get("LAB3_DATA_DIR")
    root = Path(given or "data").expanduser()
    if given and not root.exists():
        raise LabError(f"data location {root} does not exist; {HOW_TO}")
    batches = root / "cifar-10-batches-py"
    if not given and BESIDE_CHECKOUT.is_file() and not batches.is_dir() and not _copy_in(root):
        root = BESIDE_CHECKOUT
    if root.is_file() and not root.name.endswith(TARBALL_SUFFIXES):
        raise LabError(f"{root} is neither a folder nor a .tar.gz of CIFAR-10 images; {HOW_TO}")
    copy = root if root.is_file() else _copy_in(root)
    if copy is None or (copy.is_file() and batches.is_dir()):  # a folder copy comes first
        return _read_torchvision(root, download)
    return _cached(copy.resolve(), Path(cache_dir or os.environ.get("LAB3_CACHE_DIR", ".cache")))


def _copy_in(root: Path) -> Path | None:
    """root's image copy: root itself, else a folder or tarball in it (folders, then PNG, first)."""
    if all((root / s).is_dir() for s in SPLITS):
        return root
    found = [
        p
        for p in (root.iterdir() if root.is_dir() else ())
        if all((p / s).is_dir() for s in SPLITS)
        or (p.name.endswith(TARBALL_SUFFIXES) and p.name != "cifar-10-python.tar.gz")
    ]
    found.sort(key=lambda p: (p.is_file(), "png" not in p.name.lower(), p.name))
    return found[0] if found else None


def _cached(copy: Path, cache: Path) -> Cifar10:
    """The copy's Cifar10, cached under a key of its files' paths, sizes and modification times."""
    paths = [copy] if copy.is_file() else sorted(p for s in SPLITS for p in copy.glob(f"{s}/*/*"))
    key = hashlib.sha256()
    for p in paths:
        st = p.stat()
        key.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    path = cache / f"cifar10-{key.hexdigest()[:16]}.pt"
    if path.exists():
        try:
            return Cifar10(**torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001  (damaged by a copy or a disk: decode again)
            print(f"note: image cache {path.name} is unreadable; rebuilding it", file=sys.stderr)
    if copy.is_file():
        data = _read_tarball(copy)
    else:
        data = _decode([(*p.parts[-3:], p.read_bytes()) for p in paths], copy.name)
    atomic_write(path, lambda f: torch.save(vars(data), f))
    return data


def _read_tarball(tarball: Path) -> Cifar10:
    """Every image of the tarball, read in one pass and never unpacked to disk."""
    try:
        raw = tarball.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r|*") as tar:
            parts = ((m, PurePosixPath(m.name).parts[-3:]) for m in tar if m.isfile())
            files = [(*p, tar.extractfile(m).read()) for m, p in parts if len(p) == 3]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise LabError(f"cannot read {tarball.name} ({e}); re-copy the file or {HOW_TO}") from e
    return _decode(files, tarball.name, digest=hashlib.sha256(raw).hexdigest()[:8])


def _decode(files: list[tuple[str, str, str, bytes]], where: str, digest: str = "") -> Cifar10:
    """(split, class, file name, bytes) of a copy's images as a Cifar10 named by the tarball's
    `digest`, else its pixels (saved with every run: these names must not change)."""
    from PIL import Image

    ok = (f for f in files if f[0] in SPLITS and f[2][0] != ".")
    files = [f for f in ok if f[2].lower().endswith(IMAGE_SUFFIXES)]
    unknown = sorted({f[1] for f in files} - set(CLASSES))
    if unknown:  # labels follow CLASSES, not the folders; a small copy may lack some
        raise LabError(f"{where} has folders {unknown}; expected the 10 CIFAR-10 classes {CLASSES}")
    out, pixels = {}, hashlib.sha256()
    for split in SPLITS:
        items = [f for f in files if f[0] == split]
        if not items:
            raise LabError(f"{where} holds no {split}/<class>/ images; {HOW_TO}")
        stems = [PurePosixPath(f[2]).stem for f in items]
        if all(s.isdecimal() for s in stems) and len({int(s) for s in stems}) == len(stems):
            items = [f for _, f in sorted(zip(map(int, stems), items), key=lambda t: t[0])]
        else:
            items.sort(key=lambda f: (CLASSES.index(f[1]), f[2]))
        x = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
        for i, (_, cls, file_name, payload) in enumerate(items):
            try:
                with Image.open(io.BytesIO(payload)) as im:
                    x[i] = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
            except (OSError, ValueError) as e:  # not an image, or not 32x32
                where = f"{where}: {split}/{cls}/{file_name}"
                raise LabError(f"cannot read image {where} ({e}); delete or replace it") from None
        y = np.array([CLASSES.index(f[1]) for f in items], dtype=np.int64)
        pixels.update(x.tobytes())
        pixels.update(y.tobytes())
        out[f"{split}_images"] = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_labels"] = torch.from_numpy(y)
    jpegs = [f[3] for f in files if not f[2].lower().endswith(".png")]
    quality = _jpeg_quality(jpegs[0]) if jpegs else None
    keeps = f"quality {quality}, lossy" if quality else "lossy" if jpegs else "lossless"
    pix = f"pixels sha256 {pixels.hexdigest()[:8]}"
    name = f"copy ({keeps}), sha256 {digest}" if digest else f"folder ({keeps}), {pix}"
    return Cifar10(**out, source=f"CIFAR-10 {'JPEG' if jpegs else 'PNG'} {name}…")


def _jpeg_quality(data: bytes) -> int | None:
    """The IJG quality (1-100) whose tables the JPEG has: Pillow (libjpeg) encodes a probe at each."""
    from PIL import Image

    tables = Image.open(io.BytesIO(data)).quantization
    for quality in range(1, 101):
        Image.new("RGB", (8, 8)).save(buf := io.BytesIO(), "JPEG", quality=quality)
        if Image.open(buf).quantization == tables:
            return quality
    return None


def _read_torchvision(root: Path, download: bool) -> Cifar10:
    """The official batches in root/cifar-10-batches-py (already pixels: not cached)."""
    from engine.runtime import torchvision

    if not download and not (root / "cifar-10-batches-py").is_dir():
        raise LabError(f"no CIFAR-10 found in {root}; {HOW_TO}")
    CIFAR10 = torchvision().datasets.CIFAR10  # one line where torch and torchvision mismatch
    try:  # torchvision checks every batch against its published md5
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # noqa: BLE001  (offline, a proxy, a broken archive: all end the same)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LabError(f"cannot read or download CIFAR-10 in {root} ({reason}); {HOW_TO}") from None
    out = {}
    for split, d in (("train", train), ("test", test)):
        out[f"{split}_images"] = torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous()
        out[f"{split}_labels"] = torch.tensor(d.targets, dtype=torch.int64)
    return Cifar10(**out, source="torchvision CIFAR-10 (official batches)")


def split_train_val(n: int, val_size: int = 5000, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded, disjoint (train_idx, val_idx) over range(n): validation comes out of train."""
    if not 0 < val_size < n:
        raise LabError(
            f"val_size {val_size} does not fit in {n} training images; use 0 < val_size < {n}"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def get_mean_std(dataset, ratio: float = 0.3, seed: int = 0) -> tuple[tuple[float, ...], ...]:
    """The lab's statistics: per-channel mean and std, on the [0, 1] scale, of a random `ratio`
    of `dataset`, a uint8 (N, 3, H, W) tensor or a Dataset of (image in [0, 1], label) pairs."""
    if not 0 < ratio <= 1:
        raise LabError(f"ratio must be in (0, 1], got {ratio}")
    n = len(dataset)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: max(1, int(n * ratio))]
    if isinstance(dataset, torch.Tensor):
        sample = dataset[idx].float() / (255.0 if dataset.dtype == torch.uint8 else 1.0)
    else:
        sample = torch.stack([torch.as_tensor(dataset[int(i)][0]).float() for i in idx])
    sample = sample.double()
    return _rounded(sample.mean(dim=(0, 2, 3)), sample.std(dim=(0, 2, 3), unbiased=False))


def _rounded(mean: torch.Tensor, std: torch.Tensor) -> tuple[tuple[float, ...], ...]:
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())


def normalization_stats(mode: str, train_images: torch.Tensor, seed: int = 0):
    """(mean, std) on the [0,1] scale so that (x - mean) / std implements `mode`: none keeps
    [0, 1]; minmax maps each channel's min..max to [-1, 1]; standard_sampled is the lab's
    `get_mean_std` on 30% of the training images, standard_exact the statistics of all."""
    if mode == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if mode == "minmax":
        lo = train_images.amin(dim=(0, 2, 3)).double() / 255
        hi = train_images.amax(dim=(0, 2, 3)).double() / 255
        return _rounded((lo + hi) / 2, (hi - lo).clamp_min(1e-6) / 2)
    if mode == "standard_sampled":
        return get_mean_std(train_images, ratio=0.3, seed=seed)
    if mode == "standard_exact":
        sums = torch.zeros(2, 3, dtype=torch.float64)
        for chunk in train_images.split(5000):  # never a float copy of all at once
            c = chunk.double() / 255
            sums += torch.stack([c.sum(dim=(0, 2, 3)), (c * c).sum(dim=(0, 2, 3))])
        mean, mean_sq = sums / (train_images.numel() // 3)
        return _rounded(mean, (mean_sq - mean**2).sqrt())
    raise LabError(f"unknown normalization {mode!r}; choose one of {', '.join(NORM_MODES)}")
