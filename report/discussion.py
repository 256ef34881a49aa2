"""The report's sentences that make claims: each one computed from the results, so that it
cannot go stale. Pure functions returning Markdown; nothing here draws, trains or writes.

- `clean` strips machine paths from any text taken from a results file;
- `code_excerpt` pulls the real implementation out of the source at build time;
- `group_discussion` / `group_conclusion` read a group's curves and verdicts;
- `final_recipe` justifies each setting of the final run by a grid run or a paper;
- `seed_lines`, `missing_lines`, `difficulties` say what ran, what did not and what went wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine import stats
from engine.notebook import source_block

# A path that starts at the file system's root: /tmp/..., /root/..., /home/..., /work/...
_ABS_PATH = re.compile(r"(?<![\w.~-])/(?:[\w.+@-]+/)*[\w.+@-]*")
LAST_K = 5  # epochs over which the validation accuracy's jitter is measured

# Papers behind the settings a final recipe may change (cited when no run tested the change).
PAPERS = {
    "norm": "input standardization (LeCun et al. 1998, Efficient BackProp)",
    "augment": "crop + flip (He et al. 2015) and cutout (DeVries & Taylor 2017)",
    "schedule": "one-cycle (Smith & Topin 2017)",
    "max_lr": "one-cycle's high peak (Smith & Topin 2017); the LR range test (Smith 2015)",
    "pct_start": "one-cycle's warm-up fraction (Smith & Topin 2017)",
    "nesterov": "Nesterov momentum (Sutskever et al. 2013)",
    "label_smoothing": "label smoothing (Szegedy et al. 2016)",
    "tta": "test-time flip averaging (Krizhevsky et al. 2012)",
    "batch_size": "linear scaling of lr with batch (Goyal et al. 2017)",
    "epochs": "longer training",
    "lr": "the lr at the start of one-cycle is max_lr / div_factor (Smith & Topin 2017)",
    "zero_init_residual": "zero-init of each block's last BN (Goyal et al. 2017)",
}


def clean(text) -> str:
    """`text` with every absolute path shortened to its last part: no machine path is printed
    ("image folder /tmp/x/cifar10-jpeg" -> "image folder cifar10-jpeg")."""
    return _ABS_PATH.sub(lambda m: Path(m.group(0).rstrip("/")).name or "/", str(text))


def pp(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def code_excerpt(obj, max_lines: int = 28, drop_docstring: bool = True) -> str:
    """The source of `obj` as a fenced block under a line naming its module, read at build
    time, docstring dropped and a long body cut (engine.notebook.source_block)."""
    return source_block(obj, max_lines, drop_docstring)


# ---------------------------------------------------------------- seeds and coverage


def seed_lines(results: Mapping[str, Sequence[Mapping]]) -> str:
    """Which seeds each experiment has, grouped: the basis of every verdict below."""
    by_seeds: dict[tuple, list[str]] = {}
    for name, runs in results.items():
        by_seeds.setdefault(tuple(r.get("seed") for r in runs), []).append(name)
    out = []
    for seeds, names in sorted(by_seeds.items(), key=lambda t: (-len(t[0]), t[0])):
        which = ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))
        out.append(f"- {which} (n = {len(seeds)}): {', '.join(names)}")
    return "\n".join(out) + "\n"


def missing(results: Mapping, groups: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """Per group of the grid, the experiments without any saved run."""
    return {g: [n for n in names if n not in results] for g, names in groups.items()
            if any(n not in results for n in names)}  # fmt: skip


def missing_lines(results: Mapping, groups: Mapping[str, Mapping], profile: str) -> str:
    gone = missing(results, groups)
    if not gone:
        return (
            f"Every experiment of the grid has at least one saved run in the {profile} profile.\n"
        )
    out = []
    for g, names in gone.items():
        whole = len(names) == len(groups[g])
        out.append(f"- **{g}**: " + ("no run at all" if whole else "missing " + ", ".join(names))
                   + f" (`python experiments.py run {g} --profile {profile} --seeds 3`)")  # fmt: skip
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- one group's curves


def _runs_ok(results, name):
    return [r for r in results.get(name, []) if r.get("status", "ok") == "ok"]


def _mean(values) -> float | None:
    m, _, n = stats.mean_std(values)
    return None if n == 0 else m


def threshold_for(results) -> float | None:
    """The validation accuracy used for "epochs to reach": 90% of the baseline's last-epoch
    value, rounded down to a whole percent (so it means the same in every profile)."""
    base = _mean(stats.last_epoch(r) for r in _runs_ok(results, "baseline"))
    return None if base is None else int(90 * base) / 100


def curve_rows(results, names: Sequence[str]) -> list[dict]:
    """Per experiment (baseline first): means over its own seeds of the last-epoch train and
    validation accuracy, their gap, epochs to the threshold, the jitter of the last epochs, the
    test loss and accuracy. Every field is None where no run has it."""
    thr = threshold_for(results)
    out = []
    for name in (["baseline"] if "baseline" in results else []) + [
        n for n in names if n != "baseline"
    ]:
        ok = _runs_ok(results, name)
        if not ok:
            continue
        reach = [stats.epochs_to_reach(r, thr) for r in ok] if thr is not None else []
        out.append({
            "name": name, "n": len(ok),
            "epochs": max(len(r["history"].get("epoch", [])) for r in ok),
            "train": _mean(stats.last_epoch(r, "train_acc") for r in ok),
            "val": _mean(stats.last_epoch(r, "val_acc") for r in ok),
            "gap": _mean(stats.train_val_gap(r) for r in ok),
            "reach": (None if not reach or None in reach else sum(reach) / len(reach)),
            "jitter": _mean(stats.val_stability(r, LAST_K) for r in ok),
            "test_loss": _mean(r.get("test_loss") for r in ok),
            "test_acc": _mean(r.get("test_acc") for r in ok),
        })  # fmt: skip
    return out


def curve_table(rows: Sequence[Mapping], threshold: float | None) -> str:
    head = ["run", "n", "train acc, last epoch", "val acc, last epoch", "gap (pp)",
            f"epochs to {pp(threshold, 0)}% val", f"val jitter, last {LAST_K} ep. (pp)",
            "test loss", "test acc"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        reach = "not reached" if r["reach"] is None else f"{r['reach']:g}"
        loss = "n/a" if r["test_loss"] is None else f"{r['test_loss']:.4f}"
        lines.append(f"| {r['name']} | {r['n']} | {pp(r['train'])}% | {pp(r['val'])}% | "
                     f"{pp(r['gap'])} | {reach} | {pp(r['jitter'], 2)} | {loss} | "
                     f"{pp(r['test_acc'], 2)}% |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _span(values: Sequence[float], scale: float = 100, digits: int = 1) -> str:
    lo, hi = f"{min(values) * scale:.{digits}f}", f"{max(values) * scale:.{digits}f}"
    return lo if lo == hi else f"{lo} to {hi}"


def group_discussion(results, names: Sequence[str]) -> str:
    """A paragraph on the group's curves against the baseline's, every number from the results:
    the train/val gap at the last epoch, the speed of convergence, the jitter of the last
    epochs, and whether test loss and test accuracy moved the same way."""
    rows = curve_rows(results, names)
    base = next((r for r in rows if r["name"] == "baseline"), None)
    rest = [r for r in rows if r["name"] != "baseline"]
    if base is None or not rest:
        return "*No discussion: the group or the baseline has no finished run.*\n"
    thr = threshold_for(results)
    table = curve_table(rows, thr)
    s = []
    gaps = [r["gap"] for r in rest if r["gap"] is not None]
    trains = [r["train"] for r in rest if r["train"] is not None]
    if base["gap"] is not None and gaps:
        smaller = sum(g < base["gap"] for g in gaps)
        s.append(
            f"*Overfitting.* At the last epoch the baseline fits its training images to "
            f"{pp(base['train'])}% against {pp(base['val'])}% on validation, a gap of "
            f"{pp(base['gap'])} pp; this group ends at {_span(trains)}% train accuracy with gaps "
            f"of {_span(gaps)} pp ({smaller} of {len(gaps)} below the baseline's)."
        )
        if smaller == len(gaps) and min(base["gap"] - g for g in gaps) > 0.02:
            s.append("Every change here keeps the network further from memorising its training "
                     "set; whether that buys validation accuracy is the next question.")  # fmt: skip
        elif smaller == 0:
            s.append("None of the changes narrows the gap.")
    if thr is not None:
        slow = [r["name"] for r in rest if r["reach"] is None]
        reached = [r for r in rest if r["reach"] is not None]
        txt = (f"*Speed.* The baseline's validation accuracy first reaches {pp(thr, 0)}% "
               f"(90% of its final value) at epoch {base['reach']:g}"
               + (" (mean of its seeds)" if base["n"] > 1 else "") if base["reach"] is not None
               else f"*Speed.* The baseline never reaches {pp(thr, 0)}%")  # fmt: skip
        if reached:
            txt += "; " + ", ".join(f"{r['name']} at {r['reach']:g}" for r in reached)
        if slow:
            txt += f"; {', '.join(slow)} never do within {rest[0]['epochs']} epochs"
        s.append(txt + ".")
    jit = [r["jitter"] for r in rest if r["jitter"] is not None]
    if base["jitter"] is not None and jit:
        s.append(
            f"*Stability.* Over the last {LAST_K} epochs the baseline's validation accuracy "
            f"varies with a std of {pp(base['jitter'], 2)} pp, this group's with "
            f"{_span(jit, digits=2)} pp"
            + (": a reading of one epoch is uncertain by about that much, more than some of "
               "the differences in the table above." if max(jit) > 2 * base["jitter"] else ".")
        )  # fmt: skip
    both_down, mixed_up, better, worse = [], [], [], []
    for r in rest:
        if None in (r["test_loss"], r["test_acc"], base["test_loss"], base["test_acc"]):
            continue
        loss_down = r["test_loss"] < base["test_loss"]
        acc_up = r["test_acc"] > base["test_acc"]
        if loss_down == acc_up:
            (better if acc_up else worse).append(r["name"])
        else:
            (both_down if loss_down else mixed_up).append(r["name"])
    if both_down:
        s.append(
            f"*Test loss against test accuracy.* {', '.join(both_down)}: the test loss is lower "
            f"than the baseline's ({base['test_loss']:.4f}) while the test accuracy is lower too. "
            "Cross-entropy also rewards confidence: the baseline, at near-100% train accuracy, "
            "is very confident on the test images it gets wrong, which costs loss but not "
            "accuracy; a less over-confident model can have a lower loss and still classify "
            "fewer images correctly."
        )
    if mixed_up:
        s.append(f"{', '.join(mixed_up)}: test loss higher and test accuracy higher than the "
                 "baseline's.")  # fmt: skip
    if better:
        s.append(f"{', '.join(better)}: lower test loss and higher test accuracy than the "
                 "baseline's.")  # fmt: skip
    if worse:
        s.append(f"{', '.join(worse)}: higher test loss and lower test accuracy than the "
                 "baseline's.")  # fmt: skip
    return table + "\n" + " ".join(s) + "\n"  # the table, then the paragraph


def group_conclusion(rows: Sequence[Mapping], names: Sequence[str]) -> str:
    """What the verdicts allow one to say about the group."""
    picked = [r for r in rows if r["name"] in names and r.get("verdict")]
    if not picked:
        return "*Nothing to conclude: no run of this group finished.*\n"
    base = next((r for r in rows if r["name"] == "baseline"), None)
    found = [r for r in picked if r["verdict"] in ("better", "worse", "within noise")]
    small = [r for r in picked if r["verdict"] == "n too small"]
    out = []
    for r in found:
        d = r["vs_baseline"]
        out.append(f"**{r['name']}** is {r['verdict']} ({100 * d['diff']:+.2f} pp test accuracy, "
                   f"95% interval [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}], n = {d['n_a']} vs "
                   f"{d['n_b']}).")  # fmt: skip
    if small:
        diffs = ", ".join(f"{r['name']} {100 * r['vs_baseline']['diff']:+.2f} pp"
                          for r in small if r.get("vs_baseline") and r["vs_baseline"]["diff"] is not None)  # fmt: skip
        ns = sorted({r["test_acc"]["n"] for r in small})
        bn = base["test_acc"]["n"] if base else 0
        spread = ""
        if base and base["test_acc"]["std"] is not None:
            spread = (f" For scale: the baseline's own {bn} seeds differ with a std of "
                      f"{100 * base['test_acc']['std']:.2f} pp, and a one-seed run's spread is "
                      "not known at all.")  # fmt: skip
        out.append(
            f"**The data cannot decide** for {', '.join(r['name'] for r in small)}: "
            f"n = {'/'.join(map(str, ns))} against the baseline's {bn}, so there is no interval "
            f"and no verdict. The differences in mean test accuracy ({diffs}) are single "
            f"readings, not effects.{spread}"
        )
    return " ".join(out) + "\n"


# ---------------------------------------------------------------- the final recipe


def final_recipe(results, rows, final_change: Mapping, base_cfg: Mapping, why: Mapping,
                 groups: Mapping[str, Mapping], lr_range: Mapping | None = None) -> str:  # fmt: skip
    """One line per setting the final run changes: baseline value, final value, and the evidence:
    the grid's FINAL_WHY if it gives one, else the grid run that made the same change (with its
    verdict), else the paper it rests on, marked untested here."""
    by_name = {r["name"]: r for r in rows}
    lines = ["| setting | baseline | final | evidence |", "|---|---|---|---|"]
    for key, value in final_change.items():
        runs = [n for g, exps in groups.items() if g not in ("final", "baseline")
                for n, ch in exps.items() if ch.get(key) == value]  # fmt: skip
        evidence = []
        if why.get(key):
            evidence.append(clean(why[key]))
        for n in runs:
            r = by_name.get(n)
            if r is not None:
                d = r.get("vs_baseline") or {}
                diff = "" if d.get("diff") is None else f", {100 * d['diff']:+.2f} pp"
                evidence.append(f"run `{n}`: {r['verdict']} (n = {r['test_acc']['n']}{diff})")
        if not why.get(key) and not any(n in by_name for n in runs):
            unrun = [n for n in runs if n not in by_name]
            evidence.append("untested here" + (f" (`{'`, `'.join(unrun)}` did not run)" if unrun else "")
                            + f"; rests on {PAPERS.get(key, 'no cited source')}")  # fmt: skip
        lines.append(f"| `{key}` | {base_cfg.get(key)} | {value} | {'; '.join(evidence)} |")
    out = "\n".join(lines) + "\n"
    notes = []
    final = by_name.get("final")
    if final and final.get("vs_baseline") and final["vs_baseline"]["diff"] is not None:
        fe = final_change.get("epochs", base_cfg.get("epochs"))
        notes.append(
            f"The final run differs from the baseline in {len(final_change)} settings at once "
            f"({fe} epochs against {base_cfg.get('epochs')}), so its difference of "
            f"{100 * final['vs_baseline']['diff']:+.2f} pp in test accuracy (n = "
            f"{final['test_acc']['n']} vs {by_name.get('baseline', {}).get('test_acc', {}).get('n', 0)}"
            f", verdict: {final['verdict']}) credits the recipe as a whole, not any one change, "
            "and not at equal training time."
        )
    if lr_range and final_change.get("max_lr"):
        s = lr_range["suggestion"]
        bs = lr_range.get("config", {}).get("batch_size")
        ratio = final_change["max_lr"] / s["max_lr"]
        notes.append(
            f"The peak lr {final_change['max_lr']:g} is {ratio:.0f} times the LR range test's "
            f"suggested max_lr ({s['max_lr']:.3g}, lowest smoothed loss at {s['min_loss_lr']:.3g})"
            + (f", which was measured at batch {bs} with the baseline's settings (no "
               f"normalization, no augmentation), not at the final run's batch "
               f"{final_change.get('batch_size', bs)}" if bs else "")
            + ". The range test's suggestion is a conservative starting point, not a bound; the "
            "final run trained without diverging at this peak (see its curves)."
        )  # fmt: skip
    return out + ("\n" + " ".join(notes) + "\n" if notes else "")


# ---------------------------------------------------------------- what happened


_HEADER = re.compile(r"^\[(?P<name>[^\s\]]+) seed (?P<seed>\d+), profile (?P<profile>\w+)\]")


def interrupted_runs(log_dir: Path, results: Mapping) -> list[dict]:
    """Runs that a job's log shows starting but that left no results file: name, seed, the
    epochs the log holds and the lr/val acc of the last one, from <profile>/gpu_run/*.log."""
    found = []
    for log in sorted(Path(log_dir).glob("*.log")):
        current = None
        for line in log.read_text(errors="replace").splitlines():
            if m := _HEADER.match(line):
                current = {"name": m["name"], "seed": int(m["seed"]), "epochs": 0,
                           "val_acc": None, "log": log.name}  # fmt: skip
                found.append(current)
            elif current and line.startswith("Epoch:"):
                current["epochs"] += 1
            elif current and line.startswith("Val loss:") and "Val acc:" in line:
                current["val_acc"] = float(line.rsplit("Val acc:", 1)[1])
    saved = {(n, r.get("seed")) for n, rs in results.items() for r in rs}
    # A run is counted once (a log may show it replayed and rerun), at its longest attempt.
    best: dict[tuple, dict] = {}
    for f in found:
        key = (f["name"], f["seed"])
        if key not in saved and (key not in best or f["epochs"] > best[key]["epochs"]):
            best[key] = f
    return list(best.values())


def _deadline(log_dir: Path) -> str:
    grid_log = Path(log_dir) / "grid.log"
    if not grid_log.is_file():
        return ""
    text = grid_log.read_text(errors="replace")
    m = re.search(r"grid starts with (\d+)s left of (\d+)s", text)
    e = re.search(r"grid ended after (\d+)s", text)
    if not m:
        return ""
    return (
        f" The job had a deadline of {m[2]} s of which {m[1]} s were left for training "
        f"when the grid started" + (f"; it ended after {e[1]} s" if e else "") + "."
    )


def difficulties(results, results_dir, profile: str, epochs_of: Mapping[str, int]) -> list[str]:
    """Bullets of what really happened, from the results files and the job's logs."""
    runs = [r for rs in results.values() for r in rs]
    out = []
    diverged = [(n, r) for n, rs in results.items() for r in rs if r.get("status") == "diverged"]
    if diverged:
        out.append("**Runs diverged.** " + "; ".join(
            f"{n} seed {r.get('seed')}: {clean(r.get('message') or 'non-finite loss')}"
            for n, r in diverged) + ". They are counted and left out of the means.")  # fmt: skip
    else:
        out.append(f"**No run diverged.** All {len(runs)} saved runs of the {profile} profile "
                   "have status ok (the training loop would stop a run on a non-finite loss "
                   "and save it as `diverged`; it never had to).")  # fmt: skip
    log_dir = Path(results_dir) / profile / "gpu_run"
    stopped = interrupted_runs(log_dir, results) if log_dir.is_dir() else []
    if stopped:
        parts = [f"{s['name']} seed {s['seed']} after {s['epochs']} of "
                 f"{epochs_of.get(s['name'], '?')} epochs" for s in stopped]  # fmt: skip
        out.append("**The GPU session ran out of time.** The job's logs (`gpu_run/`) show "
                   f"{len(stopped)} runs started and stopped before their end, so they left no "
                   f"results: {'; '.join(parts)}." + _deadline(log_dir)
                   + " The finished runs were saved; the others can be resumed with "
                   "`python experiments.py run ... --resume`.")  # fmt: skip
    notes = sorted({r.get("env", {}).get("note") for r in runs} - {None, ""})
    if notes:
        out.append("**Shared device.** " + "; ".join(clean(n) for n in notes)
                   + ": the seconds per epoch were measured under that contention, so they "
                   "compare runs of this job with each other, not with a run alone.")  # fmt: skip
    sources = sorted({clean(r.get("data", "unknown")) for r in runs})
    if any("jpeg" in s.lower() for s in sources):
        out.append(f"**The data is a lossy JPEG copy** ({'; '.join(sources)}): the machines have "
                   "no internet, so the runs used an offline copy of CIFAR-10 re-encoded as JPEG. "
                   "Its pixels differ slightly from the official release, so the accuracies are "
                   "close to, not the same as, figures on the official data.")  # fmt: skip
    n_one = [n for n, rs in results.items() if len(rs) == 1]
    if n_one:
        out.append(f"**One seed for most runs.** {len(n_one)} of {len(results)} experiments have "
                   f"a single seed ({', '.join(n_one)}); the comparisons above can only show their "
                   "values, not decide.")  # fmt: skip
    return out
