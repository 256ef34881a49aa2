"""The notebook's glue: one `Lab` runs or replays a group, says where its runs were made,
overlays their curves on the baseline's and tables them; every figure quoted comes from results."""

import dataclasses
import inspect
import re
import textwrap
from collections import Counter, defaultdict
from pathlib import Path

from IPython.display import display

from engine.errors import LabError
from engine.plotting import plot_history, plot_overlay, plt
from engine.runtime import choose_precision, hardware_name, pick_device, precision_of
from lab import grid, stats, tables
from train_utils import train_size


@dataclasses.dataclass
class Lab:
    """One notebook session: where results live, how runs are made, the runs made, those skipped."""

    profile: str
    data: object  # engine.data.Cifar10
    device: object = None  # torch.device
    results_dir: str | Path = "results"
    checkpoints_dir: str | Path = "checkpoints"
    plots_dir: str | Path = "plots"
    seeds: int = 1
    force: bool = False
    train_missing: bool = True
    resume: bool = True
    compile_mode: str | None = None
    precision: str = "auto"  # auto | bf16 | fp32 (engine/runtime.py choose_precision)
    runs: dict = dataclasses.field(default_factory=dict)
    not_run: list = dataclasses.field(default_factory=list)

    def run(self, names, echo=print) -> dict[str, list[dict]]:
        """Replay the saved seeds of each experiment, train the missing ones when allowed. `echo`
        gets each run's log; None prints only warnings and each experiment's test accuracies."""
        saved = grid.load_results(self.profile, self.results_dir)
        groups = ", ".join(dict.fromkeys(grid.GROUP_OF.get(n, n) for n in names))
        print(f"== {groups}: {len(names)} experiment(s), profile {self.profile} ==", flush=True)
        if echo is not None:
            print(
                "(each epoch's 'learning rate' is the rate it trained with; the handout's log "
                "prints it after scheduler.step(), i.e. the next epoch's)"
            )
        same = ("force", "resume", "device", "compile_mode", "precision")  # named alike in both
        options = grid.RunOptions(
            self.results_dir,
            self.checkpoints_dir,
            echo=echo or _warnings_only,
            **{k: getattr(self, k) for k in same},
        )
        out = {}
        for name in names:
            readable = {r["seed"] for r in saved.get(name, [])}  # bad files: skipped, reported
            done = [
                grid.run_experiment(name, self.profile, self.data, seed, options)
                for seed in sorted(set(range(self.seeds)) | readable)
                if seed in readable or self.train_missing or self.force
            ]
            if done:
                out[name] = self.runs[name] = done
                if echo is None:
                    _quiet_summary(name, done)
            else:
                self.not_run.append(name)
                print(f"[{name}: not run: no saved results for profile {self.profile}]")
        return out

    def show(self, runs: dict, name: str) -> None:
        """Where each seed of `name` was made, its four curves and its test line."""
        print("\n".join(provenance_lines(runs)))
        for r in runs.get(name, []):
            plot_history(
                r["history"],
                title=f"{name}, seed {r['seed']} ({self.profile})",
                path=Path(self.plots_dir) / f"{name}_seed{r['seed']}.png",
            )
            print(test_line(r))

    def overlay(self, runs: dict, title: str, file: str):
        """The curves of `runs` against the baseline's (mean and +-1 std band over seeds)."""
        if not runs:
            print("no runs of this group to plot")
            return None
        lines = {"baseline": self.runs.get("baseline", []), **runs}
        return plot_overlay(
            {n: [r["history"] for r in rs] for n, rs in lines.items() if rs},
            title=f"{title} ({self.profile})",
            path=Path(self.plots_dir) / file,
            diverged={n for n, rs in lines.items() if any(r["status"] == "diverged" for r in rs)},
        )

    def compare(self, runs: dict) -> tuple[list[dict], str]:
        """The Markdown table of `runs` against the baseline, under its scale, and its findings."""
        if not runs:
            return [], "*No runs of this group to compare.*"
        both = {"baseline": self.runs["baseline"], **runs} if "baseline" in self.runs else runs
        try:
            rows = stats.summarize(both)
        except LabError as e:  # runs of other data, precision or profile: never pooled
            print(f"warning: {e}")
            return [], f"*Not compared: {e}*"
        head = f"**Scale `{self.profile}`** ({self.scale()}), against its own baseline:\n\n"
        table = stats.format_table(rows, skip=("sec_per_epoch", "group"))  # s/epoch: batch table
        return rows, head + table + "\n\n" + tables.conclude(rows)

    def scale(self) -> str:
        """The profile's scale in words: images, width, the baseline's epochs."""
        base = grid.make_config("baseline", self.profile)
        return (
            f"{train_size(dataclasses.asdict(base)):,} training images, ResNet18 width "
            f"{base.width}, the baseline {base.epochs} epochs"
        )

    def section(self, names, title: str, file: str, echo=None, ending=False) -> tuple[dict, list]:
        """One group: its runs, provenance, overlay, table and (`ending`) how they ended."""
        runs = self.run(names, echo=echo)
        print("\n".join(provenance_lines(runs)))
        fig = self.overlay(runs, title, file)
        if fig is not None:
            display(fig)  # here, above the table, not at the end of the cell
            plt.close(fig)
        rows, text = self.compare(runs)
        show_markdown(text)
        if ending:
            show_markdown(
                f"**Scale `{self.profile}`**, how the runs ended (means over the seeds):\n\n"
                + tables.ending_table({"baseline": self.runs.get("baseline", []), **runs})
            )
        return runs, rows


def study(lab: Lab, profile: str | None) -> Lab | None:
    """`profile`'s saved runs beside `lab`'s (replayed only), or None where it has no results."""
    if not profile or profile == lab.profile:
        return None
    folder = Path(lab.results_dir) / profile
    if not any(folder.glob("*.json")):
        print(f"study:   profile {profile} not shown: no results in {folder}/")
        return None
    plots = Path(lab.plots_dir).parent / profile
    replay = dict(force=False, train_missing=False, runs={}, not_run=[], plots_dir=plots)
    study = dataclasses.replace(lab, profile=profile, seeds=grid.default_seeds(profile), **replay)
    print(f"study:   profile {profile} ({study.scale()}), replayed from {lab.results_dir}/")
    return study


def sources_list(why: dict[str, str]) -> str:
    """Markdown: each setting of a recipe and where it comes from, one bullet each."""
    return "\n".join(f"- `{k}`: {v}" for k, v in why.items())


def settings_lines(cfg) -> str:
    """A run's settings, three `name=value` pairs to a line."""
    pairs = [f"{k}={v}".ljust(26) for k, v in dataclasses.asdict(cfg).items()]
    lines = ("  " + "  ".join(pairs[i : i + 3]) for i in range(0, len(pairs), 3))
    return "\n".join(line.rstrip() for line in lines)


def show_markdown(text: str) -> None:
    """Markdown that also reads as itself where only text is shown (papermill --log-output)."""
    display({"text/markdown": text, "text/plain": text}, raw=True)


def preview_banner(lab: Lab) -> str:
    """Unless the profile is `full`, a banner so that no page of a preview passes for results."""
    if lab.profile == "full":
        return ""
    if lab.profile == "cpu":
        return (
            f"> **Profile `cpu`: the lab's grid at a scale two CPU cores train in hours** "
            f"({lab.scale()}, {lab.seeds} seeds). Every run is compared with the baseline of this "
            "scale; the lab's own figures are the `full` profile's."
        )
    device = pick_device(lab.device)
    prec = choose_precision(device, lab.precision)
    full = dataclasses.replace(lab, profile="full").scale()
    return (
        f"> **PREVIEW: profile `{lab.profile}`, not the lab's results.**  \n"
        f"> {lab.scale()} (the lab: {full}).  \n"
        f"> Data: {getattr(lab.data, 'source', '?')}.  \n"
        f"> Hardware: {hardware_name(device)}, precision {prec.name} ({prec.reason}).  \n"
        "> Every figure and table below is a preview of the method; only the `full` profile "
        "answers the lab's questions. The written discussions describe the committed `full` "
        "results (`results/full/`), not the numbers this preview prints."
    )


class RunLog:
    """The groups' echo: a run being trained prints every line; a replayed run is folded to one
    line an epoch, the first and last `keep` epochs and a line naming its file."""

    BLOCK = ("learning rate:", "Train loss:", "Val loss:")

    def __init__(self, keep: int = 2, out=print):
        self.keep, self.out = keep, out
        self.path, self.epochs = None, []  # the file being replayed, its epochs not yet shown

    def __call__(self, line: str) -> None:
        if self.path and line.startswith("Epoch:"):
            self.epochs.append(line)
        elif self.path and self.epochs and line.startswith(self.BLOCK):
            self.epochs[-1] += " | " + line
        else:
            self.flush()
            if line.startswith("[") and ": replaying " in line:
                self.path = line.split(": replaying ", 1)[1].removesuffix("]")
            elif line.startswith(("Test", "diverged")):
                self.path = None
            self.out(line)

    def flush(self) -> None:
        n, k = len(self.epochs), self.keep
        if n > 2 * k:
            folded = f"... ({n} epochs, {n - 2 * k} not shown, full log in {self.path})"
            self.epochs[k:-k] = [folded]
        for line in self.epochs:
            self.out(line)
        self.epochs = []


brief = RunLog()  # the groups' echo: each run's log, long replayed runs folded


def _warnings_only(line: str) -> None:
    if line.startswith("warning"):
        print(line)


def _quiet_summary(name: str, done: list[dict]) -> None:
    """One line of an experiment's test accuracies; a seed without one gets a line with why."""
    ok = [r for r in done if r.get("test_acc") is not None]
    if ok:
        accs = " ".join(f"{r['test_acc']:.4f}" for r in ok)
        print(f"{name:<18} test acc {accs}  (seeds {', '.join(str(r['seed']) for r in ok)})")
    for r in done:
        if r.get("test_acc") is None:
            print(f"{name:<18} {test_line(r)}")


def test_line(r: dict) -> str:
    """The lab's test line of one results dict, or why it has none."""
    if r.get("test_acc") is None:
        message = r.get("message", "")
        why = message if message.startswith(r["status"]) else f"{r['status']}: {message}"
        return f"seed {r['seed']}: {why}"
    loss = "nan" if r.get("test_loss") is None else f"{r['test_loss']:.4f}"  # diverged at test
    line = f"Test loss: {loss} | Test acc: {r['test_acc']:.4f}  (seed {r['seed']})"
    return line + (f"  {r['status']}: {r.get('message', '')}" if r["status"] != "ok" else "")


def provenance_lines(runs: dict) -> list[str]:
    """Where and when the runs were made: one line for the runs that share status, hardware,
    precision, torch, data and note (less any script's name)."""
    where = defaultdict(lambda: defaultdict(list))  # (made, note) -> name -> [(seed, date)]
    for name, rs in runs.items():
        for r in rs:
            env = r.get("env", {})
            made = (
                f"{r['status']} on {env.get('device')} {env.get('gpu') or env.get('cpu', '')}, "
                f"{precision_of(r)}, torch {env.get('torch')}, "
                f"data: {r.get('data', 'not recorded')}"
            )
            note = re.sub(r" \([\w./-]+\.(?:sh|py)\)", "", env.get("note") or "")
            where[made, note][name].append((r["seed"], r.get("finished_at", "?")))
    lines = []
    for (made, note), names in where.items():
        dates = sorted(d for seeds in names.values() for _, d in seeds)
        when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
        which = ", ".join(
            f"{n} seed{'s' if len(v) > 1 else ''} {', '.join(str(k) for k, _ in v)}"
            for n, v in names.items()
        )
        lines.append(f"{which}: {made}, finished {when}" + (f"; {note}" if note else ""))
    return lines


def show_code(*objects) -> None:
    """The source of functions or classes (the code that runs), each under its file's name."""
    for obj in objects:
        src = textwrap.dedent(inspect.getsource(obj)).rstrip()
        where = f"`{obj.__module__.replace('.', '/')}.py`, `{obj.__qualname__}`"
        show_markdown(f"{where}:\n\n```python\n{src}\n```\n")


def describe_setup(lab: Lab) -> None:
    """The set-up cell's report: device, profile, data (named by content), saved runs, mode."""
    dev, data = pick_device(lab.device), lab.data
    prec = choose_precision(dev, lab.precision)
    saved = grid.load_results(lab.profile, lab.results_dir)
    lines = [
        f"device:  {dev} ({hardware_name(dev)})",
        f"precision: {prec.name}{' + channels_last' if prec.channels_last else ''} ({prec.reason})",
        f"profile: {lab.profile} {grid.PROFILES[lab.profile]}",
        f"data:    {data.source}",
        f"         train {tuple(data.train_images.shape)}, test {tuple(data.test_images.shape)}, "
        f"{data.train_images.dtype}, {len(data.classes)} classes",
        f"results: {sum(map(len, saved.values()))} saved runs of {len(saved)} experiments "
        f"in profile {lab.profile}",
    ]
    # The data each saved run trained on: a replay shows that copy's figures, not this one's.
    trained_on = Counter(r.get("data", "not recorded") for rs in saved.values() for r in rs)
    for source, n in trained_on.items():
        other = "" if source == data.source else " (not the copy loaded above)"
        lines.append(f"         {n} trained on {source}{other}")
    if lab.compile_mode:
        lines.append(f"compile: {lab.compile_mode!r} for the training step (engine/runtime.py)")
    if lab.force:
        lines.append("mode:    FORCE: every run is retrained")
    elif lab.train_missing:
        lines.append(
            f"mode:    saved runs are replayed, missing ones trained (seeds 0..{lab.seeds - 1})"
        )
    else:
        lines.append("mode:    replay only: experiments without saved results are skipped")
    print("\n".join(lines))
