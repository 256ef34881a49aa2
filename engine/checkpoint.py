"""Atomic writes and safe loading for checkpoints and results files.

A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
`os.replace`d over the final name, so a crash mid-save leaves the previous file intact and never
a half-written one under the final name (the guarantee Lightning and torchtitan give).
Checkpoints are loaded with `torch.load(..., weights_only=True)`: they hold tensors, numbers,
strings, lists and dicts only, never pickled code. Each also stores the sha256 of its content
(every tensor's bytes, dtype and shape, and every other value), checked on load, so a file
changed after it was written (a flipped bit, a bad copy) is refused instead of resumed from.

A training run's checkpoint (`run_state`) holds its weights, optimizer, scaler, random
generators, history and log; `resume_run` continues from one only when it was written by the same
configuration, in the same precision and on the same data.

Files are created with the user's umask (as `open` would), not mkstemp's private 0600. A run
holds a `RunLock` while it trains, so a second process on the same run stops with one line
instead of deleting the first one's checkpoints.
"""

from __future__ import annotations

import glob
import hashlib
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
        os.chmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a results file is shared work
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def temp_files(folder: str | os.PathLike, name: str = "") -> list[Path]:
    """The temporary files atomic_write leaves behind when killed mid-save, for files named
    `name*` in `folder` (all of them when name is empty)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    # exactly atomic_write's names: ".<name>.<mkstemp's random part>.tmp", never another run's
    # file whose name merely starts with this one's
    own = re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9_]+\.tmp" if name else r"\..+\.tmp")
    return sorted(p for p in folder.glob(f".{glob.escape(name)}*.tmp") if own.fullmatch(p.name))


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


def checksum(obj) -> str:
    """sha256 over a checkpoint's content: each tensor's dtype, shape and bytes, and the repr of
    every other value, in the dict's order. It is the same after a save and load round trip
    (weights_only keeps types and order), and changes when any byte of any tensor changes."""
    h = hashlib.sha256()

    def walk(o) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(o, dict):
            h.update(b"{%d" % len(o))
            for k, v in o.items():
                h.update(repr(k).encode())
                walk(v)
        elif isinstance(o, (list, tuple)):
            h.update(b"[%d" % len(o))
            for v in o:
                walk(v)
        else:
            h.update(f"{type(o).__name__}:{o!r};".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(state: dict, ckpt_dir: str | os.PathLike, epoch: int, keep: int = 2) -> Path:
    """Write epoch_<epoch>.pt atomically, with the checksum of its content, and delete all but
    the newest `keep` checkpoints."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / f"epoch_{epoch:03d}.pt"
    state = {**state, "sha256": checksum(state)}
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
    """Load a checkpoint safely; a truncated, foreign or altered file is a LabError naming it."""
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
    stored = state.pop("sha256", None)
    if stored is None:
        raise LabError(
            f"checkpoint {path} has no checksum (written by an older version of the lab); "
            "delete it to restart that run"
        )
    if checksum(state) != stored:
        raise LabError(
            f"checkpoint {path} fails its sha256 check (its content changed after it was "
            "written); delete it to restart that run or restore a good copy"
        )
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


class RunLock:
    """An exclusive `filelock.FileLock` on each of `paths` (lock files, created as needed), held
    from `acquire` to `release`. The operating system drops it when the process dies, so a
    killed run never leaves a stale lock. The holder writes its pid into `<lock file>.pid`, which
    a process that finds the lock taken names in its one-line error."""

    def __init__(self, paths, what: str) -> None:
        self.paths = [Path(p) for p in paths]
        self.what = what
        self._locks: list = []

    def acquire(self) -> RunLock:
        import filelock

        for path in self.paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(path, timeout=0)
            pid_file = path.with_name(path.name + ".pid")
            try:
                lock.acquire()
            except filelock.Timeout:
                try:
                    pid = pid_file.read_text().strip() or "unknown"
                except OSError:
                    pid = "unknown"
                self.release()
                raise LabError(
                    f"{self.what} is already running (pid {pid}); wait for it to finish or "
                    "stop that process"
                ) from None
            self._locks.append((lock, pid_file))
            pid_file.write_text(str(os.getpid()))
        return self

    def release(self) -> None:
        for lock, pid_file in self._locks:
            pid_file.unlink(missing_ok=True)
            lock.release()
        self._locks = []

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
