"""The final recipe against a plain one at a CPU-sized budget (issue #19).

    python -m tools.budget_check final            # the grid's final recipe
    python -m tools.budget_check plain            # kuangliu/pytorch-cifar's recipe
    python -m tools.budget_check baseline         # the handout's baseline
    python -m tools.budget_check table            # README's table of the saved runs

The budget: 10,000 images of the CIFAR-10 training set, 400 held out for validation and 9,600
trained on for 4 epochs (38,400 training images), ResNet18 at full width (64), tested on 2,000
test images. Each recipe keeps its own batch size, so the same images make a different number
of optimizer steps: 76 for the final recipe (batch 512), 300 for the plain one (batch 128).

The point is that a recipe tuned for 30 epochs on 45,000 images must not wreck the network
when it gets a few dozen steps (issue #19 measured the old final recipe at 17.7%: it warmed up
to lr 0.4 in 16 steps). Each run writes results/cpu-budget/<recipe>.json with the data source,
the hardware, the machine's load, the command and the date, and prints the lab's log lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path

from engine.checkpoint import save_json
from engine.data import load_cifar10
from engine.errors import run_cli
from engine.grid import make_config
from engine.runtime import environment, hardware_name, pick_device
from engine.schedules import lr_curve
from train_utils import RunConfig, train

# The budget, shared by every recipe (issue #19).
BUDGET = dict(width=64, val_size=400, train_subset=9600, test_subset=2000, epochs=4)

# Each recipe: an experiment of the grid and the settings that make it that recipe.
RECIPES: dict[str, tuple[str, dict]] = {
    "final": ("final", {}),
    # kuangliu/pytorch-cifar main.py: SGD lr 0.1, momentum 0.9, wd 5e-4, batch 128, cosine
    # annealing over the whole run, random crop (pad 4) + flip, per-channel standardization.
    "plain": ("baseline", dict(norm="standard_exact", augment="crop_flip", lr=0.1,
                               schedule="cosine", batch_size=128)),
    "baseline": ("baseline", {}),
}  # fmt: skip


def load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def table(folder: str | Path = "results/cpu-budget") -> str:
    """The Markdown table README quotes, from every <recipe>.json in `folder`."""
    rows = ["| recipe | batch | optimizer steps | peak lr | test acc (2,000 images) | status | "
            "wall time | load avg before / after (1 min) | date |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |"]  # fmt: skip
    for path in sorted(Path(folder).glob("*.json")):
        r = json.loads(path.read_text())
        cfg = r["config"]
        per_epoch = math.ceil(r["budget"]["train_subset"] / cfg["batch_size"])
        steps = r["budget"]["epochs"] * per_epoch
        fields = {f.name for f in dataclasses.fields(RunConfig)}
        sched = RunConfig(**{k: v for k, v in cfg.items() if k in fields}).make_schedule(per_epoch)
        peak = max(lr_curve(steps, sched))
        acc = "—" if r["test_acc"] is None else f"{100 * r['test_acc']:.1f}%"
        load = r.get("load_avg_1_5_15", {})
        before, after = ((load.get(k) or ["?"])[0] for k in ("before", "after"))
        rows.append(f"| {r['recipe']} | {cfg['batch_size']} | {steps} | "
                    f"{peak:.3g} | {acc} | {r['status']} | "
                    f"{r['wall_seconds'] / 60:.1f} min | {before} / {after} | "
                    f"{r['started_at'][:10]} |")  # fmt: skip
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("recipe", choices=[*sorted(RECIPES), "table"],
                    help="a recipe to run, or `table`: print README's table of the saved runs")  # fmt: skip
    ap.add_argument("--data-dir", default=None, help="CIFAR-10 location (see engine/data.py)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/cpu-budget", help="folder for <recipe>.json")
    args = ap.parse_args(argv)
    if args.recipe == "table":
        print(table(args.out))
        return 0

    experiment, change = RECIPES[args.recipe]
    cfg = make_config(experiment, "full", args.seed, {**change, **BUDGET})
    cfg.name = args.recipe
    device = pick_device(args.device)
    data = load_cifar10(args.data_dir)
    load_before = load()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    log: list[str] = []

    def tee(line: str) -> None:
        log.append(line)
        print(line, flush=True)

    tee(f"[{args.recipe}: {experiment} + {change or 'nothing'}; budget {BUDGET}]")
    res = train(cfg, data, device=device, progress=False, log=tee).to_dict()
    res.update(
        recipe=args.recipe,
        experiment=experiment,
        budget=BUDGET,
        train_images_seen=BUDGET["epochs"] * BUDGET["train_subset"],
        data=data.source,
        hardware={
            **environment(device),
            "name": hardware_name(device),
            "cpu_count": os.cpu_count(),
        },
        load_avg_1_5_15={"before": load_before, "after": load()},
        command="python -m tools.budget_check "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        started_at=started,
        wall_seconds=time.perf_counter() - t0,
        log=log,
    )
    path = Path(args.out) / f"{args.recipe}.json"
    save_json(res, path)
    acc = res["test_acc"]
    print(
        f"{args.recipe}: {res['status']}, test acc {acc if acc is None else round(acc, 4)}; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
