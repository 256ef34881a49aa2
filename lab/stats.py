"""Conclusions that hold over seeds. Seeds often differ in test accuracy by as much as the
effects studied, so an experiment is compared with the baseline by the difference of mean test
accuracies and its 95% Welch t interval (Welch 1947), each side's spread from its own seeds;
unpaired (seed k of two experiments shares initial weights), so conservative.

    python -m lab.stats --profile full --out results [--write]   # the tables [-> summary.md]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from scipy.stats import t as student_t

from engine.checkpoint import atomic_write
from engine.errors import LabError, run_cli
from engine.runtime import precision_of
from lab.grid import PROFILES, load_results
from lab.tables import format_table  # also stats.format_table to the notebook
from train_utils import train_size  # also stats.train_size to the notebook


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, sample std, n) without None entries; the std is nan with n = 1, the mean with 0."""
    xs = [float(v) for v in values if v is not None]
    n = len(xs)
    mean = math.fsum(xs) / n if n else math.nan
    if n < 2:
        return mean, math.nan, n
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)), n


def diff_interval(a: Sequence, b: Sequence, level: float = 0.95) -> dict:
    """mean(a) - mean(b) with its Welch t interval at `level` (Welch-Satterthwaite df). With fewer
    than two seeds on a side there is no interval: borrowing the other side's spread would assume
    the change leaves the noise alone (augmentation does not)."""
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = mean_std(a), mean_std(b)
    out = dict(diff=None, lo=None, hi=None, level=level, df=None, se=None)
    out.update(n_a=n_a, n_b=n_b, method="n too small")
    if n_a and n_b:
        out["diff"] = diff = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return out
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    se2 = va + vb
    # Both spreads 0 (identical runs): a zero-width interval; any df gives the same.
    df = se2**2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if se2 > 0 else n_a + n_b - 2
    se = math.sqrt(se2)
    half = float(student_t.ppf(0.5 + level / 2, df)) * se
    out.update(lo=diff - half, hi=diff + half, df=df, se=se, method="welch")
    return out


def verdict(lo: float | None, hi: float | None) -> str:
    """Read an interval of (experiment - baseline), higher better, as one of VERDICTS."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "n too small"
    if lo == hi:  # seeds that all scored alike measure no noise: no evidence (issue #27)
        return "no spread measured"
    return "better" if lo > 0 else "worse" if hi < 0 else "within noise"


def _curve(result: Mapping, key: str) -> list[float]:
    return [v for v in result.get("history", {}).get(key, []) if v is not None]


def seconds_per_epoch(result: Mapping) -> float | None:
    """Mean training seconds per epoch, the first left out (cudnn autotuning, first allocations)."""
    secs = _curve(result, "seconds")
    secs = secs[1:] if len(secs) >= 2 else secs
    return math.fsum(secs) / len(secs) if secs else None


def _stat(values: Iterable[float | None]) -> dict:
    """mean_std as a JSON-safe {"mean", "std", "n"}, None where undefined."""
    mean, std, n = mean_std(values)
    return {"mean": mean if n else None, "std": std if n > 1 else None, "n": n}


def _check_one_profile(results: Mapping[str, Sequence[Mapping]]) -> None:
    """Runs of different profiles, data or precision are never pooled or compared: one line."""
    runs = [r for rs in results.values() for r in rs]
    profiles = {r.get("profile") for r in runs} - {None}
    data = {str(r["data"]) for r in runs if r.get("data") is not None}
    precisions = {precision_of(r) for r in runs}
    for what, found, fix in (
        ("profiles", profiles, "of one profile, e.g. load_results('full')"),
        ("data", data, "trained on one copy of CIFAR-10 (rerun the others with --force on it)"),
        ("precisions", precisions, "of one precision (rerun the others with --force --precision)"),
    ):
        if len(found) > 1:
            raise LabError(f"results mix {what} ({'; '.join(sorted(found))}); compare runs {fix}")


def _finished(runs: Sequence[Mapping]) -> list[Mapping]:
    """The runs that reached the test set; diverged ones have no test figures."""
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
        # the last epoch's (the model the test set saw) and the best
        "last_val_acc": _stat((_curve(r, "val_acc") or [None])[-1] for r in ok),
        "best_val_acc": _stat(max(_curve(r, "val_acc"), default=None) for r in ok),
        "test_acc": _stat(r["test_acc"] for r in ok),
        "test_loss": _stat(r.get("test_loss") for r in ok),
        "sec_per_epoch": _stat(seconds_per_epoch(r) for r in ok),
        "note": note,
    }


def summarize(results: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """One row per experiment, the baseline first: its figures over the finished runs, vs_baseline
    (`diff_interval` of the test accuracies), its verdict ("" for the baseline) and a note."""
    _check_one_profile(results)
    base_ok = [r["test_acc"] for r in _finished(results.get("baseline", []))]
    rows = []
    for name in sorted(results, key=lambda n: n != "baseline"):  # the baseline first
        row = _aggregate(name, results[name])
        if name == "baseline":
            row.update(vs_baseline=None, verdict="")
        elif not base_ok:
            row.update(vs_baseline=None, verdict="no baseline")
            row["note"] = "; ".join(filter(None, [row["note"], "no finished baseline runs"]))
        else:
            d = diff_interval([r["test_acc"] for r in _finished(results[name])], base_ok)
            row.update(vs_baseline=d, verdict=verdict(d["lo"], d["hi"]))
        rows.append(row)
    return rows


def batch_table(results: Mapping[str, Sequence[Mapping]]) -> list[dict]:
    """The "bs_*" experiments and the baseline by batch size then lr, with steps per epoch,
    images/s and peak GPU memory (None on the CPU) beside the accuracies."""
    _check_one_profile(results)
    rows = []
    for name, runs in results.items():
        if not runs or not (name.startswith("bs_") or name == "baseline"):
            continue
        cfg, row, ok = runs[0]["config"], _aggregate(name, runs), _finished(runs)
        n_train = train_size(cfg)
        mems = [r.get("peak_mem_mb") for r in ok if r.get("peak_mem_mb") is not None]
        rows.append(
            {
                "name": name,
                "batch_size": cfg["batch_size"],
                "lr": cfg["lr"],
                "warmup_epochs": cfg.get("warmup_epochs", 0),
                "steps_per_epoch": -(-n_train // cfg["batch_size"]),
                "sec_per_epoch": row["sec_per_epoch"],
                "images_per_sec": _stat(n_train / s for r in ok if (s := seconds_per_epoch(r))),
                "peak_mem_mb": _stat(mems) if mems else None,
                **{k: row[k] for k in ("last_val_acc", "test_acc", "status", "note")},
            }
        )
    return sorted(rows, key=lambda r: (r["batch_size"], r["lr"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Tables of a profile's saved results.")
    ap.add_argument("--profile", default="full", help="full | cpu | quick | smoke (default: full)")
    ap.add_argument("--out", default="results", help="results folder (default: results)")
    ap.add_argument("--write", action="store_true", help="also save <out>/<profile>/summary.md")
    args = ap.parse_args(argv)
    if args.profile not in PROFILES:
        raise LabError(f"unknown profile {args.profile!r}; choose one of {', '.join(PROFILES)}")
    results, folder = load_results(args.profile, args.out), Path(args.out, args.profile)
    if not results:
        raise LabError(
            f"no results in {folder}; run `python experiments.py run "
            f"--profile {args.profile}` first"
        )
    text = f"## Experiments vs baseline ({args.profile})\n\n" + format_table(summarize(results))
    batch = batch_table(results)
    if batch:
        text += f"\n## Batch size ({args.profile})\n\n" + format_table(batch)
    runs = [r for rs in results.values() for r in rs]
    hours = sum(r.get("wall_seconds") or 0 for r in runs) / 3600
    text += f"\n{len(runs)} runs; their wall time, one after another: {hours:.1f} h\n"
    print(text, end="")
    if args.write:
        path = folder / "summary.md"
        try:
            atomic_write(path, lambda f: f.write(text.encode()))
        except OSError as e:
            raise LabError(f"cannot write {path} ({e.strerror or e}); drop --write") from None
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
