"""CIFAR-10 copies on disk: found, decoded once to uint8 arrays, and cached by their content.

Every reader returns the arrays the cache holds (train_x, test_x (N, 32, 32, 3) uint8, train_y,
test_y, and `source`, the data's content name); `data.py` says which copy is read, in what order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np

from engine.checkpoint import atomic_write
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
CACHE_VERSION = 2  # part of every cache key: bump when the cached arrays change meaning
HOW_TO = (
    "put cifar10-png.tar.gz (or torchvision's cifar-10-batches-py/) in ./data, or pass "
    "--data-dir / set LAB3_DATA_DIR to a CIFAR-10 image folder, its .tar.gz, or a folder "
    "holding cifar-10-batches-py/"
)


def holds_cifar(root: Path) -> bool:
    found = (root / "cifar-10-batches-py").is_dir() or find_tarball(root) is not None
    return found or find_image_folder(root) is not None


def find_image_folder(root: Path) -> Path | None:
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


def find_tarball(root: Path) -> Path | None:
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


def read_tarball(tarball: Path, cache: Path) -> dict[str, np.ndarray]:
    digest = _sha256_cached(tarball, cache)
    return _cached(
        cache / f"cifar10-{digest[:16]}-v{CACHE_VERSION}.npz",
        lambda: _decode_copy(
            _tar_files(tarball),
            tarball.name,
            lambda fmt, desc, _: f"CIFAR-10 {fmt} copy ({desc}), sha256 {digest[:8]}…",
        ),
    )


def read_folder(folder: Path, cache: Path) -> dict[str, np.ndarray]:
    listing = [(s, c, p) for s in SPLITS for c, p in _list_split(folder, s)]
    # Keyed by every file's name, size and mtime: a changed, added or removed image rebuilds.
    key = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for split, cls, path in listing:
        st = path.stat()
        key.update(f"{split}/{cls}/{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    files = ((s, c, p.name, str(p)) for s, c, p in listing)
    return _cached(
        cache / f"cifar10-folder-{key.hexdigest()[:16]}-v{CACHE_VERSION}.npz",
        lambda: _decode_copy(
            files,
            folder.name,
            lambda fmt, desc, pix: f"CIFAR-10 {fmt} folder ({desc}), pixels sha256 {pix}…",
        ),
    )


def _cached(npz: Path, decode) -> dict[str, np.ndarray]:
    """The arrays cached in `npz`, or `decode()`'s, cached there for next time."""
    arrays = _read_cache(npz)
    if arrays is None:
        arrays = decode()
        _write_cache(npz, arrays)
    return arrays


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
        raise LabError(f"{split_dir} holds no .png/.jpg images; {HOW_TO}")
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
        raise LabError(f"cannot read {tarball.name} ({e}); re-copy the file or {HOW_TO}") from e


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
            raise LabError(f"{where} holds no {split}/<class>/ images; {HOW_TO}")
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
    batches = iter(lambda: list(itertools.islice(items, chunk)), [])  # until an empty batch
    if workers <= 1:
        parts = [_decode(b) for b in batches]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = [f.result() for f in [pool.submit(_decode, b) for b in batches]]
    return np.concatenate(parts) if parts else np.empty((0, 32, 32, 3), np.uint8)


def _read_cache(npz: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent; a damaged cache is noted in one line and rebuilt."""
    if not npz.exists():
        return None
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y", "source")}
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
    """Through atomic_write's unique temporary file: a crash leaves no half cache, and two processes
    filling the same cache never share a file. Unwritable: go on without a cache."""
    try:
        for stale in npz.parent.glob("*.tmp"):  # left by a killed process more than an hour ago
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink(missing_ok=True)
        atomic_write(npz, lambda f: np.savez(f, **arrays))
    except OSError as e:
        print(
            f"note: cannot write the image cache ({e.strerror}); decoding again next time",
            file=sys.stderr,
        )


def _sha256_cached(path: Path, cache: Path) -> str:
    """The file's sha256, hashed once and kept in the cache, keyed by its path, size and mtime."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    note = cache / f"sha256-{key[:16]}.txt"
    with contextlib.suppress(OSError):
        digest = note.read_text().strip()
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            return digest
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    digest = h.hexdigest()
    with contextlib.suppress(OSError):  # unwritable: hashed again next time
        atomic_write(note, lambda f: f.write(f"{digest}\n".encode()))
    return digest


# --- torchvision's release ------------------------------------------------------------------


def read_torchvision(root: Path, download: bool) -> dict:
    """The official batches in root/cifar-10-batches-py (downloaded there if allowed), as the
    arrays an image copy decodes to (not cached: the pickles already hold decoded pixels)."""
    from engine.runtime import torchvision

    CIFAR10 = torchvision().datasets.CIFAR10  # one line where torch and torchvision mismatch

    have = (root / "cifar-10-batches-py").is_dir()
    if not have and not download:
        raise LabError(f"no CIFAR-10 found in {root}; {HOW_TO}")
    try:  # torchvision checks every batch against its published md5
        train = CIFAR10(str(root), train=True, download=download and not have)
        test = CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # offline, a proxy, a broken archive: all end the same way
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if have:
            raise LabError(
                f"{root / 'cifar-10-batches-py'} is incomplete or not the official release "
                f"({reason}); delete it (it is downloaded again when online) or {HOW_TO}"
            ) from None
        raise LabError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({reason}); {HOW_TO}"
        ) from None
    return {
        "train_x": train.data,
        "train_y": np.array(train.targets, dtype=np.int64),
        "test_x": test.data,
        "test_y": np.array(test.targets, dtype=np.int64),
        "source": "torchvision CIFAR-10 (official batches)",
    }
