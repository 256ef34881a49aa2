"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates for Training Neural
Networks", section 3.3): one short run from scratch with the lr growing exponentially, the loss
smoothed by a bias-corrected moving average (fastai's `lr_find`). `suggest` reads the curve:
- min_loss_lr, where it is lowest: already the edge (the test is short, the average lags);
- max_lr = min_loss_lr / 3, a one-cycle peak: the best lr "is usually within a factor of two of
  the largest one that converges" (Bengio 2012); fastai's / 10 fell below the handout's 0.05;
- base_lr = max_lr / 4 (Smith 2015: "1/3 or 1/4 of max_lr");
- steepest_lr, the fastest fall left of the minimum (fastai's "steep"): a safe constant lr.

    python -m lab.lr_finder --profile quick  # results/quick/lr_range.json, plots/quick/lr_range.png
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import time
from pathlib import Path

import numpy as np

from engine.checkpoint import save_json
from engine.errors import LabError, run_cli
from engine.runtime import choose_precision, environment, pick_device, set_lr, train_step
from lab import grid
from train_utils import build_loaders, make_model, make_optimizer, seed_everything

SMOOTHING = 0.95  # EMA weight of the past (torch-lr-finder's smooth_f=0.05): ~20-step memory
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss is 4x its best so far (fastai, torch-lr-finder)
MAX_LR_DIVISOR = 3.0  # max_lr = lowest-loss lr / 3 (see the module docstring)
BASE_LR_DIVISOR = 4.0  # base_lr = max_lr / 4 (see the module docstring)
MIN_LR, MAX_LR = 1e-5, 10.0  # the range tried
DEFAULT_STEPS = {"full": 100, "cpu": 100, "quick": 100, "smoke": 40}  # fastai's num_it; smoke: ~40


def _check_range(min_lr: float, max_lr: float, steps: int) -> None:
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise LabError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if steps < 3:
        raise LabError(f"the range test needs at least 3 steps, got {steps}")


def lr_range_test(cfg, data, device=None, min_lr=MIN_LR, max_lr=MAX_LR, steps=100):
    """The range test of `cfg`'s model, from scratch, up to `steps` steps: a JSON-safe dict."""
    _check_range(min_lr, max_lr, steps)
    device = pick_device(device)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    prec = choose_precision(device, "auto")
    (train_dl, _, _), norm = build_loaders(cfg, data, device, channels_last=prec.channels_last)
    model = make_model(cfg, device, prec).train()
    opt, scaler = make_optimizer(cfg, model), prec.scaler()

    lrs, losses, smoothed = [], [], []
    avg, best, stop_reason = 0.0, math.inf, ""
    batches = (b for epoch in itertools.count() for b in train_dl.batches(epoch))
    for i in range(steps):
        lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))
        set_lr(opt, lr)
        x, y = next(batches)
        _, loss = train_step(model, opt, x, y, prec, scaler, cfg.label_smoothing)
        value = loss.item()  # one sync per step: the test is short and needs every value
        if not math.isfinite(value):
            stop_reason = f"non-finite loss at lr {lr:.3g} (step {i + 1})"
            break
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        smooth = avg / (1 - SMOOTHING ** (i + 1))  # bias correction (Adam's, Kingma & Ba 2015)
        lrs.append(lr)
        losses.append(value)
        smoothed.append(smooth)
        best = min(best, smooth)
        if smooth > DIVERGE_FACTOR * best:
            stop_reason = f"smoothed loss {smooth:.3g} > {DIVERGE_FACTOR:g}x its best, lr {lr:.3g}"
            break

    out = dict(lrs=lrs, losses=losses, smoothed=smoothed, suggestion=suggest(lrs, smoothed))
    out.update(stopped_early=bool(stop_reason), stop_reason=stop_reason, min_lr=min_lr)
    out.update(max_lr=max_lr, steps=steps, smoothing=SMOOTHING, config=dataclasses.asdict(cfg))
    out.update(name=cfg.name, data=data.source, env={**environment(device), **prec.record()})
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())  # as the grid's finished_at
    return out | dict(norm_stats=norm, seconds=time.perf_counter() - t_start, finished_at=now)


def suggest(lrs, smoothed) -> dict:
    """The suggested lrs (module docstring) within [lrs[0], lrs[-1]], and a warning ("" if none)."""
    if len(lrs) < 3:
        raise LabError(f"the loss blew up after only {len(lrs)} steps: lower min_lr or more steps")
    lrs, smoothed = np.asarray(lrs, dtype=float), np.asarray(smoothed, dtype=float)
    i_min = int(np.argmin(smoothed))
    # Slope per unit of log(lr): the curve is plotted, and read, on a log axis. Skip the first
    # tenth, where the average has seen only a few losses (torch-lr-finder skips 10 points).
    slope = np.gradient(smoothed, np.log(lrs))
    start = min(len(lrs) // 10, i_min)
    i_steep = start + int(np.argmin(slope[start : i_min + 1]))
    warning = {
        0: "the smoothed loss never fell below its start: more steps or a lower min_lr",
        len(lrs) - 1: "the loss was still falling at the largest lr tried: raise max_lr or steps",
    }.get(i_min, "")
    max_lr = max(lrs[i_min] / MAX_LR_DIVISOR, lrs[0])
    return {
        "max_lr": float(max_lr),
        "base_lr": float(max(max_lr / BASE_LR_DIVISOR, lrs[0])),
        "steepest_lr": float(lrs[i_steep]),
        "min_loss_lr": float(lrs[i_min]),
        "warning": warning,
    }


def _said(s: dict) -> str:
    return (
        f"lowest loss at lr {s['min_loss_lr']:.3g}, steepest fall at {s['steepest_lr']:.3g} -> "
        f"max_lr {s['max_lr']:.3g}, base_lr {s['base_lr']:.3g}"
        + (f" [{s['warning']}]" if s["warning"] else "")
    )


def lr_range(lab, base_cfg) -> dict | None:
    """The notebook's range test of `base_cfg`, replayed or run, printed beside the grid's rates."""
    path = Path(lab.results_dir) / lab.profile / "lr_range.json"
    result, problem = grid.read_json(path, ("suggestion", "env", "lrs"))
    if path.exists() and result is None:
        print(f"warning: skipping {path}: {problem}; delete it to run the test again")
    if result is not None and not lab.force:
        print(f"[LR range test: replaying results/{lab.profile}/lr_range.json]")
    elif lab.train_missing or lab.force:
        result = lr_range_test(base_cfg, lab.data, lab.device, steps=DEFAULT_STEPS[lab.profile])
        save_json(result | dict(profile=lab.profile, command="student_lab3.ipynb"), path)
    else:
        print(f"[LR range test: not run: no results/{lab.profile}/lr_range.json]")
        return None
    env = result["env"]
    print(
        f"on {env['device']} {env.get('gpu') or env.get('cpu', '')}, finished "
        f"{result.get('finished_at', '?')}: {len(result['lrs'])} steps; {_said(result['suggestion'])}"
    )
    print(f"(max_lr = lowest-loss lr / {MAX_LR_DIVISOR:g}, base_lr = max_lr / {BASE_LR_DIVISOR:g})")
    for name in ["baseline", *grid.GROUPS["lr"]]:
        cfg = grid.make_config(name, lab.profile)
        peak = f", peak {cfg.max_lr:g}" if cfg.max_lr else ""
        print(f"  the grid's {name:<12} {cfg.schedule:<9} lr {cfg.lr:g}{peak}")
    return result


def plot_lr_range(result: dict, path=None):
    """Loss against lr on a log axis, raw and smoothed, with the suggestions marked."""
    from engine.plotting import _finish, plt

    lrs, smoothed, s = result["lrs"], result["smoothed"], result["suggestion"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(lrs, result["losses"], color="0.75", lw=0.8, label="loss per step")
    ax.plot(lrs, smoothed, lw=2, label=f"smoothed (EMA {result.get('smoothing', SMOOTHING)})")
    for key, style, color, label in (
        ("min_loss_lr", ":", "C3", "lowest loss"),
        ("steepest_lr", "--", "C2", "steepest descent"),
        ("max_lr", "-", "C1", "suggested max_lr"),
        ("base_lr", "-.", "C4", "suggested base_lr"),
    ):
        ax.axvline(s[key], ls=style, color=color, label=f"{label} {s[key]:.3g}")
    # Keep the fall readable: cut the y axis a little above the start, not at the blow-up.
    top = min(max(smoothed), 1.5 * max(smoothed[: int(np.argmin(smoothed)) + 1]))
    bottom = min(min(result["losses"]), min(smoothed))
    ax.set_ylim(bottom - 0.05 * (top - bottom), top + 0.05 * (top - bottom))
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    cfg, warning = result.get("config", {}), f" ({s['warning']})" if s.get("warning") else ""
    title = f"LR range test: {cfg.get('name', '')}, batch {cfg.get('batch_size', '?')}"
    ax.set_title(f"{title}, {len(lrs)} steps{warning}", fontsize=10)
    return _finish(fig, "", path)


def main(argv: list[str] | None = None) -> int:
    from engine.data import load_cifar10  # here: tests stand in their copy
    from engine.runtime import command_line

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--profile", help="full | cpu | quick | smoke (default: full on CUDA)")
    ap.add_argument("--data-dir", help="CIFAR-10 (default: $LAB3_DATA_DIR, ./data, ../shared/data)")
    ap.add_argument("--steps", type=int, help="steps (default: 100; 40 on smoke)")
    ap.add_argument("--device", help="cuda | cpu (default: cuda if available)")
    ap.add_argument("--out", default="results", help="results folder (default: results)")
    ap.add_argument("--plots", default="plots", help="figures folder (default: plots)")
    args = ap.parse_args(argv)

    profile = args.profile or grid.default_profile()
    cfg = grid.make_config("baseline", profile)  # refuses an unknown profile
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[profile]
    _check_range(MIN_LR, MAX_LR, steps)  # before loading the data
    data = load_cifar10(args.data_dir)
    result = lr_range_test(cfg, data, args.device, steps=steps)
    json_path = Path(args.out, profile, "lr_range.json")
    png_path = Path(args.plots, profile, "lr_range.png")
    save_json(result | dict(profile=profile, command=command_line()), json_path)
    plot_lr_range(result, png_path)
    print(
        f"lr range test ({profile}, {len(result['lrs'])}/{steps} steps): "
        f"{_said(result['suggestion'])}; wrote {json_path} and {png_path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
