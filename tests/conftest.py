"""Shared fixtures: the offline CIFAR-10 copy, loaded once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The lossless copy (official pixels, official order) beside the checkout; LAB3_DATA_DIR overrides.
LOSSLESS = REPO.parent / "shared" / "data" / "cifar10-png.tar.gz"


def data_location() -> Path | None:
    env = os.environ.get("LAB3_DATA_DIR")
    if env and Path(env).exists():
        return Path(env)
    return LOSSLESS if LOSSLESS.exists() else None


@pytest.fixture(scope="session")
def cifar():
    """The real CIFAR-10 (60,000 images) as uint8 tensors; skipped where no copy exists."""
    loc = data_location()
    if loc is None:
        pytest.skip(
            "CIFAR-10 not found: put cifar10-png.tar.gz in ../shared/data/ or set LAB3_DATA_DIR"
        )
    from engine.data import load_cifar10

    cache = Path(os.environ.get("LAB3_CACHE_DIR", REPO / ".cache"))
    return load_cifar10(loc, cache_dir=cache, download=False)


@pytest.fixture(scope="module")
def one_thread_per_module():
    """One intra-op torch thread for a module of tiny smoke models: on 2 shared cores it was
    ~5x faster than two threads fighting other processes (6.5 s vs 48 s for the stats runs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
