"""Results files: what every reader relies on (one schema, checked when a file is read) and
the one reader of a profile's saved runs. lab/grid.py writes them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# What every reader of a results file relies on; a file without them is reported and skipped.
_RESULT_KEYS = {"name": str, "seed": int, "status": str, "config": dict, "history": dict}


# Optional keys a reader may use, by type (a file older than a key lacks it).
_OPTIONAL_KEYS = {
    "env": dict,
    "profile": str,
    "message": str,
    "log": list,
    "data": str,
    "experiment": str,
    "group": str,
}


def _number_or_null(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def result_problem(r) -> str | None:
    """Why a parsed results file cannot be used (None when it can)."""
    if not isinstance(r, dict):
        return "not a JSON object"
    missing = [k for k, kind in _RESULT_KEYS.items() if not isinstance(r.get(k), kind)]
    if missing:
        return f"no valid {', '.join(missing)}"
    if r["status"] not in ("ok", "diverged"):
        return f"unknown status {r['status']!r}"
    h = r["history"]
    if not all(isinstance(h.get(k), list) for k in ("epoch", "train_loss", "val_loss", "val_acc")):
        return "no per-epoch history"
    if len({len(v) for v in h.values() if isinstance(v, list)}) > 1:
        return "history lists of different lengths"
    if isinstance(r["seed"], bool) or r["seed"] < 0:
        return "no valid seed"
    if any(not isinstance(v, list) or not all(_number_or_null(x) for x in v) for v in h.values()):
        return "history values that are not lists of numbers"
    wrong = [k for k in ("test_acc", "test_loss", "wall_seconds") if not _number_or_null(r.get(k))]
    wrong += [k for k, kind in _OPTIONAL_KEYS.items() if k in r and not isinstance(r[k], kind)]
    if not all(isinstance(line, str) for line in r.get("log", []) or []):
        wrong.append("log")
    if wrong:
        return f"wrong value types for {', '.join(wrong)}"
    acc = r.get("test_acc")
    if r["status"] == "ok" and (not isinstance(acc, (int, float)) or not 0 <= acc <= 1):
        return "status ok but no test accuracy"
    return None


def read_json(path: str | Path, needs: tuple[str, ...] = ()) -> tuple[dict | None, str]:
    """(the JSON object in `path`, "") or (None, why it cannot be used: unreadable, not JSON or
    truncated, not an object, or missing one of the keys `needs`)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable: {getattr(e, 'strerror', None) or type(e).__name__}"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON, truncated? ({e.msg} at line {e.lineno})"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    missing = [k for k in needs if k not in obj]
    return (None, f"no {', '.join(missing)}") if missing else (obj, "")


def read_result(path: str | Path) -> tuple[dict | None, str]:
    """(result, "") or (None, why it cannot be used): see read_json and result_problem."""
    r, problem = read_json(path)
    problem = problem or result_problem(r)
    return (None, problem) if problem else (r, "")


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def load_results(profile: str, out: str | Path = "results", warn=_warn) -> dict[str, list[dict]]:
    """Every saved result of a profile, grouped by run name (seeds in order).

    The one reader of results files for the CLI tools and the notebook: a file that
    cannot be used (truncated, not JSON, no history, a copy whose name does not match its run)
    is reported by `warn` in one line and skipped, and the rest are still read."""
    found: dict[str, dict[int, dict]] = {}
    for p in sorted((Path(out) / profile).glob("*__seed*.json")):
        r, problem = read_result(p)
        if r is not None and p.name != f"{r['name']}__seed{r['seed']}.json":
            r, problem = None, f"holds run {r['name']} seed {r['seed']}, not what its name says"
        if r is not None and r.get("profile", profile) != profile:
            # a preview placed among full results must not pass as full (issue #27)
            r, problem = None, f"a {r.get('profile')!r} result, not {profile!r}"
        if r is None:
            warn(f"warning: skipping {p}: {problem}; delete it or rerun that run with --force")
            continue
        found.setdefault(r["name"], {})[r["seed"]] = r
    return {n: [rs[k] for k in sorted(rs)] for n, rs in found.items()}


def unfinished_runs(logs) -> dict[str, dict]:
    """The runs that training logs (the lines a run prints, in the handout's words) show
    started but not finished, as histories (epoch, lr, losses and accuracies) of the epochs
    they logged: a job cut off part-way leaves no results file, only these lines. Keyed by
    run name, with " (seed <k>)" after it for seeds other than 0."""
    runs: dict[str, dict] = {}
    for path in sorted(logs):
        name, hist = None, None
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if m := _HEADER.match(line):
                hist = None  # a replay's header ("[<name> seed <k>: replaying ...]") starts none
                if m["profile"]:
                    name = m["name"] + (f" (seed {m['seed']})" if m["seed"] != "0" else "")
                    hist = runs[name] = {k: [] for k in _CURVES}
            elif hist is None:
                continue
            elif line.startswith("Epoch:"):
                hist["epoch"].append(int(line.split()[1]))
            elif line.startswith("learning rate:"):
                hist["lr"].append(float(line.split()[-1]))
            elif line.startswith(("Train loss:", "Val loss:")):
                part = "train" if line.startswith("Train") else "val"
                loss, acc = (float(x.split(":")[1]) for x in line.split("|"))
                hist[f"{part}_loss"].append(loss)
                hist[f"{part}_acc"].append(acc)
            elif line.startswith(("Test loss:", "diverged")):
                runs.pop(name, None)  # finished: its results file holds it
                hist = None
    return {n: h for n, h in runs.items() if h["val_acc"]}


_HEADER = re.compile(r"^\[(?P<name>\S+) seed (?P<seed>\d+)(?:, profile (?P<profile>\w+))?")
_CURVES = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc")
