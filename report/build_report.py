"""Build the lab report, a PDF whose every number comes from the saved results.

    python report/build_report.py                          # best profile found: full > quick > smoke
    python report/build_report.py --profile full --out report/lab3_report.pdf --student-id 312XXXXXX
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
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as `python report/build_report.py`, this folder is on the path but the lab's modules (one
# level up) are not.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine import augment  # noqa: E402
from engine.checkpoint import atomic_write  # noqa: E402
from engine.data import CLASSES  # noqa: E402
from engine.errors import LabError, run_cli  # noqa: E402
from engine.grid import GROUPS, PROFILES, load_results  # noqa: E402
from engine.stats import batch_table, format_table, summarize  # noqa: E402
from report import figures, render, tables  # noqa: E402

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


def _group_body(group, names, results, rows, profile, fig_dir, html_dir) -> str:
    if not names:
        return (f"*No {group} runs in the {profile} profile: run `python experiments.py run "
                f"{group} --profile {profile} --seeds 3`.*\n")  # fmt: skip
    shown = (["baseline"] if "baseline" in results else []) + names
    path = figures.overlay(results, shown, f"{group}: train/val curves ({profile})",
                           fig_dir / f"overlay_{group}.png")  # fmt: skip
    caption = (f"Train and validation loss and accuracy per epoch, {group} runs against the "
               "baseline (mean ± std over seeds).")  # fmt: skip
    return (f"### Results against the baseline\n\n{tables.summary_table(rows, shown)}\n"
            f"{figure(path, html_dir, caption)}\n"
            f"{tables.verdict_lines(rows, names) or '*No comparison possible.*'}\n")  # fmt: skip


def _augment_figure(data, data_dir, fig_dir, html_dir) -> str:
    if data is None:
        try:
            from engine.data import load_cifar10

            data = load_cifar10(data_dir, download=False)
        except LabError as e:
            return f"*No example images: {e}*\n"
    labels = data.train_labels.tolist()
    idx = [labels.index(c) for c in range(len(CLASSES)) if c in labels][:8]  # one per class
    path, failed = figures.augmentation_examples(data.train_images[idx], fig_dir / "augment.png")
    caption = ("Each preset on the same training images (one per class); every row uses the "
               "same random crop and flip, so a row shows what its transform adds.")  # fmt: skip
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
        out["figure"] = figure(path, html_dir, caption)
    range_file = Path(results_dir) / profile / "lr_range.json"
    if range_file.is_file():
        r = json.loads(range_file.read_text())
        s = r["suggestion"]
        path = figures.lr_range(r, fig_dir / "lr_range.png")
        out["range"] = {
            "steps_run": len(r["lrs"]), "min_lr": f"{r['min_lr']:g}", "max_lr": f"{r['max_lr']:g}",
            "min_loss_lr": f"{s['min_loss_lr']:.3g}", "steepest_lr": f"{s['steepest_lr']:.3g}",
            "max_lr_s": f"{s['max_lr']:.3g}", "base_lr_s": f"{s['base_lr']:.3g}",
            "warning": s.get("warning", ""),
            "figure": figure(path, html_dir, f"LR range test ({range_file}).", "small"),
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
        name = max(finished, key=lambda r: r["best_val_acc"]["mean"] or 0)["name"]
        intro = (f"*No finished `final` run in the {profile} profile* (run `python experiments.py "
                 f"run final --profile {profile}`). Shown instead: `{name}`, the experiment with "
                 "the best mean validation accuracy (chosen on validation, not test).")  # fmt: skip
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
        "history_figure": figure(hist, html_dir, f"{name}: loss and accuracy per epoch."),
        "confusion_figure": "",
        "classes": "",
    }
    if conf is not None:
        seeds = sum(1 for r in runs if r.get("confusion") is not None)
        path = figures.confusion(conf, CLASSES, f"{name}: test confusion ({seeds} seed(s))",
                                 fig_dir / "final_confusion.png")  # fmt: skip
        out["confusion_figure"] = figure(
            path, html_dir, "Test confusion matrix, rows normalized (summed over seeds).", "small"
        )
        out["classes"] = ", ".join(
            f"{CLASSES[i]} {100 * a:.1f}%" for i, a in tables.per_class(conf)
        )
    return out


def _config_text(cfg: Mapping) -> str:
    keys = ("norm", "augment", "optimizer", "nesterov", "lr", "max_lr", "schedule", "pct_start",
            "batch_size", "epochs", "label_smoothing", "tta", "width")  # fmt: skip
    return ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg and cfg[k] not in (None, False))


def _noise_text(rows: list[dict]) -> str:
    base = next((r for r in rows if r["name"] == "baseline"), None)
    if base is None or base["test_acc"]["std"] is None:
        return "the baseline has fewer than two seeds here, so its spread is not known"
    a = base["test_acc"]
    return f"the baseline's test accuracy has a std of {100 * a['std']:.2f} pp over {a['n']} seeds"


def make_context(results, profile, fig_dir, html_dir, results_dir, data=None, data_dir=None,
                 student_id=None, author=None) -> dict:  # fmt: skip
    """Everything the template needs, computed from `results` (load_results of one profile)."""
    rows = summarize(results)
    base_cfg = results["baseline"][0]["config"] if "baseline" in results else next(
        iter(results.values()))[0]["config"]  # fmt: skip
    groups = {}
    for g in SECTION_GROUPS:
        names = _ordered_names(rows, g)
        groups[g] = {"names": names,
                     "body": _group_body(g, names, results, rows, profile, fig_dir, html_dir)}  # fmt: skip
    norm_names = (["baseline"] if "baseline" in results else []) + groups["norm"]["names"]
    btable = batch_table(results)
    return {
        "profile": profile,
        "preview": profile in tables.PREVIEW_PROFILES,
        "profile_scale": _scale_text(profile),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "student_id": student_id,
        "author": author,
        "prov": tables.provenance(results),
        "base_cfg": base_cfg,
        "baseline_table": tables.summary_table(rows, ["baseline"]),
        "groups": groups,
        "norm_stats_table": tables.norm_stats_table(results, norm_names),
        "sampled_vs_exact": tables.sampled_vs_exact(results),
        "aug": {
            "pad": augment.PAD,
            "rotate": augment.ROTATE_DEG,
            "jitter": augment.JITTER,
            "noise": augment.NOISE_SIGMA,
            "cutout": augment.CUTOUT,
            "figure": _augment_figure(data, data_dir, fig_dir, html_dir),
        },
        "lr": _lr_context(results, rows, results_dir, profile, fig_dir, html_dir),
        "batch_table": format_table(btable) if btable else "",
        "final": _final_context(results, rows, profile, fig_dir, html_dir),
        "arch": tables.architecture(base_cfg.get("width")),
        "noise": _noise_text(rows),
        "diverged": tables.diverged_lines(results),
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
    ap.add_argument("--student-id", default=None, help="printed under the title")
    ap.add_argument("--author", default=None, help="printed under the title")
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
