"""The report's computed text: tables and sentences whose every number comes from a results file
or from running resnet18.py. Pure functions returning Markdown; nothing here draws or writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from engine.stats import format_table
from resnet18 import resnet18

PREVIEW_PROFILES = ("smoke", "quick")  # scaled-down grids: previews, never the real results
TARGET_ACC = 0.90  # the lab's goal on the test set


def pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- where the numbers come from


def hardware(env: Mapping) -> str:
    """One line for the machine a run used, from its saved env."""
    if env.get("gpu"):
        where = f"GPU {env['gpu']}"
    else:
        where = f"CPU {env.get('cpu', '')} ({env.get('cpu_threads', '?')} threads)".replace(
            "CPU  (", "CPU ("
        )
    libs = f"torch {env.get('torch', '?')}, torchvision {env.get('torchvision', '?')}, " + (
        f"Python {env.get('python', '?')}"
    )
    note = f"; {env['note']}" if env.get("note") else ""
    return f"{where}; {libs}{note}"


def provenance(results: Mapping[str, Sequence[Mapping]]) -> dict:
    """Profile, data, hardware and time span of a set of results (each a sorted, unique list)."""
    runs = [r for rs in results.values() for r in rs]
    finished = sorted(r["finished_at"] for r in runs if r.get("finished_at"))
    return {
        "profile": runs[0].get("profile") if runs else None,
        "n_runs": len(runs),
        "n_experiments": len(results),
        "seeds": sorted({r.get("seed") for r in runs if r.get("seed") is not None}),
        "data": sorted({str(r.get("data", "unknown")) for r in runs}),
        "hardware": sorted({hardware(r.get("env", {})) for r in runs}),
        "first_finished": finished[0] if finished else "unknown",
        "last_finished": finished[-1] if finished else "unknown",
        "commands": sorted({r["command"] for r in runs if r.get("command")}),
    }


def runs_table(results: Mapping[str, Sequence[Mapping]]) -> str:
    """Every run: name, seed, status, test accuracy, wall time, when it finished."""
    rows = []
    for name, runs in results.items():
        for r in runs:
            wall = r.get("wall_seconds")
            rows.append([name, r.get("seed"), r.get("status", "?"), pct(r.get("test_acc")),
                         "n/a" if wall is None else f"{wall:.1f}", r.get("finished_at", "?")])  # fmt: skip
    return _md_table(["run", "seed", "status", "test acc", "wall s", "finished (UTC)"], rows)


# ---------------------------------------------------------------- comparisons


def summary_table(rows: Sequence[Mapping], names: Sequence[str], drop=("group",)) -> str:
    """stats.format_table of the rows of `names` (in their order), less the `drop` columns."""
    by_name = {r["name"]: r for r in rows}
    picked = [{k: v for k, v in by_name[n].items() if k not in drop} for n in names if n in by_name]
    return format_table(picked) if picked else ""


def norm_stats_table(results: Mapping[str, Sequence[Mapping]], names: Sequence[str]) -> str:
    """The mean and std each normalization run used (its first seed), as (x - mean) / std."""
    rows = []
    for name in names:
        if name not in results or not results[name][0].get("norm_stats"):
            continue
        ns = results[name][0]["norm_stats"]
        mean, std = ns["mean"], ns["std"]
        if ns["mode"] == "minmax":  # stored as centre and half-range: show the range it maps
            meaning = "maps [" + ", ".join(f"{m - s:.3f}..{m + s:.3f}" for m, s in zip(mean, std))
            meaning += "] (R, G, B) to [-1, 1]"
        elif ns["mode"] == "none":
            meaning = "pixels / 255, in [0, 1]"
        else:
            meaning = "zero mean, unit variance per channel"
        rows.append([name, ns["mode"], _triple(mean), _triple(std), meaning])
    return _md_table(["run", "mode", "mean (R, G, B)", "std (R, G, B)", "effect"], rows)


def _triple(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.4f}" for x in v) + ")"


def sampled_vs_exact(results: Mapping[str, Sequence[Mapping]]) -> str:
    """How far the lab's sampled statistics (30% of the images) are from the exact ones."""
    try:
        s = results["norm_std_sampled"][0]["norm_stats"]
        e = results["norm_std_exact"][0]["norm_stats"]
    except (KeyError, IndexError):
        return ""
    dm = max(abs(a - b) for a, b in zip(s["mean"], e["mean"]))
    ds = max(abs(a - b) for a, b in zip(s["std"], e["std"]))
    return (f"The sampled statistics differ from the exact ones by at most {dm:.5f} in the mean "
            f"and {ds:.5f} in the std (on the [0, 1] scale).")  # fmt: skip


def verdict_lines(rows: Sequence[Mapping], names: Sequence[str] | None = None) -> str:
    """One bullet per verdict kind, naming the experiments; only stats' verdicts make claims."""
    picked = [r for r in rows if r.get("verdict") and (names is None or r["name"] in names)]
    out = []
    for r in picked:
        if r["verdict"] in ("better", "worse"):
            d = r["vs_baseline"]
            out.append(
                f"- **{r['name']}**: {r['verdict']} than the baseline, {100 * d['diff']:+.2f} pp "
                f"test accuracy, 95% interval [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}] "
                f"(n = {d['n_a']} vs {d['n_b']})."
            )
    noise = [r["name"] for r in picked if r["verdict"] == "within noise"]
    small = [r["name"] for r in picked if r["verdict"] == "n too small"]
    other = [f"{r['name']} ({r['verdict']})" for r in picked
             if r["verdict"] not in ("better", "worse", "within noise", "n too small")]  # fmt: skip
    if noise:
        out.append("- No difference larger than the run-to-run noise (the 95% interval contains "
                   f"0): {', '.join(noise)}.")  # fmt: skip
    if small:
        out.append("- Too few seeds to tell (run `--seeds 3` or more): " + ", ".join(small) + ".")
    if other:
        out.append("- Not compared: " + ", ".join(other) + ".")
    return "\n".join(out) + ("\n" if out else "")


def diverged_lines(results: Mapping[str, Sequence[Mapping]]) -> str:
    """The runs that ended with a non-finite loss, with the message the training loop wrote."""
    out = [f"- {name} seed {r.get('seed')}: {r.get('message') or 'diverged'}"
           for name, runs in results.items() for r in runs if r.get("status") == "diverged"]  # fmt: skip
    return "\n".join(out) + ("\n" if out else "")


# ---------------------------------------------------------------- the model


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _shapes(model: torch.nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of each top-level module for one size x size image."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:])))
             for n, m in model.named_children()]  # fmt: skip
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return shapes


def architecture(run_width: int | None = None) -> dict:
    """The stage table and parameter counts, computed by building resnet18.py's models."""
    cifar, imnet = resnet18(stem="cifar"), resnet18(stem="imagenet")
    sc, si = _shapes(cifar, 32), _shapes(imnet, 224)

    def size(shape: tuple[int, ...]) -> str:
        return f"{shape[0]} x {shape[1]} x {shape[2]}" if len(shape) == 3 else f"{shape[0]}"

    paper = {"conv1": "conv1", "maxpool": "max pool", "layer1": "conv2_x", "layer2": "conv3_x", "layer3": "conv4_x",
             "layer4": "conv5_x", "avgpool": "avg pool", "fc": "fc"}  # fmt: skip
    rows = []
    for name, module in cifar.named_children():
        if name not in paper:
            continue
        blocks = len(module) if isinstance(module, torch.nn.Sequential) else ""
        stride = getattr(module[0].conv1, "stride", ("",))[0] if blocks else ""
        cifar_size = size(sc[name])
        if isinstance(module, torch.nn.Identity):  # the CIFAR stem has no max-pool
            cifar_size = f"none ({cifar_size})"
        rows.append([paper[name], f"`{name}`", blocks, stride, cifar_size, size(si[name]),
                     f"{_params(module):,}"])  # fmt: skip
    table = _md_table(
        ["paper", "module", "blocks", "stride", "CIFAR stem, 32x32 in", "ImageNet stem, 224x224 in",
         "parameters (CIFAR, width 64)"],
        rows,
    )  # fmt: skip
    out = {
        "stage_table": table,
        "params_cifar": _params(cifar),
        "params_imagenet": _params(imnet),
        "conv1_cifar": _params(cifar.conv1),
        "conv1_imagenet": _params(imnet.conv1),
        "projections": sum(
            1 for m in cifar.modules() if getattr(m, "downsample", None) is not None
        ),
        "blocks": sum(len(getattr(cifar, f"layer{i}")) for i in range(1, 5)),
        "run_width": run_width,
        "params_run": _params(resnet18(width=run_width)) if run_width else None,
    }
    return out


# ---------------------------------------------------------------- the final model


def per_class(conf) -> list[tuple[str, float]]:
    """(class index as str, accuracy) from a confusion matrix, worst first."""
    accs = [(i, row[i] / max(1, sum(row))) for i, row in enumerate(conf.tolist())]
    return sorted(accs, key=lambda t: t[1])


def target_sentence(acc: float | None, std: float | None, n: int) -> str:
    """Whether the measured test accuracy reached the lab's 90%: a fact, with its spread."""
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return "No finished run, so no test accuracy."
    spread = f" ± {100 * std:.2f}" if std is not None else ""
    got = f"{100 * acc:.2f}{spread}% test accuracy over {n} run{'s' if n != 1 else ''}"
    if acc >= TARGET_ACC:
        return f"{got}: the lab's {TARGET_ACC:.0%} target is reached."
    return f"{got}: below the lab's {TARGET_ACC:.0%} target."
