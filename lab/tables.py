"""The lab's Markdown tables: `lab.stats`' rows and their verdicts, epochs, endings, stems."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# stats.verdict's answers and what each means, in the words the notebook prints.
VERDICTS = {
    "better": "the whole 95% interval of the difference is above 0",
    "worse": "the whole interval is below 0",
    "within noise": "the interval contains 0: no difference shown",
    "n too small": "fewer than 2 seeds on a side, so the seed-to-seed spread is unknown",
    "no spread measured": "the seeds on each side scored exactly alike: a zero-width interval "
    "measures no noise, so it is no evidence",
}

# Column key -> (header, decimals; accuracies in percent), in display order.
COLUMNS = {
    "name": ("experiment", None),
    "group": ("group", None),
    "batch_size": ("batch", None),
    "lr": ("lr", None),
    "warmup_epochs": ("warm-up epochs", None),
    "steps_per_epoch": ("steps/epoch", None),
    "status": ("runs", None),
    "sec_per_epoch": ("s/epoch", 2),
    "images_per_sec": ("images/s", 0),
    "peak_mem_mb": ("peak GPU MB", 0),
    "last_val_acc": ("val acc last (%)", 2),
    "best_val_acc": ("val acc best (%)", 2),
    "test_acc": ("test acc (%)", 2),
    "test_loss": ("test loss", 4),
    "vs_baseline": ("vs baseline [95% CI]", None),
    "verdict": ("verdict", None),
}


def _cell(key: str, value, runs: int | None = None) -> str:
    """One cell's text; a mean over fewer than the row's `runs` finished runs says its n."""
    if key == "verdict" and value == "":
        return "(reference)"
    if key == "verdict" and runs == 0:
        return "none finished"  # not a question of sample size
    if value is None:
        return "" if key == "vs_baseline" else "n/a"
    if key == "status":
        ok, diverged = value["ok"], value["diverged"]
        if diverged and not ok:
            return f"{diverged} diverged"
        return f"{ok} ok" + (f" + {diverged} diverged" if diverged else "")
    if key == "vs_baseline":  # test accuracy, in percentage points
        if value["diff"] is None:
            return "n/a"
        lo, hi, text = value["lo"], value["hi"], f"{100 * value['diff']:+.2f} pp"
        if lo is None:
            return text  # no interval: the verdict column says n too small
        return text + (
            " (no spread measured)" if lo == hi else f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
        )
    if isinstance(value, Mapping):  # {"mean", "std", "n"}
        if value["n"] == 0 or value["mean"] is None:
            return "n/a"
        f, digits = 100.0 if key.endswith("acc") else 1.0, COLUMNS[key][1]
        text = f"{value['mean'] * f:.{digits}f}"
        if value["std"] is not None:
            text += f" ± {value['std'] * f:.{digits}f}"
        return text + ("" if value["n"] == runs else f" ({value['n']})")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_table(rows: Sequence[Mapping], skip: Sequence[str] = ()) -> str:
    """`stats` rows less the columns in `skip`: "mean ± std" (another n in brackets); notes."""
    keys = [k for k in COLUMNS if k not in skip and any(k in r for r in rows)]
    table = [[COLUMNS[k][0] for k in keys]] + [
        [_cell(k, r.get(k), r.get("status", {}).get("ok")) for k in keys] for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(keys))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in table]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    notes = [f"- {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def epoch_table(result: dict, epochs: list[int]) -> str:
    """The lr, losses and accuracies of one run at the given epochs (1-based)."""
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
    """How each experiment's finished runs ended (means over seeds): last lr and training accuracy,
    the validation loss at its lowest (each seed's epoch) and at the end: overfitting shows."""
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


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def stem_table(cifar, imagenet) -> str:
    """Each top-level module's parameters and output (C, H, W) for a 32x32 image, both stems."""
    import torch

    def shapes(model) -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        hooks = [
            m.register_forward_hook(lambda m, i, o, n=n: out.update({n: tuple(o.shape[1:])}))
            for n, m in model.named_children()
        ]
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 32, 32))
        for h in hooks:
            h.remove()
        return out

    a, b = shapes(cifar), shapes(imagenet)
    rows = [
        "| module | parameters | CIFAR stem: output (C, H, W) | ImageNet stem: output |",
        "| --- | ---: | --- | --- |",
    ]
    rows += [f"| `{n}` | {n_params(m):,} | {a[n]} | {b[n]} |" for n, m in cifar.named_children()]
    return "\n".join(rows)


def conclude(rows: list[dict]) -> str:
    """What a table's verdicts allow: only "better" and "worse" are findings; an "n too small"
    row's difference is quoted as a value, not as an effect."""

    def acc(r):
        return f"{100 * r['test_acc']['mean']:.2f}% (n = {r['test_acc']['n']})"

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
