"""Tables of `lab.stats`' rows: markdown for the notebook and the terminal, csv for a
spreadsheet. Formatting only: the numbers are computed in stats.py."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

from engine.errors import LabError

# Column key -> header, in display order; a table shows the keys its rows have.
COLUMNS = {
    "name": "experiment",
    "group": "group",
    "batch_size": "batch",
    "lr": "lr",
    "warmup_epochs": "warm-up epochs",
    "steps_per_epoch": "steps/epoch",
    "status": "runs",
    "sec_per_epoch": "s/epoch",
    "images_per_sec": "images/s",
    "peak_mem_mb": "peak GPU MB",
    "last_val_acc": "val acc last (%)",
    "best_val_acc": "val acc best (%)",
    "test_acc": "test acc (%)",
    "test_loss": "test loss",
    "vs_baseline": "vs baseline [95% CI]",
    "verdict": "verdict",
}
# Decimals per column, after accuracies are turned into percent.
_DIGITS = {
    "sec_per_epoch": 2,
    "images_per_sec": 0,
    "peak_mem_mb": 0,
    "last_val_acc": 2,
    "best_val_acc": 2,
    "test_acc": 2,
    "test_loss": 4,
}


def _scale(key: str) -> float:
    return 100.0 if key.endswith("acc") else 1.0


def _cell(key: str, value, runs: int | None = None) -> str:
    """One cell's text; a mean over fewer than the row's `runs` finished runs says its n."""
    if key == "verdict" and value == "":
        return "(reference)"
    if key == "verdict" and runs == 0:
        return "none finished"  # not a question of sample size
    if value is None:
        return "" if key == "vs_baseline" else "n/a"
    if key == "status":
        if not value["ok"] and value["diverged"]:
            return f"{value['diverged']} diverged"
        return f"{value['ok']} ok" + (
            f" + {value['diverged']} diverged" if value["diverged"] else ""
        )
    if key == "vs_baseline":
        metric = value.get("metric", "test_acc")
        f, unit = _scale(metric), " pp" if metric.endswith("acc") else ""
        digits = _DIGITS.get(metric, 4)
        if value["diff"] is None:
            return "n/a"
        text = f"{value['diff'] * f:+.{digits}f}{unit}"
        if value["lo"] is None:
            return text  # no interval: the verdict column says n too small
        if value["lo"] == value["hi"]:
            return text + " (no spread measured)"
        return text + f" [{value['lo'] * f:+.{digits}f}, {value['hi'] * f:+.{digits}f}]"
    if isinstance(value, Mapping):  # {"mean", "std", "n"}
        if value["n"] == 0 or value["mean"] is None:
            return "n/a"
        f, digits = _scale(key), _DIGITS.get(key, 4)
        text = f"{value['mean'] * f:.{digits}f}"
        if value["std"] is not None:
            text += f" ± {value['std'] * f:.{digits}f}"
        return text + ("" if value["n"] == runs else f" ({value['n']})")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _csv_fields(key: str, value) -> dict:
    if key == "status":
        return {"ok": value["ok"], "diverged": value["diverged"]}
    if key == "vs_baseline":
        v = value or {}
        return {f"diff_{k}": v.get(k) for k in ("diff", "lo", "hi", "df", "method")}
    if isinstance(value, Mapping):
        return {f"{key}_{k}": value[k] for k in ("mean", "std", "n")}
    if value is None and key in ("peak_mem_mb", "images_per_sec"):
        return {f"{key}_{k}": None for k in ("mean", "std", "n")}
    return {key: value}


def format_table(rows: Sequence[Mapping], fmt: str = "markdown", skip: Sequence[str] = ()) -> str:
    """Rows of `summarize` or `batch_table` as a table string, without the columns in `skip`.

    "markdown": "mean ± std" cells over the runs the "runs" column counts as ok (another n in
    brackets), accuracies in percent, differences in percentage points with their 95% interval;
    shows in a notebook (`IPython.display.Markdown`) and in a terminal.
    "csv": the raw numbers (mean, std and n in separate columns) for a spreadsheet.
    """
    if fmt not in ("markdown", "csv"):
        raise LabError(f"unknown table format {fmt!r}; choose markdown or csv")
    keys = [k for k in COLUMNS if k not in skip and any(k in r for r in rows)]
    if fmt == "csv":
        records = [{f: v for k in keys for f, v in _csv_fields(k, r.get(k)).items()} for r in rows]
        fields = list(dict.fromkeys(f for rec in records for f in rec))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue()
    table = [[COLUMNS[k] for k in keys]] + [
        [_cell(k, r.get(k), r.get("status", {}).get("ok")) for k in keys] for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(keys))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in table]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    notes = [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
