"""Conclusions that hold: means over seeds, Welch intervals against the baseline, the rows.

Pure functions on results dicts (as `lab.grid.run_experiment` returns and `load_results`
groups them) and on plain lists of numbers; nothing here trains, prints on import or needs a GPU.

Why intervals: two runs of the same configuration with different seeds differ in test accuracy
(initialisation, batch order, augmentation draws), often by as much as the effects studied, so
a difference between two single runs says little. Each experiment is compared with the baseline
by the difference of their mean test accuracies and a 95% Welch t confidence interval
(Welch 1947); `verdict` reads the interval, so "better" means the whole interval is above zero.
There is an interval only when both sides have at least two seeds, each side's spread from its
own seeds; otherwise the verdict is "n too small" and the values are shown as values.
The comparison is unpaired (seed k of two experiments shares the initial weights, which a paired
test could exploit), which makes it conservative.

    rows = summarize(load_results("full"))        # one row per experiment
    Markdown(format_table(rows))                  # in the notebook (lab.tables)
    Markdown(format_table(batch_table(results)))  # small vs large batches, measured

    python -m lab.stats --profile full --out results            # print both tables
    python -m lab.stats --profile full --out results --write    # ... and save results/full/summary.md
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence

from scipy.stats import t as student_t

from engine.errors import LabError, run_cli
from engine.settings import train_size  # also stats.train_size to the notebook
from lab.tables import format_table  # main()'s, and still stats.format_table to callers

VERDICTS = ("better", "worse", "within noise", "n too small", "no spread measured")


# ---------------------------------------------------------------- numbers


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (ddof=1), n) of `values`.

    None entries (the test accuracy of a diverged run) are skipped and not counted. With n = 1
    the std is nan, not 0.0: one seed says nothing about the spread, and a 0 would read as
    "no noise". With n = 0 the mean is nan too.
    """
    xs = [float(v) for v in values if v is not None]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(xs) / n
    if n == 1:
        return mean, math.nan, 1
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)), n


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (possibly fractional, or math.inf) degrees of freedom."""
    return float(student_t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (df may be fractional, as
    Welch's is, or math.inf for the normal). t_quantile(0.975, 4) = 2.776."""
    if not 0 < p < 1:
        raise LabError(f"quantile level must be in (0, 1), got {p}")
    if not df > 0:
        raise LabError(f"degrees of freedom must be positive, got {df}")
    return float(student_t.ppf(p, df))


def diff_interval(
    a: Sequence[float | None], b: Sequence[float | None], level: float = 0.95
) -> dict:
    """mean(a) - mean(b) with a Welch t confidence interval at `level`.

    Returns {"diff", "lo", "hi", "level", "df", "se", "n_a", "n_b", "method"}; lo/hi/df/se are
    None when there is no interval. None entries of a and b are skipped (see `mean_std`).

    Only when both sides have n >= 2 is there an interval: Welch's, se^2 = s_a^2/n_a + s_b^2/n_b
    with the Welch-Satterthwaite degrees of freedom (method "welch"). Each side's spread comes
    from its own seeds. With one seed on a side its spread is unknown, and borrowing the other
    side's would assume the change leaves the noise alone (augmentation, for one, does not), so
    there is no interval: method "n too small", and `verdict` says so. The difference itself
    is still returned, to be shown as a value, not as a finding.
    """
    if not 0 < level < 1:
        raise LabError(f"confidence level must be in (0, 1), got {level}")
    mean_a, sd_a, n_a = mean_std(a)
    mean_b, sd_b, n_b = mean_std(b)
    out = {
        "diff": None,
        "lo": None,
        "hi": None,
        "level": level,
        "df": None,
        "se": None,
        "n_a": n_a,
        "n_b": n_b,
        "method": "n too small",
    }
    if n_a == 0 or n_b == 0:
        return out
    out["diff"] = diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return out
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se2 = va + vb
    # Both spreads 0 (identical runs): a zero-width interval; any df gives the same.
    df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if se2 > 0 else n_a + n_b - 2
    se = math.sqrt(se2)
    half = t_quantile(0.5 + level / 2, df) * se
    out.update(lo=diff - half, hi=diff + half, df=df, se=se, method="welch")
    return out


def verdict(lo: float | None, hi: float | None, higher_is_better: bool = True) -> str:
    """Read an interval of (experiment - baseline): "better" when it lies wholly on the good side
    of 0, "worse" when wholly on the bad side, "within noise" when it contains 0, "n too small"
    when there is no interval, "no spread measured" when it has zero width (identical scores)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "n too small"
    if lo == hi:
        # Seeds that all scored the same (a copy, a deterministic metric): a zero-width interval
        # is no measure of the noise, so it is no evidence either way (issue #27).
        return "no spread measured"
    if lo > 0:
        return "better" if higher_is_better else "worse"
    if hi < 0:
        return "worse" if higher_is_better else "better"
    return "within noise"


# ---------------------------------------------------------------- per-run figures


def seconds_per_epoch(result: Mapping) -> float | None:
    """Mean training seconds per epoch of one run, leaving out the first epoch when there are
    two or more (it includes cudnn autotuning and the first allocations)."""
    secs = [s for s in result.get("history", {}).get("seconds", []) if s is not None]
    if len(secs) >= 2:
        secs = secs[1:]
    return math.fsum(secs) / len(secs) if secs else None


def best_val_acc(result: Mapping) -> float | None:
    """The best validation accuracy over the epochs of one run (model selection uses val)."""
    accs = [a for a in result.get("history", {}).get("val_acc", []) if a is not None]
    return max(accs) if accs else None


def _curve(result: Mapping, key: str) -> list[float]:
    return [v for v in result.get("history", {}).get(key, []) if v is not None]


def last_epoch(result: Mapping, key: str = "val_acc") -> float | None:
    """The value of history[`key`] at the last epoch of one run (the model the test set saw)."""
    values = _curve(result, key)
    return values[-1] if values else None


def train_val_gap(result: Mapping) -> float | None:
    """Train minus validation accuracy at the last epoch: how much the run overfits."""
    tr, va = last_epoch(result, "train_acc"), last_epoch(result, "val_acc")
    return None if tr is None or va is None else tr - va


def epochs_to_reach(result: Mapping, threshold: float) -> int | None:
    """The first epoch (1-based) whose validation accuracy reaches `threshold`, or None."""
    for epoch, acc in zip(result.get("history", {}).get("epoch", []), _curve(result, "val_acc")):
        if acc >= threshold:
            return int(epoch)
    return None


def val_stability(result: Mapping, last_k: int = 5) -> float | None:
    """Sample std of the validation accuracy over the last `last_k` epochs of one run: how much
    the curve still jumps from one epoch to the next (None with fewer than 2 epochs)."""
    tail = _curve(result, "val_acc")[-last_k:]
    return mean_std(tail)[1] if len(tail) >= 2 else None


def _stat(values: Iterable[float | None]) -> dict:
    """mean_std as a JSON-safe dict: {"mean", "std", "n"}, None where undefined."""
    mean, std, n = mean_std(values)
    return {
        "mean": None if math.isnan(mean) else mean,
        "std": None if math.isnan(std) else std,
        "n": n,
    }


def _check_one_profile(results: Mapping[str, Sequence[Mapping]]) -> None:
    """Runs of different profiles, data or precision are never pooled or compared: one line."""
    from engine.runtime import precision_of

    runs = [r for rs in results.values() for r in rs]
    profiles = {r.get("profile") for r in runs} - {None}
    if len(profiles) > 1:
        raise LabError(
            f"results mix profiles ({', '.join(sorted(profiles))}); compare runs of one profile, "
            "e.g. load_results('full')"
        )
    data = {str(r["data"]) for r in runs if r.get("data") is not None}
    if len(data) > 1:
        raise LabError(
            f"results mix data ({'; '.join(sorted(data))}); compare runs trained on one copy "
            "of CIFAR-10 (rerun the others with --force on it)"
        )
    precisions = {precision_of(r) for r in runs}
    if len(precisions) > 1:
        raise LabError(
            f"results mix precisions ({', '.join(sorted(precisions))}); compare runs of one "
            "precision (rerun the others with --force --precision ...)"
        )


def _finished(runs: Sequence[Mapping]) -> list[Mapping]:
    """The runs that reached the test set (status "ok"); diverged ones have no test figures."""
    return [r for r in runs if r.get("status", "ok") == "ok" and r.get("test_acc") is not None]


def _aggregate(name: str, runs: Sequence[Mapping]) -> dict:
    """The figures every table shares; diverged runs counted, then left out of the means."""
    ok = _finished(runs)
    # Only a run that says so diverged; one without test figures for another reason (a file
    # with no history, say) is not called a divergence (issue #17).
    diverged = sum(r.get("status") == "diverged" for r in runs)
    other = len(runs) - len(ok) - diverged
    note = "; ".join(
        [f"{diverged} of {len(runs)} runs diverged (excluded from the means)"] * bool(diverged)
        + [f"{other} of {len(runs)} runs have no test figures (excluded)"] * bool(other)
    )
    return {
        "name": name,
        "group": runs[0].get("group", "") if runs else "",
        "profile": runs[0].get("profile") if runs else None,
        "n": len(runs),
        "status": {"ok": len(ok), "diverged": diverged},
        "seeds": [r.get("seed") for r in runs],
        "last_val_acc": _stat(last_epoch(r, "val_acc") for r in ok),
        "test_acc": _stat(r["test_acc"] for r in ok),
        "test_loss": _stat(r.get("test_loss") for r in ok),
        "sec_per_epoch": _stat(seconds_per_epoch(r) for r in ok),
        # The best epoch beside the last one, which the test set goes with.
        "best_val_acc": _stat(best_val_acc(r) for r in ok),
        # Not in the tables (tables.COLUMNS): figures a discussion may quote.
        "last_train_acc": _stat(last_epoch(r, "train_acc") for r in ok),
        "train_val_gap": _stat(train_val_gap(r) for r in ok),
        "val_stability": _stat(val_stability(r) for r in ok),
        "note": note,
    }


def summarize(
    results: Mapping[str, Sequence[Mapping]],
    baseline: str = "baseline",
    metric: str = "test_acc",
    level: float = 0.95,
) -> list[dict]:
    """One row per experiment (the baseline first, then the order of `results`).

    Each row: name, group, profile, n (runs), status {"ok", "diverged"}, seeds, and
    {"mean", "std", "n"} over the runs that finished for last_val_acc (the last epoch's, the
    model the test set scores), best_val_acc, test_acc, test_loss and sec_per_epoch (the
    table's columns), and last_train_acc, train_val_gap and val_stability (for the discussion);
    vs_baseline (`diff_interval` of `metric`, experiment - baseline, plus "metric") and its
    verdict ("n too small" unless both sides have 2+ seeds); note (diverged runs, missing baseline). The baseline's own row
    has vs_baseline None and verdict "". Rows are JSON-safe (None, never nan).
    """
    _check_one_profile(results)
    names = ([baseline] if baseline in results else []) + [n for n in results if n != baseline]
    base_ok = _finished(results.get(baseline, []))
    higher_is_better = not metric.endswith("loss")
    rows = []
    for name in names:
        row = _aggregate(name, results[name])
        ok = _finished(results[name])
        if name == baseline:
            row.update(vs_baseline=None, verdict="")
        elif not base_ok:
            row.update(vs_baseline=None, verdict="no baseline")
            row["note"] = "; ".join(filter(None, [row["note"], f"no finished {baseline} runs"]))
        else:
            d = diff_interval([r.get(metric) for r in ok], [r.get(metric) for r in base_ok], level)
            d["metric"] = metric
            row.update(vs_baseline=d, verdict=verdict(d["lo"], d["hi"], higher_is_better))
        rows.append(row)
    return rows


def batch_table(results: Mapping[str, Sequence[Mapping]], baseline: str = "baseline") -> list[dict]:
    """The small-vs-large-batch table from our own runs: the "bs_*" experiments and the baseline
    (batch 128), sorted by batch size then lr.

    Each row: name, batch_size, lr, warmup_epochs, steps_per_epoch (ceil(training images /
    batch), the last batch kept), sec_per_epoch and images_per_sec (first epoch excluded, see
    `seconds_per_epoch`), peak_mem_mb ({"mean", "std", "n"}, or None on the CPU), last_val_acc,
    test_acc, status, note.
    """
    _check_one_profile(results)
    rows = []
    for name, runs in results.items():
        if not runs or not (name.startswith("bs_") or name == baseline):
            continue
        cfg = runs[0]["config"]
        row = _aggregate(name, runs)
        ok = _finished(runs)
        n_train = train_size(cfg)
        sec = row["sec_per_epoch"]
        mems = [r.get("peak_mem_mb") for r in ok if r.get("peak_mem_mb") is not None]
        rows.append(
            {
                "name": name,
                "batch_size": cfg["batch_size"],
                "lr": cfg["lr"],
                "warmup_epochs": cfg.get("warmup_epochs", 0),
                "steps_per_epoch": -(-n_train // cfg["batch_size"]),
                "sec_per_epoch": sec,
                "images_per_sec": _stat(n_train / s for r in ok if (s := seconds_per_epoch(r))),
                "peak_mem_mb": _stat(mems) if mems else None,
                "last_val_acc": row["last_val_acc"],
                "test_acc": row["test_acc"],
                "status": row["status"],
                "note": row["note"],
            }
        )
    return sorted(rows, key=lambda r: (r["batch_size"], r["lr"]))


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description="Tables of a profile's saved results.")
    ap.add_argument("--profile", default="full", help="full | cpu | quick | smoke (default: full)")
    ap.add_argument("--out", default="results", help="results folder (default: results)")
    ap.add_argument("--baseline", default="baseline", help="experiment to compare against")
    ap.add_argument("--write", action="store_true", help="also save <out>/<profile>/summary.md")
    args = ap.parse_args(argv)

    from engine.checkpoint import atomic_write
    from lab.grid import PROFILES
    from lab.results import load_results

    if args.profile not in PROFILES:
        raise LabError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}")
    results = load_results(args.profile, args.out)
    if not results:
        raise LabError(
            f"no results in {Path(args.out) / args.profile}; run `python experiments.py run "
            f"--profile {args.profile}` first"
        )
    text = f"## Experiments vs {args.baseline} ({args.profile})\n\n" + format_table(
        summarize(results, args.baseline)
    )
    batch = batch_table(results, args.baseline)
    if batch:
        text += f"\n## Batch size ({args.profile})\n\n" + format_table(batch)
    runs = [r for rs in results.values() for r in rs]
    hours = sum(r.get("wall_seconds") or 0 for r in runs) / 3600
    text += f"\n{len(runs)} runs; their wall time, one after another: {hours:.1f} h\n"
    print(text, end="")
    if args.write:
        path = Path(args.out) / args.profile / "summary.md"
        try:
            atomic_write(path, lambda f: f.write(text.encode()))
        except OSError as e:
            raise LabError(
                f"cannot write {path} ({e.strerror or e}); fix the folder's "
                "permissions or drop --write"
            ) from None
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
