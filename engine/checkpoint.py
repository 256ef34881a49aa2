"""Atomic writes and safe loading for checkpoints and results files.

A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
`os.replace`d over the final name, so a crash mid-save leaves the previous file intact and never
a half-written one under the final name (the guarantee Lightning and torchtitan give).
Checkpoints are loaded with `torch.load(..., weights_only=True)`: they hold tensors, numbers,
strings, lists and dicts only, never pickled code.

A training run's checkpoint (`run_state`) holds its weights, optimizer, scaler, random
generators, history and log; `resume_run` continues from one only when it was written by the same
configuration, in the same precision and on the same data.
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
    """Call write(file_object) on a temp file beside `path`, then move it into place. The temp
    file is opened like any other (so it gets the user's umask) under a name of this process."""
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


def check_writable(folder: str | os.PathLike, what: str, keep: bool = True) -> Path:
    """Prove a file can be written in `folder` (created if needed; with keep=False the folders
    this created are removed again), before any training; a LabError naming `what` (e.g.
    "--out") otherwise."""
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(b"x")
            f.flush()
    except OSError as e:
        file = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        reason = f"{file} is a file" if file else e.strerror or type(e).__name__
        raise LabError(
            f"{what} {folder} is not a writable folder ({reason}); pick another with {what}"
        ) from None
    finally:
        if not keep:
            for p in created:  # deepest first
                try:
                    p.rmdir()
                except OSError:
                    break
    return folder


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
    state.pop("sha256", None)  # written by earlier versions of the lab, no longer checked
    return state


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def run_state(
    model, opt, scaler, *, epoch, config, history, log, wall_seconds, precision, data
) -> dict:
    """A training run's checkpoint after `epoch` epochs: what `resume_run` checks and restores,
    and the run's history, log lines and wall time so far."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "config": config,
        "history": history,
        "rng": rng_state(),
        "log": log,
        "wall_seconds": wall_seconds,
        "precision": precision,
        "data": data,
    }
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    return state


def save_run_state(state: dict, ckpt_dir: str | os.PathLike, epoch: int) -> None:
    """save_checkpoint; a full disk or a vanished folder becomes one line saying what is kept."""
    try:
        save_checkpoint(state, ckpt_dir, epoch)
    except OSError as e:
        raise LabError(
            f"cannot write a checkpoint in {ckpt_dir} ({e.strerror or e}); the epochs saved "
            "before are kept: free space or fix the folder, then rerun with --resume"
        ) from None


def resume_run(state: dict, path, model, opt, scaler, *, config, precision, data) -> None:
    """Continue a run from checkpoint `state` (read from `path`): a LabError unless it was written
    by the same configuration (the name aside), in `precision` and on `data` (a source as
    Cifar10.source names it); then the weights, the optimizer's and scaler's state and every
    random generator are those of the checkpoint."""

    def comparable(cfg: dict) -> dict:
        return {k: v for k, v in cfg.items() if k != "name"}

    saved, mine = comparable(state["config"]), comparable(config)
    diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
    saved_prec = state.get("precision", "fp32")  # checkpoints older than the field: fp32
    if not diff and saved_prec != precision:
        raise LabError(
            f"checkpoint {path} was trained in {saved_prec}, this run would continue in "
            f"{precision}; rerun with --precision {saved_prec} to resume, or --force to start "
            "over"
        )
    if diff:
        raise LabError(
            f"checkpoint {path} was written by a different configuration ({', '.join(diff)} "
            "differ); delete its folder or rerun with --force to start over"
        )
    saved_data = state.get("data")  # checkpoints older than the field: not checked
    if saved_data is not None and saved_data != data:
        raise LabError(
            f"checkpoint {path} was trained on other data ({saved_data}), this run has "
            f"{data}; point --data-dir at that copy to resume, or --force to start over"
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
