"""Tests for stats.py: the numbers against hand-computed values and scipy, the verdicts, and
the tables on synthetic result dicts and on real smoke runs with several seeds."""

from __future__ import annotations

import math

import pytest
from scipy.stats import t as student_t

from engine.errors import LabError
from lab import stats, tables
from lab.stats import batch_table, diff_interval, format_table, mean_std, summarize, verdict

# ---------------------------------------------------------------- numbers


def test_mean_std_by_hand() -> None:
    mean, std, n = mean_std([1, 2, 3, 4])
    assert (mean, n) == (2.5, 4)
    assert std == pytest.approx(math.sqrt(5 / 3))  # squares 2.25+0.25+0.25+2.25 = 5, / (n-1)
    assert mean_std([0.5, None, 1.5]) == pytest.approx((1.0, math.sqrt(0.5), 2))  # None skipped


def test_mean_std_small_n() -> None:
    mean, std, n = mean_std([0.8])
    assert (mean, n) == (0.8, 1) and math.isnan(std)  # one seed: spread unknown, not 0
    mean, std, n = mean_std([])
    assert n == 0 and math.isnan(mean) and math.isnan(std)
    assert mean_std([0.7, 0.7, 0.7])[1] == pytest.approx(0.0, abs=1e-12)


def test_welch_equal_spreads_by_hand() -> None:
    # means 2 and 5, both variances 1: se^2 = 1/3 + 1/3, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4.
    d = diff_interval([1, 2, 3], [4, 5, 6])
    half = 2.776445 * math.sqrt(2 / 3)
    assert d["diff"] == pytest.approx(-3)
    assert d["df"] == pytest.approx(4)
    assert (d["lo"], d["hi"]) == pytest.approx((-3 - half, -3 + half), abs=1e-5)
    assert d["method"] == "welch" and (d["n_a"], d["n_b"]) == (3, 3)
    assert verdict(d["lo"], d["hi"]) == "worse"


def test_welch_unequal_spreads_by_hand() -> None:
    a, b = [0.80, 0.82, 0.84], [0.78, 0.79, 0.80, 0.81]
    va, vb = 0.0004 / 3, (5e-4 / 3) / 4  # s_a^2 / n_a and s_b^2 / n_b
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch-Satterthwaite: 3.2347
    d = diff_interval(a, b)
    assert d["diff"] == pytest.approx(0.025)
    assert d["se"] == pytest.approx(math.sqrt(va + vb))
    assert d["df"] == pytest.approx(df) and df == pytest.approx(3.2347, abs=1e-4)
    t = student_t.ppf(0.975, df)
    assert 2.776 < t < 3.182  # between the table's df = 4 and df = 3
    assert (d["lo"], d["hi"]) == pytest.approx((0.025 - t * d["se"], 0.025 + t * d["se"]))
    assert verdict(d["lo"], d["hi"]) == "within noise"  # lo = -0.0162


def test_one_seed_against_two_is_n_too_small() -> None:
    # One seed has no spread of its own; the baseline's is not borrowed.
    for a, b in (([0.90], [0.80, 0.82]), ([0.80, 0.82], [0.70])):
        d = diff_interval(a, b)
        assert d["lo"] is None and d["hi"] is None and d["method"] == "n too small"
        assert verdict(d["lo"], d["hi"]) == "n too small"
    assert diff_interval([0.90], [0.80, 0.82])["diff"] == pytest.approx(0.09)  # value shown
    rows = summarize(
        {
            "baseline": [fake_run("baseline", s, a) for s, a in enumerate([0.8, 0.82])],
            "x": [fake_run("x", 0, 0.99)],
        }
    )
    assert rows[1]["verdict"] == "n too small"
    line = next(ln for ln in format_table(rows).splitlines() if ln.startswith("| x"))
    assert "+18.00 pp" in line and "n too small" in line and "[" not in line  # no interval


def test_welch_matches_scipy() -> None:
    """3 seeds a side, a known difference: the interval computed independently by scipy."""
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = [0.912, 0.905, 0.921], [0.850, 0.861, 0.846]
    d = diff_interval(a, b)
    res = scipy_stats.ttest_ind(a, b, equal_var=False)
    va, vb = (scipy_stats.tvar(a) / 3, scipy_stats.tvar(b) / 3)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = sum(a) / 3 - sum(b) / 3
    assert d["df"] == pytest.approx(df, rel=1e-9)
    assert (d["lo"], d["hi"]) == pytest.approx((diff - half, diff + half), abs=1e-9)
    if hasattr(res, "confidence_interval"):  # scipy >= 1.11
        ci = res.confidence_interval(0.95)
        assert (d["lo"], d["hi"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert d["diff"] / d["se"] == pytest.approx(res.statistic, rel=1e-9)
    assert verdict(d["lo"], d["hi"]) == "better"


def test_no_interval_without_spread() -> None:
    for a, b in (([0.9], [0.8]), ([], [0.8, 0.9]), ([None], [0.8, 0.9])):
        d = diff_interval(a, b)
        assert d["lo"] is None and d["hi"] is None
        assert verdict(d["lo"], d["hi"]) == "n too small"
    assert diff_interval([0.9], [0.8])["diff"] == pytest.approx(0.1)


def test_verdicts() -> None:
    assert verdict(0.001, 0.03) == "better"
    assert verdict(-0.03, -0.001) == "worse"
    assert verdict(-0.01, 0.02) == "within noise"
    assert verdict(0.0, 0.02) == "within noise"  # touching 0 is not a difference
    assert verdict(None, None) == "n too small"
    assert verdict(0.045, 0.045) == "no spread measured"  # identical seeds: no evidence
    assert set(tables.VERDICTS) == {
        "better",
        "worse",
        "within noise",
        "n too small",
        "no spread measured",
    }


# ---------------------------------------------------------------- synthetic results


def fake_run(
    name,
    seed,
    test_acc,
    status="ok",
    profile="quick",
    batch_size=128,
    lr=0.05,
    seconds=(3.0, 1.0, 1.2),
    val_acc=(0.5, 0.6, 0.55),
    peak_mem_mb=None,
    train_subset=None,
    val_size=5000,
) -> dict:
    """A results dict with the fields stats.py reads, as lab.grid.run_experiment writes."""
    hist = {"epoch": [1, 2, 3], "seconds": list(seconds), "val_acc": list(val_acc)}
    if status == "diverged":
        hist = {"epoch": [1], "seconds": [None], "val_acc": [None]}
    return {
        "name": name,
        "group": "batch" if name.startswith("bs_") else "test",
        "profile": profile,
        "seed": seed,
        "status": status,
        "config": {
            "batch_size": batch_size,
            "lr": lr,
            "val_size": val_size,
            "train_subset": train_subset,
            "warmup_epochs": 0,
        },
        "history": hist,
        "test_acc": None if status == "diverged" else test_acc,
        "test_loss": None if status == "diverged" else 1 - test_acc,
        "peak_mem_mb": peak_mem_mb,
    }


def fake_grid() -> dict:
    runs = {
        "baseline": [0.80, 0.82, 0.84],
        "much_better": [0.90, 0.91, 0.92],
        "same": [0.81, 0.83, 0.82],
        "one_seed": [0.95],
    }
    res = {n: [fake_run(n, s, a) for s, a in enumerate(accs)] for n, accs in runs.items()}
    res["same"].append(fake_run("same", 3, None, status="diverged"))
    return res


def test_summarize_rows() -> None:
    res = fake_grid()
    rows = summarize({k: res[k] for k in ("same", "one_seed", "baseline", "much_better")})
    assert [r["name"] for r in rows] == ["baseline", "same", "one_seed", "much_better"]
    by = {r["name"]: r for r in rows}

    base = by["baseline"]
    assert (base["n"], base["status"], base["seeds"]) == (3, {"ok": 3, "diverged": 0}, [0, 1, 2])
    assert base["test_acc"] == pytest.approx({"mean": 0.82, "std": 0.02, "n": 3})
    assert base["test_loss"]["mean"] == pytest.approx(0.18)
    assert base["best_val_acc"] == {"mean": 0.6, "std": 0.0, "n": 3}
    assert base["last_val_acc"] == pytest.approx({"mean": 0.55, "std": 0.0, "n": 3})
    assert base["sec_per_epoch"]["mean"] == pytest.approx(1.1)  # epoch 1 (3.0 s) left out
    assert base["vs_baseline"] is None and base["verdict"] == ""

    same = by["same"]  # 3 finished + 1 diverged: n counts it, the means do not
    assert (same["n"], same["status"]) == (4, {"ok": 3, "diverged": 1})
    assert same["test_acc"]["n"] == 3 and same["test_acc"]["mean"] == pytest.approx(0.82)
    assert "1 of 4 runs diverged" in same["note"]
    assert same["vs_baseline"]["diff"] == pytest.approx(0.0)
    assert same["verdict"] == "within noise"

    assert by["much_better"]["verdict"] == "better"
    one = by["one_seed"]
    assert one["test_acc"]["std"] is None  # JSON-safe: None, never nan
    assert one["vs_baseline"]["method"] == "n too small"
    assert one["verdict"] == "n too small"  # 0.13 above, but one seed: no spread of its own


def test_all_diverged_row() -> None:
    res = {
        "baseline": fake_grid()["baseline"],
        "lr_huge": [fake_run("lr_huge", s, None, status="diverged") for s in range(2)],
    }
    row = summarize(res)[1]
    assert row["status"] == {"ok": 0, "diverged": 2} and row["test_acc"]["n"] == 0
    assert row["verdict"] == "n too small" and row["vs_baseline"]["diff"] is None
    line = format_table([row]).splitlines()[2]
    assert "| 2 diverged" in line and "n/a" in line and "none finished" in line


def test_summarize_without_baseline_and_mixed_profiles() -> None:
    res = fake_grid()
    rows = summarize({"same": res["same"]})
    assert rows[0]["verdict"] == "no baseline" and rows[0]["vs_baseline"] is None
    mixed = {"baseline": res["baseline"], "x": [fake_run("x", 0, 0.8, profile="full")]}
    with pytest.raises(LabError, match="mix profiles"):
        summarize(mixed)


def test_batch_table_synthetic() -> None:
    res = {
        "bs_512": [
            fake_run(
                "bs_512", s, 0.78, batch_size=512, seconds=(5.0, 2.0, 2.2), peak_mem_mb=900.0 + s
            )
            for s in range(2)
        ],
        "baseline": [fake_run("baseline", s, 0.8, peak_mem_mb=400.0) for s in range(2)],
        "bs_32_scaled": [
            fake_run("bs_32_scaled", 0, 0.81, batch_size=32, lr=0.0125, seconds=(9.0,))
        ],
        "norm_minmax": [fake_run("norm_minmax", 0, 0.8)],  # not a batch run
    }
    rows = batch_table(res)
    assert [r["name"] for r in rows] == ["bs_32_scaled", "baseline", "bs_512"]
    small, base, big = rows
    assert (small["batch_size"], small["lr"], small["steps_per_epoch"]) == (32, 0.0125, 1407)
    assert small["sec_per_epoch"]["mean"] == 9.0  # one epoch only: kept
    assert big["steps_per_epoch"] == 88  # ceil(45,000 / 512)
    assert big["sec_per_epoch"]["mean"] == pytest.approx(2.1)
    assert big["images_per_sec"]["mean"] == pytest.approx(45000 / 2.1)
    assert big["peak_mem_mb"] == pytest.approx({"mean": 900.5, "std": math.sqrt(0.5), "n": 2})
    assert base["steps_per_epoch"] == 352 and base["test_acc"]["mean"] == pytest.approx(0.8)
    assert small["peak_mem_mb"] is None  # measured on the CPU: no figure
    sub = fake_run("baseline", 0, 0.5, train_subset=5000, val_size=1000)
    assert batch_table({"baseline": [sub]})[0]["steps_per_epoch"] == 40  # ceil(5000 / 128)
    assert stats.train_size({"val_size": 1000, "train_subset": 60000}) == 49000


def test_format_table_markdown() -> None:
    rows = summarize(fake_grid())
    md = format_table(rows)
    lines = md.splitlines()
    assert lines[0].startswith("| experiment") and set(lines[1]) <= {"|", "-", " "}
    assert len({len(line) for line in lines[: 2 + len(rows)]}) == 1  # columns aligned
    base = next(line for line in lines if line.startswith("| baseline"))
    assert "| 82.00 ± 2.00 " in base and "3 ok" in base  # n: the runs column's
    one = next(line for line in lines if line.startswith("| one_seed"))
    assert "| 95.00 " in one and "n too small" in one  # n = 1: no ± shown
    assert "| +13.00 pp " in one
    assert "- same: 1 of 4 runs diverged (excluded from the means)" in md
    assert "3 ok + 1 diverged" in md
    assert "(reference)" in base and "n/a" not in base

    table = format_table(batch_table({"baseline": [fake_run("baseline", 0, 0.8)]}))
    assert "n/a" in table and "steps/epoch" in table and "peak GPU MB" in table


# ---------------------------------------------------------------- real smoke runs


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread_per_module):
    """Tiny smoke models: one torch thread (see conftest.one_thread_per_module)."""


@pytest.fixture(scope="module")
def smoke_results(cifar, tmp_path_factory):
    """baseline x 3 seeds and bs_512 x 2 seeds on the smoke profile, loaded back from disk."""
    from lab.grid import RunOptions, load_results, run_experiment

    out = tmp_path_factory.mktemp("results")
    options = RunOptions(
        out=out, ckpt_root=out / "ckpt", device="cpu", progress=False, echo=lambda line: None
    )
    for name, seeds in (("baseline", 3), ("bs_512", 2)):
        for seed in range(seeds):
            run_experiment(name, "smoke", cifar, seed=seed, options=options)
    return load_results("smoke", out)


def test_summarize_real_smoke_runs(smoke_results) -> None:
    assert [r["seed"] for r in smoke_results["baseline"]] == [0, 1, 2]
    assert [r["config"]["seed"] for r in smoke_results["baseline"]] == [0, 1, 2]
    rows = {r["name"]: r for r in summarize(smoke_results)}
    base, big = rows["baseline"], rows["bs_512"]
    assert base["n"] == 3 and base["seeds"] == [0, 1, 2] and base["profile"] == "smoke"
    assert base["test_acc"]["n"] == 3 and base["test_acc"]["std"] is not None
    assert 0 <= base["test_acc"]["mean"] <= 1 and base["sec_per_epoch"]["mean"] > 0
    assert big["n"] == 2 and big["vs_baseline"]["method"] == "welch"
    d = big["vs_baseline"]
    assert (d["n_a"], d["n_b"]) == (2, 3)
    if d["lo"] is not None:  # None only if every run scored exactly the same
        assert d["lo"] <= d["diff"] <= d["hi"]
    assert big["verdict"] in tables.VERDICTS
    md = format_table(list(rows.values()))
    assert "| baseline" in md and "| bs_512" in md and "3 ok" in md


def test_batch_table_real_smoke_runs(smoke_results) -> None:
    rows = batch_table(smoke_results)
    assert [(r["name"], r["batch_size"]) for r in rows] == [("baseline", 128), ("bs_512", 512)]
    # smoke trains on 400 images: ceil(400 / 128) = 4 and one batch of 400 at 512.
    assert [r["steps_per_epoch"] for r in rows] == [4, 1]
    assert all(r["peak_mem_mb"] is None for r in rows)  # CPU
    assert all(r["sec_per_epoch"]["n"] == r["status"]["ok"] for r in rows)
    assert "n/a" in format_table(rows)
