"""Tests for lr_finder.py: the suggestion rules on made-up curves, the range test on the smoke
profile (real CIFAR-10, CPU), the command line and its one-line errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.errors import LabError
from lab import lr_finder
from lab.grid import make_config
from lab.lr_finder import lr_range_test, plot_lr_range, suggest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_per_module):
    """Tiny smoke models: one torch thread (see conftest.one_thread_per_module)."""


def u_curve(n: int = 61, lo: float = 1e-5, hi: float = 10.0, bottom: float = 0.1):
    """A loss that is flat, falls fastest around 1e-2, bottoms out at `bottom`, then blows up."""
    lrs = np.geomspace(lo, hi, n)
    x = np.log10(lrs)
    loss = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 2)))  # logistic fall centred on lr = 1e-2
    loss += 2.0 * np.clip(x - np.log10(bottom), 0, None) ** 2  # rises again after `bottom`
    return lrs.tolist(), loss.tolist()


def test_suggest_reads_a_known_curve() -> None:
    lrs, loss = u_curve()
    s = suggest(lrs, loss)
    assert s["min_loss_lr"] == pytest.approx(0.1, rel=0.15)  # grid step is 10^0.1 = 1.26x
    assert s["steepest_lr"] == pytest.approx(1e-2, rel=0.3)
    assert s["max_lr"] == pytest.approx(s["min_loss_lr"] / lr_finder.MAX_LR_DIVISOR)
    assert s["base_lr"] == pytest.approx(s["max_lr"] / lr_finder.BASE_LR_DIVISOR)
    assert s["warning"] == ""


def test_suggest_flags_curves_it_cannot_read() -> None:
    lrs = np.geomspace(1e-3, 1, 20).tolist()
    rising = suggest(lrs, np.linspace(2.3, 3.0, 20).tolist())
    assert "never fell" in rising["warning"]
    assert lrs[0] <= rising["base_lr"] <= rising["max_lr"] <= lrs[-1]  # clipped into the range
    falling = suggest(lrs, np.linspace(2.3, 1.0, 20).tolist())
    assert "still falling" in falling["warning"]
    with pytest.raises(LabError, match="only 2 steps"):
        suggest(lrs[:2], [2.3, 2.2])


def test_bad_ranges_are_lab_errors() -> None:
    cfg = make_config("baseline", "smoke")
    for kwargs in (
        dict(min_lr=0.0),
        dict(min_lr=1.0, max_lr=0.1),
        dict(steps=2),
        dict(max_lr=math.inf),
    ):
        with pytest.raises(LabError):
            lr_range_test(cfg, data=None, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def smoke_range(cifar):
    cfg = make_config("baseline", "smoke")
    return lr_range_test(cfg, cifar, device="cpu", min_lr=1e-4, max_lr=10.0, steps=10)


def test_range_test_on_smoke(smoke_range) -> None:
    r = smoke_range
    n = len(r["lrs"])
    assert 3 <= n <= 10 and len(r["losses"]) == len(r["smoothed"]) == n
    assert all(math.isfinite(v) for v in r["losses"] + r["smoothed"])
    assert r["lrs"][0] == pytest.approx(1e-4)
    assert np.allclose(np.diff(np.log(r["lrs"])), math.log(1e5) / 9)  # exponential
    assert r["smoothed"][0] == pytest.approx(r["losses"][0])  # bias correction: no pull to 0
    if n == 10:
        assert r["lrs"][-1] == pytest.approx(10.0) and not r["stopped_early"]
    else:
        assert r["stopped_early"] and r["stop_reason"]
    s = r["suggestion"]
    for key in ("max_lr", "base_lr", "steepest_lr", "min_loss_lr"):
        assert 1e-4 <= s[key] <= 10.0, key
    assert s["base_lr"] <= s["max_lr"] <= s["min_loss_lr"]
    assert r["config"]["width"] == 4 and r["config"]["train_subset"] == 400  # the smoke model
    assert r["env"]["device"] == "cpu"
    json.dumps(r, allow_nan=False)  # JSON-safe as saved


def test_range_test_is_reproducible(cifar, smoke_range) -> None:
    cfg = make_config("baseline", "smoke")
    again = lr_range_test(cfg, cifar, device="cpu", min_lr=1e-4, max_lr=10.0, steps=10)
    assert again["losses"] == pytest.approx(smoke_range["losses"], rel=1e-5)


def test_plot_lr_range(smoke_range, tmp_path) -> None:
    fig = plot_lr_range(smoke_range, tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0
    assert fig.axes[0].get_xscale() == "log"


def test_cli_writes_json_and_png(cifar, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("engine.data.load_cifar10", lambda *a, **k: cifar)  # main loads it by name
    out, plots = tmp_path / "results", tmp_path / "plots"
    code = lr_finder.main(
        [
            "--profile",
            "smoke",
            "--steps",
            "6",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--plots",
            str(plots),
        ]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "max_lr" in line and "base_lr" in line
    saved = json.loads((out / "smoke" / "lr_range.json").read_text())
    assert saved["profile"] == "smoke" and saved["name"] == "baseline" and saved["steps"] == 6
    assert set(saved["suggestion"]) >= {"max_lr", "base_lr", "steepest_lr", "min_loss_lr"}
    assert (plots / "smoke" / "lr_range.png").exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.lr_finder",
            "--profile",
            "smoke",
            "--steps",
            "2",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: the range test needs at least 3 steps, got 2"
    assert not list(tmp_path.iterdir())  # nothing written
