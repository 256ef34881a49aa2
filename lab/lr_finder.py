"""The learning-rate range test: one short run from scratch with the lr rising every step.

Smith 2015 ("Cyclical Learning Rates for Training Neural Networks", section 3.3) and Smith 2018
("A disciplined approach to neural network hyper-parameters: Part 1"): train briefly while the
learning rate grows from tiny to huge, and read good bounds off the loss curve. The loss first
stays flat (lr too small to move), then falls (the useful range), then turns ragged and blows
up (too large). Following fastai's `lr_find` and Gugger's post "How Do You Find A Good Learning
Rate" (2017), the lr grows exponentially, so every decade gets the same number of steps, and
the loss is smoothed by a bias-corrected moving average.

How the suggestion is read off the smoothed curve (`suggest`):
- min_loss_lr: where the smoothed loss is lowest. Training there is already on the edge: the
  test is short, the average lags the raw loss, and a long run needs headroom.
- max_lr = min_loss_lr / 3: "the optimum learning rate is usually within a factor of two of
  the largest one that converges" (Bengio 2012, as quoted by Smith 2015, section 3.3); a third
  leaves room for the smoothing lag and for a run 100x longer than the test. Use it as the
  peak of a one-cycle or cyclical schedule. (fastai's "lr_min" divides by 10, which on our
  quick-profile curves landed below the handout's working lr of 0.05.)
- base_lr = max_lr / 4: Smith 2015, section 3.3, "set base_lr to 1/3 or 1/4 of max_lr".
- steepest_lr: where the smoothed loss falls fastest per decade of lr, left of the minimum and
  after the first tenth of the test (fastai's "steep" suggestion); a safe constant lr, shown as
  a cross-check.

    python -m lab.lr_finder --profile quick --steps 100 --out results
    -> results/quick/lr_range.json, plots/quick/lr_range.png and one line with the suggestion.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.errors import LabError, bar_file, run_cli
from engine.runtime import (
    choose_precision,
    command_line,
    environment,
    pick_device,
    set_lr,
    train_step,
)
from train_utils import RunConfig, build_loaders, make_model, make_optimizer, seed_everything

SMOOTHING = 0.95  # EMA weight of the past (torch-lr-finder's smooth_f=0.05): ~20-step memory
DIVERGE_FACTOR = 4.0  # stop once the smoothed loss is 4x its best so far (fastai, torch-lr-finder)
MAX_LR_DIVISOR = 3.0  # max_lr = lowest-loss lr / 3 (see the module docstring)
BASE_LR_DIVISOR = 4.0  # base_lr = max_lr / 4 (Smith 2015, section 3.3: "1/3 or 1/4")
# Steps per profile: 100 is fastai's default (num_it=100); the tiny smoke net needs ~40 to dip.
DEFAULT_STEPS = {"full": 100, "cpu": 100, "quick": 100, "smoke": 40}


def _check_range(min_lr: float, max_lr: float, steps: int) -> None:
    if not (0 < min_lr < max_lr and math.isfinite(max_lr)):
        raise LabError(f"need 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if steps < 3:
        raise LabError(f"the range test needs at least 3 steps, got {steps}")


def _endless(loader):
    """The loader's batches, epoch after epoch, as long as the test needs them."""
    epoch = 0
    while True:
        yield from loader.batches(epoch)
        epoch += 1


def lr_range_test(
    cfg: RunConfig,
    data,
    device: str | torch.device | None = None,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    steps: int = 100,
    seed: int = 0,
    progress: bool = False,
    precision: str | None = "auto",
) -> dict:
    """Train `cfg`'s model from scratch for up to `steps` steps with the lr rising exponentially
    from `min_lr` to `max_lr`; stop early once the smoothed loss passes DIVERGE_FACTOR x its
    best or the loss is not finite.

    The model width, data subset, normalization, augmentation, batch size, optimizer, momentum
    and weight decay come from `cfg`; its schedule and epochs are ignored. The steps are
    train()'s (runtime.train_step) in the same `precision` (auto | bf16 | fp32), so the curve
    is the one a run would follow. Returns a JSON-safe
    dict: lrs, losses (raw, per step), smoothed, suggestion (see `suggest`), stopped_early,
    stop_reason, min_lr, max_lr, steps, smoothing, config, norm_stats, env, seconds.
    """
    _check_range(min_lr, max_lr, steps)
    cfg = dataclasses.replace(cfg, seed=seed).validate()
    device = pick_device(device)
    t_start = time.perf_counter()
    seed_everything(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    prec = choose_precision(device, precision)
    (train_dl, _, _), norm = build_loaders(cfg, data, device, channels_last=prec.channels_last)
    model = make_model(cfg, device, prec)
    model.train()
    opt = make_optimizer(cfg, model)
    scaler = prec.scaler()

    ratio = max_lr / min_lr
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    stop_reason = ""
    batches = _endless(train_dl)
    for i in tqdm(
        range(steps),
        desc="lr range test",
        disable=not progress,
        leave=False,
        file=bar_file(),
        mininterval=1.0,
        ascii=True,
    ):
        lr = min_lr * ratio ** (i / (steps - 1))
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
            stop_reason = (
                f"smoothed loss {smooth:.3g} > {DIVERGE_FACTOR:g}x its best at lr {lr:.3g}"
            )
            break

    return {
        "lrs": lrs,
        "losses": losses,
        "smoothed": smoothed,
        "suggestion": suggest(lrs, smoothed),
        "stopped_early": bool(stop_reason),
        "stop_reason": stop_reason,
        "min_lr": min_lr,
        "max_lr": max_lr,
        "steps": steps,
        "smoothing": SMOOTHING,
        "config": dataclasses.asdict(cfg),
        "norm_stats": norm,
        "env": {**environment(device), **prec.record()},
        "seconds": time.perf_counter() - t_start,
    }


def suggest(lrs, smoothed) -> dict:
    """Bounds from a range-test curve (the rules are in the module docstring).

    Returns {"max_lr", "base_lr", "steepest_lr", "min_loss_lr", "warning"}; every lr lies in
    [lrs[0], lrs[-1]]. The warning is "" unless the curve cannot support the suggestion.
    """
    if len(lrs) < 3:
        raise LabError(
            f"the range test recorded only {len(lrs)} steps before the loss blew up; "
            "lower --min-lr or raise --steps"
        )
    lrs = np.asarray(lrs, dtype=float)
    smoothed = np.asarray(smoothed, dtype=float)
    i_min = int(np.argmin(smoothed))
    # Slope per unit of log(lr): the curve is plotted, and read, on a log axis.
    slope = np.gradient(smoothed, np.log(lrs))
    # Skip the first tenth, where the average has seen only a few losses (torch-lr-finder skips
    # its first 10 points by default).
    start = min(len(lrs) // 10, i_min)
    i_steep = start + int(np.argmin(slope[start : i_min + 1]))
    warning = ""
    if i_min == 0:
        warning = "the smoothed loss never fell below its start: more steps or a lower min_lr"
    elif i_min == len(lrs) - 1:
        warning = "the loss was still falling at the largest lr tried: raise max_lr or steps"
    max_lr = max(lrs[i_min] / MAX_LR_DIVISOR, lrs[0])
    return {
        "max_lr": float(max_lr),
        "base_lr": float(max(max_lr / BASE_LR_DIVISOR, lrs[0])),
        "steepest_lr": float(lrs[i_steep]),
        "min_loss_lr": float(lrs[i_min]),
        "warning": warning,
    }


def lr_range(lab, base_cfg) -> dict | None:
    """The LR range test of `base_cfg`: replayed from results/<profile>/lr_range.json, or run
    and saved when training is allowed; its suggestion printed beside the grid's own rates."""
    from engine.checkpoint import save_json
    from lab import grid, results

    path = Path(lab.results_dir) / lab.profile / "lr_range.json"
    result, problem = results.read_json(path, ("suggestion", "env", "lrs"))
    if path.exists() and result is None:
        print(f"warning: skipping {path}: {problem}; delete it to run the test again")
    if result is not None and not lab.force:
        print(f"[LR range test: replaying results/{lab.profile}/lr_range.json]")
    elif lab.train_missing or lab.force:
        steps = DEFAULT_STEPS[lab.profile]
        result = lr_range_test(base_cfg, lab.data, lab.device, steps=steps)
        result.update(
            name="baseline",
            profile=lab.profile,
            data=lab.data.source,
            command="student_lab3.ipynb",
            finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        save_json(result, path)
    else:
        print(f"[LR range test: not run: no results/{lab.profile}/lr_range.json]")
        return None
    s, env = result["suggestion"], result["env"]
    print(
        f"on {env['device']} {env.get('gpu') or env.get('cpu', '')}, finished "
        f"{result.get('finished_at', '?')}: {len(result['lrs'])} steps; lowest loss at lr "
        f"{s['min_loss_lr']:.3g}, steepest fall at {s['steepest_lr']:.3g} -> max_lr "
        f"{s['max_lr']:.3g}, base_lr {s['base_lr']:.3g}"
        + (f" [{s['warning']}]" if s["warning"] else "")
    )
    print(f"(max_lr = lowest-loss lr / {MAX_LR_DIVISOR:g}, base_lr = max_lr / {BASE_LR_DIVISOR:g})")
    for name in ["baseline", *grid.GROUPS["lr"]]:
        cfg = grid.make_config(name, lab.profile)
        peak = f", peak {cfg.max_lr:g}" if cfg.max_lr else ""
        print(f"  the grid's {name:<12} {cfg.schedule:<9} lr {cfg.lr:g}{peak}")
    return result


def plot_lr_range(result: dict, path=None):
    """Loss against lr on a log axis, raw and smoothed, with the suggestions marked."""
    from engine.plotting import (  # plotting picks a headless backend where there is no display
        _save,
        plt,
    )

    lrs, smoothed, s = result["lrs"], result["smoothed"], result["suggestion"]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(lrs, result["losses"], color="0.75", lw=0.8, label="loss per step")
    ax.plot(lrs, smoothed, lw=2, label=f"smoothed (EMA {result.get('smoothing', SMOOTHING)})")
    marks = (
        ("min_loss_lr", ":", "lowest loss"),
        ("steepest_lr", "--", "steepest descent"),
        ("max_lr", "-", "suggested max_lr"),
        ("base_lr", "-.", "suggested base_lr"),
    )
    for (key, style, label), color in zip(marks, ("C3", "C2", "C1", "C4")):
        ax.axvline(s[key], ls=style, color=color, label=f"{label} {s[key]:.3g}")
    # Keep the fall readable: cut the y axis a little above the start, not at the blow-up.
    i_min = int(np.argmin(smoothed))
    top = min(max(smoothed), 1.5 * max(smoothed[: i_min + 1]))
    bottom = min(min(result["losses"]), min(smoothed))
    pad = 0.05 * max(top - bottom, 1e-3)
    ax.set_ylim(bottom - pad, top + pad)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    cfg = result.get("config", {})
    ax.set_title(
        f"LR range test: {cfg.get('name', '')}, batch {cfg.get('batch_size', '?')}, "
        f"{len(lrs)} steps" + (f" ({s['warning']})" if s.get("warning") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    _save(fig, path)
    return fig


def main(argv: list[str] | None = None) -> int:
    import argparse

    from engine.checkpoint import save_json
    from engine.data import load_cifar10
    from lab.grid import default_profile, make_config

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--profile",
        default=None,
        help="full | cpu | quick | smoke (default: full on CUDA, else quick)",
    )
    ap.add_argument(
        "--experiment", default="baseline", help="whose configuration to test (default: baseline)"
    )
    ap.add_argument(
        "--data-dir",
        default=None,
        help="CIFAR-10 (default: $LAB3_DATA_DIR, ./data, ../shared/data)",
    )
    ap.add_argument("--steps", type=int, default=None, help="steps (default: 100; 40 on smoke)")
    ap.add_argument("--min-lr", type=float, default=1e-5, help="first lr (default 1e-5)")
    ap.add_argument("--max-lr", type=float, default=10.0, help="last lr (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    ap.add_argument(
        "--precision", default="auto", help="auto | bf16 | fp32 (default: as training picks)"
    )
    ap.add_argument("--out", default="results", help="results folder (default: results)")
    ap.add_argument("--plots", default="plots", help="figures folder (default: plots)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    profile = args.profile or default_profile()
    cfg = make_config(args.experiment, profile)  # raises on an unknown experiment or profile
    steps = args.steps if args.steps is not None else DEFAULT_STEPS[profile]
    _check_range(args.min_lr, args.max_lr, steps)  # before minutes of data loading
    device = pick_device(args.device)
    data = load_cifar10(args.data_dir)
    opts = dict(min_lr=args.min_lr, max_lr=args.max_lr, steps=steps, seed=args.seed)
    opts.update(progress=not args.no_progress, precision=args.precision)
    result = lr_range_test(cfg, data, device, **opts)
    stem = "lr_range" if args.experiment == "baseline" else f"lr_range_{args.experiment}"
    result.update(
        name=args.experiment,
        profile=profile,
        data=data.source,
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        command=command_line(),
    )
    json_path = Path(args.out) / profile / f"{stem}.json"
    png_path = Path(args.plots) / profile / f"{stem}.png"
    save_json(result, json_path)
    plot_lr_range(result, png_path)
    s = result["suggestion"]
    print(
        f"lr range test ({args.experiment}, {profile}, {len(result['lrs'])}/{steps} steps): "
        f"lowest loss at lr {s['min_loss_lr']:.3g}, steepest at {s['steepest_lr']:.3g} -> "
        f"max_lr {s['max_lr']:.3g}, base_lr {s['base_lr']:.3g}"
        + (f" [{s['warning']}]" if s["warning"] else "")
        + f"; wrote {json_path} and {png_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
