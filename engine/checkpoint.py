"""Files written whole or not at all (a crash mid-save leaves the previous file), and a run's
checkpoints: epoch_<k>.pt in its folder, the newest two kept, loaded `weights_only`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from engine.errors import LabError


def atomic_write(path: str | os.PathLike, write) -> None:
    """write(file) on a temp file beside `path`, flushed to disk, then moved over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_json(obj, path: str | os.PathLike) -> None:
    """`obj` as strict JSON: NaN and infinity (which JSON lacks) become null."""

    def finite(v):
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return [finite(x) for x in v] if isinstance(v, (list, tuple)) else v

    text = json.dumps(finite(obj), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def check_writable(folder: str | os.PathLike, what: str) -> None:
    """Before any training, making nothing: a LabError naming the option `what` (e.g. "--out")
    unless `folder` is, or can be made, a writable folder."""
    folder = Path(folder).absolute()
    nearest = next(p for p in (folder, *folder.parents) if p.exists())
    if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
        reason = f"{nearest} is a file" if nearest.is_file() else "permission denied"
        raise LabError(
            f"{what} {folder} is not a writable folder ({reason}); pick another with {what}"
        )


def checkpoints(folder) -> list[Path]:
    """A run's checkpoints, oldest first (a temporary file of a killed save never matches)."""
    return sorted(Path(folder).glob("epoch_*.pt"), key=lambda p: (len(p.name), p.name))


def latest_checkpoint(folder) -> Path | None:
    return (checkpoints(folder) or [None])[-1]


def save_checkpoint(state: dict, folder, keep: int = 2) -> None:
    """epoch_<k>.pt written atomically, then all but the newest `keep` deleted."""
    import torch  # here: the zip and the report need no torch

    try:
        atomic_write(
            Path(folder) / f"epoch_{state['epoch']:03d}.pt", lambda f: torch.save(state, f)
        )
    except OSError as e:
        raise LabError(
            f"cannot write a checkpoint in {folder} ({e.strerror or e}); the epochs saved before "
            "are kept: free space or fix the folder, then rerun with --resume"
        ) from None
    for old in checkpoints(folder)[:-keep]:
        old.unlink()


def load_checkpoint(path) -> dict:
    """A checkpoint, on the CPU, with `weights_only` (tensors and plain data, never code)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (truncated, not a zip, not torch's at all)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LabError(
            f"checkpoint {path} cannot be loaded ({first[:160]}); delete it to restart that run "
            "or restore a good copy"
        ) from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "config"} <= state.keys():
        raise LabError(f"{path} is not a checkpoint written by this lab; delete it or pick another")
    return state
