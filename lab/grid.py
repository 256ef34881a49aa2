"""The lab's grid: a baseline, its named changes, the profiles that scale it to the hardware,
and the results files (results/<profile>/<name>__seed<k>.json) that replay its runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import re
import shutil
import sys
import typing
from pathlib import Path

import torch

from engine.checkpoint import save_json
from engine.distributed import World
from engine.errors import LabError
from engine.runtime import command_line
from engine.schedules import fitted_batch
from train_utils import RunConfig, train, train_size

# The handout's run: inputs in [0, 1], no augmentation, SGD lr 0.05 halved every 10 epochs,
# 20 epochs, batch 128 (momentum 0.9 and weight decay 5e-4 as in the handout's optimizer).
BASELINE = RunConfig(name="baseline")

_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_MUST = {bool: "is true or false", int: "must be a whole number", float: "must be a number"}


def parse_overrides(items: list[str]) -> dict:
    """["lr=0.1", "tta=no", "max_lr=none"] -> {"lr": 0.1, "tta": False, "max_lr": None}."""
    types_ = typing.get_type_hints(RunConfig)
    out = {}
    for item in items:
        key, sep, text = (s.strip() for s in item.partition("="))
        if not (key and sep and text):
            raise LabError(f"--set wants KEY=VALUE, got {item!r}")
        if key == "seed":  # one run under every seed number would fake the repeats (#17)
            raise LabError("seed cannot be set with --set; --seeds N runs seeds 0..N-1")
        if key == "name":  # the name picks the results file: it would replay or overwrite another
            raise LabError("name cannot be set with --set; --set names a run (baseline+lr=0.1)")
        if key not in types_:
            raise LabError(f"unknown setting {key}; settings are: {', '.join(sorted(types_))}")
        kind, *optional = typing.get_args(types_[key]) or (types_[key],)  # X | None: X, NoneType
        none = optional and text.lower() in ("none", "null")
        try:
            out[key] = None if none else _BOOL[text.lower()] if kind is bool else kind(text)
        except (KeyError, ValueError):
            raise LabError(f"--set {key}={text}: {key} {_MUST[kind]}") from None
        if kind is float and not math.isfinite(out[key] or 0):  # None or 0: finite
            raise LabError(f"--set {key}={text}: {key} must be a finite number")
    return out


MIN_RISE_STEPS = 40  # final_airbench's lr rises at most peak / 40 a step (AIRBENCH_WHY: why)

# The final recipes, each setting as --set writes it with where it comes from: a paper, or the
# anchor (never a grid run: what those found is the notebook's to say). The notebook prints them.
FINAL_WHY: dict[str, str] = {
    "norm=standard_exact": "per-channel standardization with the training split's statistics, "
    "the usual CIFAR input (He et al. 2015)",
    "augment=strong": "random crop (4-pixel zero padding) and flip, the standard CIFAR "
    "augmentation (He et al. 2015), plus one 16x16 cutout square (DeVries & Taylor 2017)",
    "batch_size=512, nesterov=True": "Nesterov momentum (Sutskever et al. 2013); a large batch, "
    "which a one-cycle schedule trains well (Smith & Topin 2017); momentum 0.9 and weight "
    "decay 5e-4 are the handout's",
    "schedule=onecycle, lr=0.02, max_lr=0.4, pct_start=0.2": "one cycle (Smith & Topin 2017): "
    "a rise to 0.4 over the first 20% of the steps, then an anneal to almost 0 (torch's "
    "OneCycleLR shape; lr is unused by it)",
    "epochs=50": "2.5x the baseline's 20: augmented images need longer training to pay off "
    "(DeVries & Taylor 2017 train for 200 epochs)",
    "label_smoothing=0.1": "Szegedy et al. 2016 (section 7)",
    "tta=True": "each test image scored with its mirror image, the logits averaged (flip TTA; "
    "Krizhevsky et al. 2012 averaged over patches and their reflections)",
}
# final_airbench: the anchor, the ResNet-18 baseline of Keller Jordan's airbench (cifar10-zoo's
# airbench/baselines/train_resnet18_94.py: 94.0% with its TTA, mean of 200 runs on 50,000 images).
AIRBENCH_WHY: dict[str, str] = {
    "norm=standard_exact": "per-channel standardization with the training split's statistics, "
    "the usual CIFAR input (He et al. 2015) and the anchor's (Jordan 2024)",
    "augment=translate_flip_cutout12": "the anchor's (Jordan 2024): random translation by up "
    "to 4 pixels (reflect padding), a flip, and one 12x12 cutout square (DeVries & Taylor 2017)",
    "batch_size=500": "the anchor's batch (Jordan 2024)",
    "min_steps_per_epoch=90": "the anchor's 500 makes 90 steps an epoch "
    "of 45,000 images; on a subset the batch is halved (not below 32) to keep as many, the lr "
    "scaled with it: few images learn more from small batches (McCandlish et al. 2018)",
    "optimizer=sgd, momentum=0.9, nesterov=True": "the anchor's optimizer; Nesterov momentum "
    "as in Sutskever et al. 2013",
    "weight_decay=5e-4": "the handout's and the anchor's (Jordan 2024)",
    "schedule=triangle, lr=0.04, max_lr=0.2, pct_start=0.2": "the anchor's schedule (Jordan "
    "2024): linear from 0.2x the peak up to 0.2 at 20% of the steps, then linearly to 0",
    "lr_batch=500": "the linear scaling rule of Goyal et al. 2017, for a user who changes the "
    "batch",
    f"min_rise_steps={MIN_RISE_STEPS}": "a CPU preview whose lr reached its peak in 16 steps "
    "diverged; a rise shorter than this peaks lower in proportion (tested on 0, 20, 40, 80)",
    "epochs=26": "the anchor's length (Jordan 2024)",
    "label_smoothing=0": "the anchor has none (Jordan 2024)",
    "tta=True, tta_shift=1": "the anchor's evaluation (airbench's tta_level 2, Jordan 2024): "
    "logits averaged over the image, its mirror and both shifted by one pixel",
}


# Each experiment is the baseline plus the change written here. Order = priority.
GROUPS: dict[str, dict[str, dict]] = {
    "baseline": {"baseline": {}},
    "final": {  # a recipe's settings: the keys of its table of sources
        "final": parse_overrides(", ".join(FINAL_WHY).split(", ")),
        "final_airbench": parse_overrides(", ".join(AIRBENCH_WHY).split(", ")),
    },
    "norm": {
        "norm_minmax": dict(norm="minmax"),
        "norm_std_sampled": dict(norm="standard_sampled"),
        "norm_std_exact": dict(norm="standard_exact"),
    },
    "aug": {
        "aug_crop_flip": dict(augment="crop_flip"),
        "aug_rotate": dict(augment="crop_flip_rotate"),
        "aug_jitter": dict(augment="crop_flip_jitter"),
        "aug_noise": dict(augment="crop_flip_noise"),
        "aug_strong": dict(augment="strong"),
    },
    "lr": {
        "lr_0.01": dict(lr=0.01),
        "lr_0.2": dict(lr=0.2),
        "lr_constant": dict(schedule="constant"),
        "lr_cosine": dict(schedule="cosine"),
        "lr_cyclical": dict(schedule="cyclical", lr=0.005, max_lr=0.1, cycle_epochs=5),
        "lr_onecycle": dict(schedule="onecycle", max_lr=0.1),
    },
    "batch": {
        # Fixed lr, and lr scaled linearly with the batch (Goyal et al. 2017) from 0.05 @ 128.
        "bs_32": dict(batch_size=32),
        "bs_32_scaled": dict(batch_size=32, lr=0.0125),
        "bs_512": dict(batch_size=512),
        "bs_512_scaled": dict(batch_size=512, lr=0.2),
        "bs_2048": dict(batch_size=2048),
        "bs_2048_scaled": dict(batch_size=2048, lr=0.8, warmup_epochs=2),
    },
}
EXPERIMENTS = {name: change for group in GROUPS.values() for name, change in group.items()}
GROUP_OF = {name: group for group, runs in GROUPS.items() for name in runs}

# How each profile rescales a run (epochs_scale scales the schedule's lengths too: same shape).
# cpu: the grid at 3 seeds on two CPU cores in 4 h, each group's lesson kept (results/cpu/README.md).
PROFILES: dict[str, dict] = {
    "full": dict(epochs_scale=1.0),
    "cpu": dict(epochs_scale=0.5, width=16, val_size=1000, train_subset=7000),
    "quick": dict(epochs_scale=0.15, width=8, val_size=500, train_subset=2000, test_subset=1000),
    "smoke": dict(epochs_scale=0.1, width=4, val_size=200, train_subset=400, test_subset=400),
}


def default_profile() -> str:
    return "full" if torch.cuda.is_available() else "quick"


def default_seeds(profile: str) -> int:  # 3 for mean +- std, and differences beyond the noise
    return 3 if profile in ("full", "cpu") else 1  # previews: 1


def make_config(name: str, profile="full", seed=0, overrides: dict | None = None) -> RunConfig:
    """Experiment `name` under `profile`: the baseline, the experiment's change, the profile's
    scale, then `overrides` (what you set is what runs, whatever the profile)."""
    if name not in EXPERIMENTS:
        raise LabError(f"unknown experiment {name!r}; run `python experiments.py list`")
    if profile not in PROFILES:
        raise LabError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    overrides = overrides or {}
    full_name = name + "".join(f"+{k}={v}" for k, v in sorted(overrides.items()))  # own file
    cfg = dataclasses.replace(BASELINE, name=full_name, seed=seed, **EXPERIMENTS[name])
    scale = dict(PROFILES[profile])
    f = scale.pop("epochs_scale")
    if f != 1.0:
        r = (epochs := max(1, round(cfg.epochs * f))) / cfg.epochs
        lengths = ("step_epochs", "cycle_epochs", "warmup_epochs")
        scale.update(epochs=epochs, **{k: getattr(cfg, k) * r for k in lengths})
    cfg = dataclasses.replace(cfg, **{**scale, **overrides})
    # on a subset a recipe keeps its steps an epoch with a smaller batch (AIRBENCH_WHY)
    if cfg.min_steps_per_epoch and "batch_size" not in overrides:
        images = train_size(dataclasses.asdict(cfg))
        cfg.batch_size = fitted_batch(cfg.batch_size, images, cfg.min_steps_per_epoch)
    return cfg.validate()


def expand(names: list[str]) -> list[str]:
    """Experiment and group names -> experiment names, in grid order, without repeats. A name
    that is both (`final`) is the experiment; its group's other runs are named on their own."""
    out: list[str] = []
    for n in names or EXPERIMENTS:
        if n not in EXPERIMENTS and n not in GROUPS:
            raise LabError(f"unknown experiment or group {n!r}; run `python experiments.py list`")
        out += [n] if n in EXPERIMENTS else list(GROUPS[n])
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------- the results files
def result_path(out: str | Path, profile: str, name: str, seed: int) -> Path:
    return Path(out) / profile / f"{name}__seed{seed}.json"


def read_json(path: str | Path, needs: tuple[str, ...] = ()) -> tuple[dict | None, str]:
    """(the JSON object in `path`, "") or (None, why it cannot be used, e.g. no key of `needs`)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: not UTF-8, or not JSON (truncated?)
        return None, f"unreadable, or not valid JSON ({getattr(e, 'strerror', None) or e})"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    missing = [k for k in needs if k not in obj]
    return (None, f"no {', '.join(missing)}") if missing else (obj, "")


# What a reader of a results file relies on: the keys every file has, the ones it may have.
_NUMBER = (int, float)
_KEYS = {"name": str, "seed": int, "status": str, "config": dict, "history": dict}
_MAY = {"test_acc": _NUMBER, "test_loss": _NUMBER, "wall_seconds": _NUMBER, "env": dict}
_MAY |= {"profile": str, "message": str, "log": list, "data": str, "experiment": str, "group": str}


def result_problem(r: dict) -> str | None:
    """Why a parsed results file cannot be used (None when it can)."""
    wrong = [k for k, kind in _KEYS.items() if not isinstance(r.get(k), kind)]
    wrong += [k for k, kind in _MAY.items() if r.get(k) is not None and not isinstance(r[k], kind)]
    if wrong or not all(isinstance(line, str) for line in r.get("log") or []):
        return f"missing or wrong value types for {', '.join(wrong) or 'log'}"
    h = dict.fromkeys(("epoch", "train_loss", "val_loss", "val_acc")) | r["history"]
    lists = all(isinstance(v, list) for v in h.values())
    if not lists or not all(isinstance(x, _NUMBER) or x is None for v in h.values() for x in v):
        return "a history whose curves are missing or not lists of numbers"
    if r["status"] not in ("ok", "diverged") or r["status"] == "ok" and r.get("test_acc") is None:
        return f"status {r['status']!r} without a test accuracy"
    return None


def saved_result(path: Path, profile: str, warn, cfg: RunConfig | None = None):
    """The run saved in `path` if it is usable for `profile` (the one answer), else None and one
    line through `warn` (None: silent) saying why; saved with other settings than `cfg`: warned."""
    if not path.is_file():
        return None
    r, problem = read_json(path)
    problem = problem or result_problem(r)
    if not problem and path.name != f"{r['name']}__seed{r['seed']}.json":
        problem = f"holds run {r['name']} seed {r['seed']}, not what its name says"
    if not problem and r.get("profile", profile) != profile:  # a preview among full results (#27)
        problem = f"a {r.get('profile')!r} result, not {profile!r}"
    if problem:
        if warn:
            warn(f"warning: skipping {path}: {problem}; delete it, or rerun the run to replace it")
        return None
    # a setting absent from the saved config is newer than the run, and defaults to what it did
    now = dataclasses.asdict(cfg) if cfg else {}
    stale = ", ".join(sorted(k for k, v in r["config"].items() if k in now and now[k] != v))
    if stale and warn:
        warn(f"warning: {path.name} was saved with other settings ({stale}); --force reruns it")
    return r


def load_results(profile: str, out="results", warn=lambda line: print(line, file=sys.stderr)):
    """Every usable saved run of a profile, by run name, seeds in order (see saved_result)."""
    found: dict[str, list[dict]] = {}
    for p in sorted((Path(out) / profile).glob("*__seed*.json")):
        if (r := saved_result(p, profile, warn)) is not None:
            found.setdefault(r["name"], []).append(r)
    return {n: sorted(rs, key=lambda r: r["seed"]) for n, rs in found.items()}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How runs are carried out (the CLI's flags, the notebook's Lab); what they train: RunConfig."""

    out: str | Path = "results"  # results folder: <out>/<profile>/<name>__seed<k>.json
    ckpt_root: str | Path = "checkpoints"  # checkpoints: <ckpt_root>/<profile>/<name>__seed<k>/
    force: bool = False  # rerun saved runs (their old checkpoints are discarded)
    resume: bool = False  # continue an interrupted run from its newest checkpoint
    device: object = None  # a torch.device or its name; None: cuda if available, else cpu
    progress: bool = True  # progress bars (off when the output goes to a log file)
    echo: typing.Callable[[str], None] = print  # where the run's lines go
    ckpt_every: int = 1  # epochs between checkpoints (0: never)
    overrides: dict | None = None  # RunConfig settings changed (--set); they name the run
    compile_mode: str | None = None  # torch.compile the training step (None: off)
    precision: str | None = "auto"  # auto | bf16 | fp32 (engine/runtime.py choose_precision)


def run_experiment(name, profile, data, seed=0, options: RunOptions | None = None, world=None):
    """Replay a run's saved result, or train it and write its results file (their one writer).
    Under DDP every rank calls this: rank 0 decides, reads and writes; the others return None."""
    options, world = options or RunOptions(), world or World()
    echo = (lambda line: None) if world.helper else options.echo
    cfg = make_config(name, profile, seed, options.overrides)
    path = result_path(options.out, profile, cfg.name, seed)
    saved = None if options.force or world.helper else saved_result(path, profile, echo, cfg)
    if world.from_main(saved is not None):  # every rank replays, or every rank trains
        echo(f"[{cfg.name} seed {seed}: replaying {path}]")
        for line in (saved or {}).get("log", []):
            echo(line)
        return saved
    ckpt_dir = Path(options.ckpt_root) / profile / path.stem
    if (options.force or not options.resume) and not world.helper:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    header = f"[{cfg.name} seed {seed}, profile {profile}]"
    echo(header)
    as_is = ("device", "resume", "progress", "ckpt_every", "compile_mode", "precision")
    kw = {k: getattr(options, k) for k in as_is}  # RunOptions fields train() takes as they are
    res = train(cfg, data, ckpt_dir=ckpt_dir, log=echo, world=world, **kw)
    if world.helper:
        return None
    result = res.to_dict()
    result.update(
        name=cfg.name,
        experiment=name,
        group=GROUP_OF[name],
        profile=profile,
        seed=seed,
        data=data.source,
        log=[header, *res.log],  # the whole run's lines, across resumes
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        command=command_line(),
    )
    try:
        save_json(result, path)
    except OSError as e:  # the last checkpoint holds the run: a resume only tests it again
        why = f"{e.strerror or e}; its checkpoints stay in {ckpt_dir}"
        raise LabError(f"cannot write {path} ({why}): free space, then --resume") from None
    if GROUP_OF[name] == "final" and (ckpt_dir / "model.pt").exists():
        # the final model's weights, kept for the student (a state_dict, weights_only-loadable)
        os.replace(ckpt_dir / "model.pt", ckpt_dir.parent / f"{path.stem}_model.pt")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return result


def unfinished_runs(logs) -> dict[str, dict]:
    """The runs that training logs show started, not finished (a job cut off part-way), as
    histories of the epochs they logged; keyed by name, plus " (seed <k>)" for seeds past 0."""
    runs: dict[str, dict] = {}
    for path in sorted(logs):
        hist = None
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if m := _HEADER.match(line):  # a replay's ("[name seed k: replaying ...") is finished
                name = m["name"] + (f" (seed {m['seed']})" if m["seed"] != "0" else "")
                hist = runs[name] = {k: [] for k in _CURVES.values()} if m["profile"] else None
            elif hist is not None and line.startswith(("Test loss:", "diverged")):
                hist = runs[name] = None  # finished: its results file holds it
            elif hist is not None:  # "Epoch: 1", "Train loss: 1.6 | Train acc: 0.41", ...
                for label, value in _FIGURE.findall(line):
                    hist[_CURVES[label]].append(int(value) if label == "Epoch" else float(value))
    return {n: h for n, h in runs.items() if h and h["val_acc"]}


_HEADER = re.compile(r"^\[(?P<name>\S+) seed (?P<seed>\d+)(?P<profile>, profile)?")
_CURVES = {"Epoch": "epoch", "learning rate": "lr", "Train loss": "train_loss"}
_CURVES |= {"Train acc": "train_acc", "Val loss": "val_loss", "Val acc": "val_acc"}
_FIGURE = re.compile(f"({'|'.join(_CURVES)}): (\\S+)")
