"""Build the lab report, a PDF whose every number comes from the saved results.

    python report/build_report.py                          # best profile found: full > quick > smoke
    python report/build_report.py --profile full --student-id 312551001 --name "Wang Xiao-Ming"
    python report/build_report.py --engine html            # stop at the HTML (no PDF engine)

Reads results/<profile>/*.json (experiments.py) and results/<profile>/lr_range.json
(lr_finder.py, optional), draws the figures, fills report/template.md.j2 (the prose: edit it,
in English or Traditional Chinese) and prints it to PDF offline (report/render.py). The
intermediate files land in report/build/<profile>/: report.md, report.html and fig/*.png.
A smoke or quick report carries a "preview, not real results" banner on its first page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as `python report/build_report.py`, this folder is on the path but the lab's modules (one
# level up) are not.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import augment, grid, schedules  # noqa: E402
from engine.checkpoint import atomic_write  # noqa: E402
from engine.data import CLASSES, get_mean_std, load_cifar10, normalization_stats  # noqa: E402
from engine.errors import LabError, run_cli  # noqa: E402
from engine.grid import GROUPS, PROFILES, load_results, read_json  # noqa: E402
from engine.stats import batch_table, format_table, summarize  # noqa: E402
from report import discussion, figures, render, tables  # noqa: E402
from train_utils import RunConfig  # noqa: E402

PROFILE_ORDER = ("full", "quick", "smoke")  # the default is the first one with results
SECTION_GROUPS = ("norm", "aug", "lr", "batch")
TEMPLATE = REPO / "report" / "template.md.j2"
DEFAULT_OUT = REPO / "report" / "lab3_report.pdf"
DEFAULT_BUILD = REPO / "report" / "build"


def pick_profile(results_dir: str | Path, profile: str | None = None) -> str:
    """`profile` if given (and known), else the best one with saved results."""
    if profile is not None:
        if profile not in PROFILES:
            raise LabError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        return profile
    for p in PROFILE_ORDER:
        if any((Path(results_dir) / p).glob("*__seed*.json")):
            return p
    raise LabError(
        f"no results in {Path(results_dir)}/{{{','.join(PROFILE_ORDER)}}}; run "
        "`python experiments.py run --profile quick --seeds 2` (or full on a GPU) first"
    )


def figure(path: Path, html_dir: Path, caption: str, cls: str = "") -> str:
    """A raw-HTML figure block for the Markdown (blank lines around it keep it a block)."""
    src = Path(path).resolve().relative_to(html_dir.resolve()).as_posix()
    klass = f' class="{cls}"' if cls else ""
    return (f'\n<figure{klass}><img src="{src}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>\n")  # fmt: skip


def _ordered_names(rows: list[dict], group: str) -> list[str]:
    """The experiments of `group` in the grid's order, then any extra runs (e.g. overrides)."""
    present = [r["name"] for r in rows if r["group"] == group]
    known = [n for n in GROUPS.get(group, {}) if n in present]
    return known + [n for n in present if n not in known]


def _scale_text(profile: str) -> str:
    p = PROFILES[profile]
    parts = [f"epochs x{p['epochs_scale']:g}"]
    labels = (("width", "width {}"), ("train_subset", "{} training images"),
              ("val_size", "{} validation images"), ("test_subset", "{} test images"))  # fmt: skip
    parts += [fmt.format(p[k]) for k, fmt in labels if k in p]
    return ", ".join(parts)


def _seeds_caption(results, shown) -> str:
    """Which seeds each line of a figure averages, from the results (never "over seeds" for
    one seed)."""
    parts = []
    for n in shown:
        seeds = [r.get("seed") for r in results.get(n, [])]
        parts.append(f"{n}: " + (f"seed {seeds[0]} only" if len(seeds) == 1
                                 else f"mean ± std of seeds {', '.join(map(str, seeds))}"))  # fmt: skip
    return "; ".join(parts)


def _group_body(group, names, results, rows, profile, fig_dir, html_dir, stopped) -> dict:
    if not names:
        why = [f"{s['name']} seed {s['seed']} ({s['epochs']} epochs)" for s in stopped
               if grid.GROUP_OF.get(s["name"]) == group]  # fmt: skip
        text = (
            f"**No {group} run finished in the {profile} profile**, so this section has no results"
        )
        if why:
            text += (
                f": the job's logs show {', '.join(why)} started and stopped when the GPU "
                "session's time ran out, before their last epoch"
            )
        text += (f". Run them with `python experiments.py run {group} --profile {profile} "
                 "--seeds 3`; the report fills this section from their results.\n")  # fmt: skip
        return {"body": text, "discussion": "", "conclusion": "*The data cannot decide: no runs.*"}
    shown = (["baseline"] if "baseline" in results else []) + names
    path = figures.overlay(results, shown, f"{group}: train/val curves ({profile})",
                           fig_dir / f"overlay_{group}.png")  # fmt: skip
    caption = (f"Train and validation loss and accuracy per epoch, {group} runs against the "
               f"baseline ({profile} profile; {_seeds_caption(results, shown)}).")  # fmt: skip
    return {
        "body": f"{tables.summary_table(rows, shown)}\n{figure(path, html_dir, caption)}\n",
        "discussion": discussion.group_discussion(results, names),
        "conclusion": discussion.group_conclusion(rows, names),
    }


def _augment_figure(data_set, data_dir, fig_dir, html_dir, results) -> str:
    if data_set is None:
        try:
            data_set = load_cifar10(data_dir, download=False)
        except LabError as e:
            return f"*No example images: {discussion.clean(e)}*\n"
    labels = data_set.train_labels.tolist()
    idx = [labels.index(c) for c in range(len(CLASSES)) if c in labels]  # one per class
    runs = [(n, results[n][0]) for n in GROUPS["aug"] if results.get(n)]
    if runs:  # what each run saw: its preset under its own normalization
        rows = [(n, r["config"]["augment"], r["norm_stats"]["mean"], r["norm_stats"]["std"])
                for n, r in runs]  # fmt: skip
        modes = sorted({r["norm_stats"]["mode"] for _, r in runs})
    else:  # no aug runs: the presets under the baseline's setting (no normalization)
        rows = [(p, p, (0.0,) * 3, (1.0,) * 3) for p in augment.PRESETS if p != "none"]
        modes = ["none"]
    rows = [("original", "none", (0.0,) * 3, (1.0,) * 3), *rows]
    path, failed = figures.augmentation_examples(data_set.train_images[idx],
                                                 [labels[i] for i in idx], CLASSES, rows,
                                                 fig_dir / "augment.png")  # fmt: skip
    square = ("black: these runs were not normalized, and cutout writes 0 after normalization"
              if modes == ["none"] else "0 after each run's normalization (" + ", ".join(modes)
              + "), shown de-normalized")  # fmt: skip
    caption = (f"The first training image of each class, under each {'run' if runs else 'preset'}"
               f"'s augmentation and normalization ({', '.join(modes)}); every row uses the same "
               f"random crop and flip, so a row shows what its transform adds. Cutout squares are "
               f"{square}.")  # fmt: skip
    out = figure(path, html_dir, caption)
    for f in failed:
        print(f"warning: augmentation preset failed: {f}", file=sys.stderr)
        out += f"\n*The preset {f.split(':')[0]} raised an error and is left blank: `{f}`.*\n"
    return out


def _lr_context(results, rows, results_dir, profile, fig_dir, html_dir) -> dict:
    names = (["baseline"] if "baseline" in results else []) + _ordered_names(rows, "lr")
    out: dict = {"figure": "", "range": None}
    if names:
        path, skipped = figures.lr_schedules(results, names, fig_dir / "lr_schedules.png")
        caption = "Learning rate per step of each run, from its saved configuration."
        if skipped:
            caption += f" Not shown (other steps per epoch): {', '.join(skipped)}."
        out["figure"] = figure(path, html_dir, caption, "small")
    range_file = Path(results_dir) / profile / "lr_range.json"
    r, problem = read_json(range_file, ("suggestion", "lrs", "min_lr", "max_lr"))
    if range_file.exists() and r is None:
        print(f"warning: skipping {range_file}: {problem}", file=sys.stderr)
    if r is not None:
        s = r["suggestion"]
        path = figures.lr_range(r, fig_dir / "lr_range.png")
        out["range"] = {
            "steps_run": len(r["lrs"]), "min_lr": f"{r['min_lr']:g}", "max_lr": f"{r['max_lr']:g}",
            "min_loss_lr": f"{s['min_loss_lr']:.3g}", "steepest_lr": f"{s['steepest_lr']:.3g}",
            "max_lr_s": f"{s['max_lr']:.3g}", "base_lr_s": f"{s['base_lr']:.3g}",
            "warning": s.get("warning", ""),
            "figure": figure(path, html_dir, f"LR range test (results/{profile}/lr_range.json, "
                             f"batch {r.get('config', {}).get('batch_size', '?')}).", "small"),
            "raw": r,
        }  # fmt: skip
    return out


def _final_context(results, rows, profile, fig_dir, html_dir) -> dict:
    by_name = {r["name"]: r for r in rows}
    finished = [r for r in rows if r["test_acc"]["n"] > 0]
    if "final" in by_name and by_name["final"]["test_acc"]["n"] > 0:
        name = "final"
        intro = (
            f"The `final` recipe (`experiments.py`): {_config_text(results[name][0]['config'])}."
        )
    elif finished:
        name = max(finished, key=lambda r: r["last_val_acc"]["mean"] or 0)["name"]
        intro = (f"*No finished `final` run in the {profile} profile* (run `python experiments.py "
                 f"run final --profile {profile}`). Shown instead: `{name}`, the experiment with "
                 "the best mean last-epoch validation accuracy (chosen on validation, not test).")  # fmt: skip
    else:
        return {"name": "none", "intro": "*No finished run.*", "table": "", "target": "no finished run.",
                "test_loss": "", "history_figure": "", "confusion_figure": "", "classes": ""}  # fmt: skip
    row, runs = by_name[name], results[name]
    acc, loss = row["test_acc"], row["test_loss"]
    hist = figures.final_history(name, runs, fig_dir / "final_history.png")
    conf = figures.summed_confusion(runs)
    out = {
        "name": name,
        "intro": intro,
        "table": tables.summary_table(rows, ["baseline", name] if name != "baseline" else [name]),
        "target": tables.target_sentence(acc["mean"], acc["std"], acc["n"]),
        "test_loss": ""
        if loss["mean"] is None
        else f"{loss['mean']:.4f}" + (f" ± {loss['std']:.4f}" if loss["std"] is not None else ""),
        "history_figure": figure(
            hist,
            html_dir,
            f"{name}: loss and accuracy per epoch ({_seeds_caption(results, [name])}).",
        ),
        "confusion_figure": "",
        "classes": "",
    }
    if conf is not None:
        seeds = sum(1 for r in runs if r.get("confusion") is not None)
        path = figures.confusion(conf, CLASSES, f"{name}: test confusion ({seeds} seed(s))",
                                 fig_dir / "final_confusion.png")  # fmt: skip
        how = "summed over those seeds" if seeds > 1 else f"seed {runs[0].get('seed')} only"
        out["confusion_figure"] = figure(
            path, html_dir, f"Test confusion matrix, rows normalized ({how}).", "small"
        )
        out["classes"] = ", ".join(
            f"{CLASSES[i]} {100 * a:.1f}%" for i, a in tables.per_class(conf)
        )
    return out


def _config_text(cfg: Mapping) -> str:
    keys = ("norm", "augment", "optimizer", "nesterov", "lr", "max_lr", "schedule", "pct_start",
            "batch_size", "epochs", "label_smoothing", "tta", "width")  # fmt: skip
    return ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg and cfg[k] not in (None, False))


def _excerpts() -> dict:
    """The implementation of each tuning method, read from the source at build time."""
    ex = discussion.code_excerpt
    return {
        "norm": ex(normalization_stats, max_lines=30) + "\n" + ex(get_mean_std, max_lines=14),
        "aug": ex(augment.float_steps, max_lines=26) + "\n" + ex(augment.cutout),
        "lr": ex(schedules._base, max_lines=30) + "\n" + ex(schedules.lr_at),
        "batch": ex(RunConfig.make_schedule),
    }


def make_context(results, profile, fig_dir, html_dir, results_dir, data=None, data_dir=None,
                 student_id=None, author=None) -> dict:  # fmt: skip
    """Everything the template needs, computed from `results` (load_results of one profile)."""
    rows = summarize(results)
    base_cfg = results["baseline"][0]["config"] if "baseline" in results else next(
        iter(results.values()))[0]["config"]  # fmt: skip
    log_dir = Path(results_dir) / profile / "gpu_run"
    stopped = discussion.interrupted_runs(log_dir, results) if log_dir.is_dir() else []
    groups = {}
    for g in SECTION_GROUPS:
        names = _ordered_names(rows, g)
        groups[g] = {"names": names, **_group_body(g, names, results, rows, profile, fig_dir,
                                                   html_dir, stopped)}  # fmt: skip
    norm_names = (["baseline"] if "baseline" in results else []) + groups["norm"]["names"]
    btable = batch_table(results)
    prov = tables.provenance(results)
    prov.update(data=[discussion.clean(d) for d in prov["data"]],
                hardware=[discussion.clean(h) for h in prov["hardware"]],
                commands=sorted({discussion.clean(c) for c in prov["commands"]}))  # fmt: skip
    lr = _lr_context(results, rows, results_dir, profile, fig_dir, html_dir)
    epochs_of = {n: grid.make_config(n, profile).epochs for n in grid.EXPERIMENTS}
    # A stopped run trained the recipe of its finished siblings, which may predate grid.py's.
    epochs_of.update({n: rs[0]["config"]["epochs"] for n, rs in results.items()
                      if rs and "epochs" in rs[0].get("config", {})})  # fmt: skip
    # The recipe the saved final run used (its config), which may be older than grid.py's.
    planned = grid.EXPERIMENTS.get("final", {})
    why = getattr(grid, "FINAL_WHY", {}) or {}
    final_change, recipe_note = dict(planned), ""
    if results.get("final"):
        ran = results["final"][0]["config"]
        final_change = {k: v for k, v in ran.items()
                        if k not in ("name", "seed") and base_cfg.get(k) != v}  # fmt: skip
        why = {k: v for k, v in why.items() if planned.get(k) == ran.get(k)}
        changed = sorted(k for k, v in planned.items() if ran.get(k) != v)
        if changed:
            recipe_note = ("`engine/grid.py` now defines a different final recipe ("
                           + ", ".join(f"{k} {planned[k]}" for k in changed)
                           + "), which has not run in this profile; the table is the recipe "
                           "that produced the results below.")  # fmt: skip
    return {
        "profile": profile,
        "preview": profile in tables.PREVIEW_PROFILES,
        "profile_scale": _scale_text(profile),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "student_id": student_id,
        "author": author,
        "prov": prov,
        "base_cfg": base_cfg,
        "baseline_table": tables.summary_table(rows, ["baseline"]),
        "groups": groups,
        "code": _excerpts(),
        "norm_stats_table": tables.norm_stats_table(results, norm_names),
        "sampled_vs_exact": tables.sampled_vs_exact(results),
        "aug": {
            "pad": augment.PAD,
            "rotate": augment.ROTATE_DEG,
            "jitter": augment.JITTER,
            "noise": augment.NOISE_SIGMA,
            "cutout": augment.CUTOUT,
            "figure": _augment_figure(data, data_dir, fig_dir, html_dir, results),
        },
        "lr": lr,
        "batch_table": format_table(btable) if btable else "",
        "final": _final_context(results, rows, profile, fig_dir, html_dir),
        "recipe": discussion.final_recipe(
            results, rows, final_change, base_cfg, why, grid.GROUPS, (lr["range"] or {}).get("raw")
        )
        + (f"\n{recipe_note}\n" if recipe_note else ""),  # fmt: skip
        "no_runs": [g for g in SECTION_GROUPS if not groups[g]["names"]],
        "arch": tables.architecture(base_cfg.get("width")),
        "seeds": discussion.seed_lines(results),
        "missing": discussion.missing_lines(results, grid.GROUPS, profile),
        "difficulties": discussion.difficulties(results, results_dir, profile, epochs_of),
        "conclusion": tables.verdict_lines(rows) or "*No experiment could be compared.*",
        "runs_table": tables.runs_table(results),
    }


def render_markdown(context: Mapping, template: str | Path = TEMPLATE) -> str:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)  # Markdown, not HTML  # fmt: skip
    try:
        return env.from_string(Path(template).read_text(encoding="utf-8")).render(**context)
    except jinja2.TemplateError as e:
        raise LabError(f"template {template}: {e}") from None


def build(profile: str | None = None, results_dir: str | Path = "results",
          out: str | Path = DEFAULT_OUT, engine: str = "auto", template: str | Path = TEMPLATE,
          build_dir: str | Path = DEFAULT_BUILD, data=None, data_dir=None,
          student_id: str | None = None, author: str | None = None) -> dict:  # fmt: skip
    """Build the report; returns {"profile", "markdown", "html", "pdf" (None for engine html)}."""
    profile = pick_profile(results_dir, profile)
    results = load_results(profile, results_dir)
    if not results:
        raise LabError(f"no results in {Path(results_dir) / profile}; run "
                       f"`python experiments.py run --profile {profile}` first")  # fmt: skip
    if not Path(template).is_file():
        raise LabError(f"template {template} not found")
    pdf_engine = None if engine == "html" else render.pick_engine(engine)  # fail before drawing
    html_dir = Path(build_dir) / profile
    fig_dir = html_dir / "fig"
    fig_dir.mkdir(parents=True, exist_ok=True)
    ctx = make_context(results, profile, fig_dir, html_dir, results_dir, data=data,
                       data_dir=data_dir, student_id=student_id, author=author)  # fmt: skip
    markdown = render_markdown(ctx, template)
    md_path, html_path = html_dir / "report.md", html_dir / "report.html"
    atomic_write(md_path, lambda f: f.write(markdown.encode()))
    page = render.markdown_to_html(markdown, f"Lab 3 report ({profile})")
    atomic_write(html_path, lambda f: f.write(page.encode()))
    pdf = render.html_to_pdf(html_path, out, pdf_engine) if pdf_engine else None
    return {"profile": profile, "markdown": md_path, "html": html_path, "pdf": pdf,
            "engine": pdf_engine}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--profile", default=None, help="full | quick | smoke (default: best with results)"
    )
    ap.add_argument("--results", default="results", help="results folder (default: results)")
    ap.add_argument(
        "--out", default=str(DEFAULT_OUT), help="the PDF (default: report/lab3_report.pdf)"
    )
    ap.add_argument(
        "--engine",
        default="auto",
        choices=("auto", *render.ENGINES, "html"),
        help="PDF engine (default: weasyprint, else chromium); html: no PDF",
    )
    ap.add_argument("--template", default=str(TEMPLATE), help="Markdown + Jinja2 template")
    ap.add_argument("--build-dir", default=str(DEFAULT_BUILD), help="intermediate files")
    ap.add_argument(
        "--data-dir",
        default=None,
        help="CIFAR-10 for the augmentation examples (default: $LAB3_DATA_DIR or ./data)",
    )
    ap.add_argument("--student-id", default=None, help="printed on the title page")
    ap.add_argument("--name", "--author", dest="author", default=None,
                    help="the student's name, printed on the title page")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = build(args.profile, args.results, args.out, args.engine, args.template, args.build_dir,
                data_dir=args.data_dir, student_id=args.student_id, author=args.author)  # fmt: skip
    what = res["pdf"] or res["html"]
    label = " (PREVIEW, not real results)" if res["profile"] in tables.PREVIEW_PROFILES else ""
    print(f"wrote {what} from the {res['profile']} profile{label} "
          f"[{res['engine'] or 'html only'}, {time.perf_counter() - t0:.1f} s]")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
