"""Tables of `lab.stats`' rows: markdown for the notebook and the terminal, csv for a
spreadsheet; and the notebook's other Markdown tables (a run's epochs, how runs ended, the two
stems). Formatting only: the numbers are computed in stats.py or read from the results."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

from engine.errors import LabError

# What each verdict of stats.summarize means, in the words the notebook prints.
VERDICTS = {
    "better": "the whole 95% interval of the difference is above 0",
    "worse": "the whole interval is below 0",
    "within noise": "the interval contains 0: no difference shown",
    "n too small": "fewer than 2 seeds on a side, so the seed-to-seed spread is unknown",
    "no spread measured": "the seeds on each side scored exactly alike: a zero-width interval "
    "measures no noise, so it is no evidence",
}

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


def epoch_table(result: dict, epochs: list[int]) -> str:
    """Markdown: the lr, losses and accuracies of one run at the given epochs (1-based)."""
    h = result["history"]
    rows = ["| epoch | lr | train loss | train acc | val loss | val acc |", "|" + " ---: |" * 6]
    for e in sorted({e for e in epochs if 1 <= e <= len(h["train_loss"])}):
        i = e - 1
        rows.append(
            f"| {e} | {h['lr'][i]:.4g} | {h['train_loss'][i]:.4f} | {h['train_acc'][i]:.4f} | "
            f"{h['val_loss'][i]:.4f} | {h['val_acc'][i]:.4f} |"
        )
    return "\n".join(rows)


def ending_table(runs: dict[str, list[dict]]) -> str:
    """Markdown: how each experiment's finished runs ended, as means over their seeds: the
    learning rate of the last epoch, the training accuracy there, and the validation loss at
    its lowest (with each seed's epoch) and at the last epoch. A validation loss that climbs
    from its lowest while the training accuracy nears 1 is overfitting."""
    rows = [
        "| experiment | seeds | lr, last epoch | train acc, last | val loss, lowest (epoch) "
        "| val loss, last |",
        "| --- |" + " ---: |" * 5,
    ]
    for name, rs in runs.items():
        hs = [r["history"] for r in rs if r.get("status") == "ok"]
        if not hs:
            continue
        lows = [min(h["val_loss"]) for h in hs]
        epochs = ", ".join(str(h["val_loss"].index(low) + 1) for h, low in zip(hs, lows))
        rows.append(
            f"| {name} | {len(hs)} | {hs[0]['lr'][-1]:.3g} "
            f"| {sum(h['train_acc'][-1] for h in hs) / len(hs):.4f} "
            f"| {sum(lows) / len(lows):.4f} ({epochs}) "
            f"| {sum(h['val_loss'][-1] for h in hs) / len(hs):.4f} |"
        )
    return "\n".join(rows)


def output_shapes(model, size: int = 32) -> dict[str, tuple]:
    """(C, H, W) at the output of each top-level module for one size x size image."""
    import torch

    shapes: dict[str, tuple] = {}
    hooks = [
        m.register_forward_hook(
            lambda m, i, o, name=name: shapes.update({name: tuple(o.shape[1:])})
        )
        for name, m in model.named_children()
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return shapes


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def stem_table(cifar, imagenet) -> str:
    """Markdown: each top-level module's parameters and output shape under both stems."""
    a, b = output_shapes(cifar), output_shapes(imagenet)
    rows = [
        "| module | parameters | CIFAR stem: output (C, H, W) | ImageNet stem: output |",
        "| --- | ---: | --- | --- |",
    ]
    rows += [f"| `{n}` | {n_params(m):,} | {a[n]} | {b[n]} |" for n, m in cifar.named_children()]
    return "\n".join(rows)


def conclude(rows: list[dict]) -> str:
    """Sentences (Markdown) built from a table's rows: what each verdict allows one to say.

    Only "better"/"worse" (both sides 2+ seeds, the whole 95% Welch interval on one side of 0)
    are findings; an "n too small" row's difference is quoted as a value, not as an effect.
    """

    def acc(r):
        t = r["test_acc"]
        return f"{100 * t['mean']:.2f}% (n = {t['n']})"

    base = next((r for r in rows if r["name"] == "baseline"), None)
    rest = [r for r in rows if r["name"] != "baseline" and r["test_acc"]["mean"] is not None]
    if not rest:
        return "*No finished runs to compare.*"
    text = []
    for verdict, why in VERDICTS.items():
        names = [r["name"] for r in rest if r["verdict"] == verdict]
        if names:
            text.append(f"- {verdict} ({why}): {', '.join(names)}")
    small = [r for r in rest if r["verdict"] == "n too small"]
    if small and len(small) == len(rest):
        best = max(rest, key=lambda r: r["test_acc"]["mean"])
        text.append(
            f"- The data cannot decide whether any of these changes helps: the highest value, "
            f"{best['name']} at {acc(best)}"
            + (f" against the baseline's {acc(base)}" if base and base["test_acc"]["n"] else "")
            + ", is one reading, not a finding."
        )
    if small:
        text.append("- Two more seeds of each run would decide those.")
    return "\n".join(text)
