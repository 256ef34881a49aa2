"""Atomic writes and safe loading for checkpoints and results files.

A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
`os.replace`d over the final name, so a crash mid-save leaves the previous file intact and never
a half-written one under the final name (the guarantee Lightning and torchtitan give).
Checkpoints are loaded with `torch.load(..., weights_only=True)`: they hold tensors, numbers,
strings, lists and dicts only, never pickled code.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.errors import LabError

_CKPT = re.compile(r"^epoch_(\d+)\.pt$")


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(file_object) on a temp file beside `path`, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite(obj):
    """JSON has no NaN or infinity: store them as null so every reader can parse the file."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def save_json(obj, path: str | os.PathLike) -> None:
    text = json.dumps(_finite(obj), indent=1, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def rng_state() -> dict:
    """Every random number generator a run touches, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, ckpt_dir: str | os.PathLike, epoch: int, keep: int = 2) -> Path:
    """Write epoch_<epoch>.pt atomically and delete all but the newest `keep` checkpoints."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / f"epoch_{epoch:03d}.pt"
    atomic_write(path, lambda f: torch.save(state, f))
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (never temp files), oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint safely; a truncated or foreign file is a LabError naming it."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LabError(
            f"checkpoint {path} cannot be loaded ({first[:160]}); delete it to restart that run "
            "or restore a good copy"
        ) from None
    if not isinstance(state, dict) or not {"model", "optimizer", "epoch", "config"} <= state.keys():
        raise LabError(f"{path} is not a checkpoint written by this lab; delete it or pick another")
    return state


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None
