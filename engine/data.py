"""CIFAR-10 as uint8 tensors: where it comes from, the validation split, normalization statistics.

The whole dataset is 60,000 x 3 x 32 x 32 bytes (184 MB), so it is decoded once, cached as a
`.npz` of uint8 arrays, and kept in memory (on the GPU when there is one; see `loader.py`).

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

import hashlib
import io
import os
import sys
import tarfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
NORM_MODES = ("none", "minmax", "standard_sampled", "standard_exact")
REPO = Path(__file__).resolve().parents[1]
# The lossless copy as this project's machines hold it: beside the checkout (see ../shared/data).
BESIDE_CHECKOUT = REPO.parent / "shared" / "data" / "cifar10-png.tar.gz"
CACHE_VERSION = 2  # part of every cache key: bump when the cached arrays change meaning
_HOW_TO = (
    "put cifar10-png.tar.gz (or torchvision's cifar-10-batches-py/) in ./data, or pass "
    "--data-dir / set LAB3_DATA_DIR to a CIFAR-10 image folder, its .tar.gz, or a folder "
    "holding cifar-10-batches-py/"
)


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
    if not BESIDE_CHECKOUT.is_file() or _holds_cifar(local):
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
        raise LabError(f"data location {root} does not exist; {_HOW_TO}")
    if root.is_file():
        if not root.name.endswith(TARBALL_SUFFIXES):
            raise LabError(
                f"{root} is neither a folder nor a .tar.gz of CIFAR-10 images; {_HOW_TO}"
            )
        return _load_tarball(root, cache)
    folder = _find_image_folder(root)
    if folder is not None:
        return _load_folder(folder, cache)
    if (root / "cifar-10-batches-py").is_dir():
        return _load_torchvision(root, download=False)
    tarball = _find_tarball(root)
    if tarball is not None:
        return _load_tarball(tarball, cache)
    return _load_torchvision(root, download)


def _holds_cifar(root: Path) -> bool:
    if not root.is_dir():
        return False
    found = (root / "cifar-10-batches-py").is_dir() or _find_tarball(root) is not None
    return found or _find_image_folder(root) is not None


def _find_image_folder(root: Path) -> Path | None:
    """root, or the one folder in root, that holds train/ and test/."""
    if not root.is_dir():
        return None
    if all((root / s).is_dir() for s in SPLITS):
        return root
    inner = [p for p in root.iterdir() if all((p / s).is_dir() for s in SPLITS)]
    if len(inner) > 1:
        names = ", ".join(sorted(p.name for p in inner))
        raise LabError(f"{root} holds several CIFAR-10 copies ({names}); point at one of them")
    return inner[0] if inner else None


def _find_tarball(root: Path) -> Path | None:
    """The image-copy tarball in root, a lossless (PNG) one first; torchvision's own archive
    (cifar-10-python.tar.gz) is torchvision's business."""
    if not root.is_dir():
        return None
    found = [
        p
        for p in root.iterdir()
        if p.is_file() and p.name.endswith(TARBALL_SUFFIXES) and p.name != "cifar-10-python.tar.gz"
    ]
    found.sort(key=lambda p: ("png" not in p.name.lower(), p.name))
    return found[0] if found else None


# --- image copies: list, decode once, cache ------------------------------------------------


def _load_tarball(tarball: Path, cache: Path) -> Cifar10:
    digest = _sha256_cached(tarball, cache)
    npz = cache / f"cifar10-{digest[:16]}-v{CACHE_VERSION}.npz"
    return _cached(
        npz,
        lambda: _decode_copy(
            _tar_files(tarball),
            tarball.name,
            lambda fmt, desc, _: f"CIFAR-10 {fmt} copy ({desc}), sha256 {digest[:8]}…",
        ),
    )


def _load_folder(folder: Path, cache: Path) -> Cifar10:
    listing = [(s, c, p) for s in SPLITS for c, p in _list_split(folder, s)]
    # Keyed by every file's name, size and mtime: a changed, added or removed image rebuilds.
    key = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for split, cls, path in listing:
        st = path.stat()
        key.update(f"{split}/{cls}/{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    npz = cache / f"cifar10-folder-{key.hexdigest()[:16]}-v{CACHE_VERSION}.npz"
    files = ((s, c, p.name, str(p)) for s, c, p in listing)
    return _cached(
        npz,
        lambda: _decode_copy(
            files,
            folder.name,
            lambda fmt, desc, pix: f"CIFAR-10 {fmt} folder ({desc}), pixels sha256 {pix}…",
        ),
    )


def _cached(npz: Path, decode) -> Cifar10:
    """The arrays cached in `npz`, or `decode()`'s, cached there for next time."""
    arrays = _read_cache(npz)
    if arrays is None:
        arrays = decode()
        _write_cache(npz, arrays)
    return _as_cifar10(arrays)


def _list_split(folder: Path, split: str) -> list[tuple[str, Path]]:
    split_dir = folder / split
    _check_classes([p.name for p in split_dir.iterdir() if p.is_dir()], split_dir)
    files = [
        (name, p)
        for name in CLASSES
        if (split_dir / name).is_dir()
        for p in sorted((split_dir / name).iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    ]
    if not files:
        raise LabError(f"{split_dir} holds no .png/.jpg images; {_HOW_TO}")
    return files


def _check_classes(names: Iterable[str], where) -> None:
    """Class folders are named by CIFAR-10's classes (labels follow CLASSES, not the folders);
    a small copy may lack some."""
    unknown = sorted(set(names) - set(CLASSES))
    if unknown:
        raise LabError(
            f"{where} has class folders {unknown} that are not CIFAR-10's; expected the 10 "
            f"CIFAR-10 classes {list(CLASSES)} -- rename or remove the others"
        )


def _tar_files(tarball: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(split, class, file name, bytes) of every image in the tarball, read in one pass and
    never unpacked to disk, so no member's name can write anywhere. Whatever the top folder
    is called, there must be one."""
    tops = set()
    try:
        with tarfile.open(tarball, "r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[-3] not in SPLITS:
                    continue
                name = parts[-1]
                if name.startswith(".") or PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                tops.add(parts[:-3])
                if len(tops) > 1:
                    raise LabError(
                        f"{tarball.name} holds more than one CIFAR-10 copy "
                        f"({', '.join(sorted('/'.join(t) or '.' for t in tops))}); pack one"
                    )
                yield parts[-3], parts[-2], name, tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise LabError(f"cannot read {tarball.name} ({e}); re-copy the file or {_HOW_TO}") from e


def _decode_copy(files, where: str, name) -> dict[str, np.ndarray]:
    """Decode (split, class, file name, bytes or path) items into the cache's arrays: train and
    test images (N, 32, 32, 3) and labels, in official order where file names are indices, and
    `source`, the content name `name(format, description, pixels sha256)` returns."""
    meta: list[tuple[str, str, str]] = []
    sample: list = []  # one encoded image, to tell its format and JPEG quality

    def payloads():
        for split, cls, file_name, payload in files:
            meta.append((split, cls, file_name))
            sample[:] = sample or [payload]
            yield f"{where}: {split}/{cls}/{file_name}", payload

    images = _decode_all(payloads())
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        rows = [i for i, m in enumerate(meta) if m[0] == split]
        if not rows:
            raise LabError(f"{where} holds no {split}/<class>/ images; {_HOW_TO}")
        _check_classes({meta[i][1] for i in rows}, f"{where}: {split}/")
        stems = [PurePosixPath(meta[i][2]).stem for i in rows]
        numbered = all(s.isascii() and s.isdigit() for s in stems)
        if numbered and len({int(s) for s in stems}) == len(stems):
            rows = [r for _, r in sorted(zip((int(s) for s in stems), rows))]  # official index
        else:
            rows.sort(key=lambda i: (CLASSES.index(meta[i][1]), meta[i][2]))
        out[f"{split}_x"] = images[rows]
        out[f"{split}_y"] = np.array([CLASSES.index(meta[i][1]) for i in rows], dtype=np.int64)
    pixels = hashlib.sha256()
    for k in ("train_x", "train_y", "test_x", "test_y"):
        pixels.update(out[k].tobytes())
    suffixes = {PurePosixPath(m[2]).suffix.lower() for m in meta}
    out["source"] = np.array(name(*_describe(suffixes, sample[0]), pixels.hexdigest()[:8]))
    return out


def _describe(suffixes: set[str], sample) -> tuple[str, str]:
    """("PNG", "lossless"), ("JPEG", "quality 75, lossy"), ...: what the copy's encoding keeps."""
    if suffixes == {".png"}:
        return "PNG", "lossless"
    if not suffixes <= {".jpg", ".jpeg"}:
        return "PNG and JPEG", "partly lossy"
    quality = _jpeg_quality(sample if isinstance(sample, bytes) else Path(sample).read_bytes())
    return "JPEG", (f"quality {quality}, lossy" if quality else "lossy")


def _jpeg_quality(data: bytes) -> int | None:
    """The IJG quality (1-100) whose scaled standard tables the JPEG uses, found by encoding a
    probe at each quality with Pillow (libjpeg) and comparing quantization tables."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        tables = getattr(im, "quantization", None)
    probe = Image.new("RGB", (8, 8))
    for quality in range(1, 101):
        buf = io.BytesIO()
        probe.save(buf, "JPEG", quality=quality)
        with Image.open(buf) as im:
            if im.quantization == tables:
                return quality
    return None


def _decode(items: list[tuple[str, bytes | str]]) -> np.ndarray:
    """Decode (name, bytes or path) items to a uint8 (n, 32, 32, 3) array (runs in a worker)."""
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    for i, (name, payload) in enumerate(items):
        try:
            src = io.BytesIO(payload) if isinstance(payload, bytes) else payload
            with Image.open(src) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise LabError(f"cannot read image {name} ({e}); delete or replace it") from None
        if arr.shape != (32, 32, 3):
            raise LabError(f"image {name} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
        out[i] = arr
    return out


def _decode_all(items: Iterator[tuple[str, bytes | str]], chunk: int = 2500) -> np.ndarray:
    """Decode in worker processes while `items` is still being read (a tarball is read in one
    pass, so reading and decoding overlap)."""
    workers = min(os.cpu_count() or 1, 8)
    batches = _batched(items, chunk)
    if workers <= 1:
        parts = [_decode(b) for b in batches]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = [f.result() for f in [pool.submit(_decode, b) for b in batches]]
    return np.concatenate(parts) if parts else np.empty((0, 32, 32, 3), np.uint8)


def _batched(items: Iterator, n: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


_CACHE_KEYS = ("train_x", "train_y", "test_x", "test_y", "source")


def _read_cache(npz: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent; a damaged cache is noted in one line and rebuilt."""
    if not npz.exists():
        return None
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _CACHE_KEYS}
        for split in SPLITS:
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if x.dtype != np.uint8 or x.shape[1:] != (32, 32, 3) or len(x) != len(y):
                raise ValueError(f"{split} arrays of shape {x.shape} and {y.shape}")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError, ValueError) as e:
        print(
            f"note: image cache {npz.name} is unreadable ({type(e).__name__}); rebuilding it",
            file=sys.stderr,
        )
        return None
    return arrays


def _write_cache(npz: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write under a unique temporary name, then rename: a crash leaves no half cache, and two
    processes filling the same cache never share a file. Unwritable: go on without a cache."""
    tmp = npz.with_name(f"{npz.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        for stale in npz.parent.glob("*.tmp"):  # left by a killed process more than an hour ago
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, npz)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(
            f"note: cannot write the image cache ({e.strerror}); decoding again next time",
            file=sys.stderr,
        )


def _sha256_cached(path: Path, cache: Path) -> str:
    """The file's sha256, hashed once and kept in the cache, keyed by its path, size and mtime."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    note = cache / f"sha256-{key[:16]}.txt"
    try:
        digest = note.read_text().strip()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            return digest
    except OSError:
        pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    tmp = note.with_name(f"{note.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp.write_text(digest + "\n")
        os.replace(tmp, note)
    except OSError:
        tmp.unlink(missing_ok=True)
    return digest


def _as_cifar10(arrays: dict[str, np.ndarray]) -> Cifar10:
    return Cifar10(
        train_images=_to_nchw(arrays["train_x"]),
        train_labels=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_images=_to_nchw(arrays["test_x"]),
        test_labels=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        source=str(arrays["source"]),
    )


# --- torchvision's release ------------------------------------------------------------------


def _load_torchvision(root: Path, download: bool) -> Cifar10:
    from torchvision.datasets import CIFAR10

    have = (root / "cifar-10-batches-py").is_dir()
    if not have and not download:
        raise LabError(f"no CIFAR-10 found in {root}; {_HOW_TO}")
    try:  # torchvision checks every batch against its published md5
        train = CIFAR10(str(root), train=True, download=download and not have)
        test = CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # offline, a proxy, a broken archive: all end the same way
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if have:
            raise LabError(
                f"{root / 'cifar-10-batches-py'} is incomplete or not the official release "
                f"({reason}); delete it (it is downloaded again when online) or {_HOW_TO}"
            ) from None
        raise LabError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({reason}); {_HOW_TO}"
        ) from None
    return Cifar10(
        train_images=_to_nchw(train.data),
        train_labels=torch.tensor(train.targets, dtype=torch.int64),
        test_images=_to_nchw(test.data),
        test_labels=torch.tensor(test.targets, dtype=torch.int64),
        source="torchvision CIFAR-10 (official batches)",
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
