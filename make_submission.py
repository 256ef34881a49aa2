"""Pack the hand-in: <student id>_lab3.zip with the executed notebook, resnet18.py, the report
(the notebook exported to PDF, with a title page), the local modules the notebook imports, the
results files it replays, requirements.txt and a README for the grader, so that the notebook
re-runs in replay mode from the unpacked folder with only CIFAR-10 added.

    python make_submission.py --student-id 312551001 --name "王小明"
    python make_submission.py --student-id 312551001 --name "王小明" --notebook student_lab3.ipynb \\
        --results results --out . [--pdf ready.pdf] [--force] [--allow-preview]

Checks before packing, each failure one line on stderr and exit status 2:
- the student id is 6 to 12 ASCII letters or digits (NYCU's 312551001 style; no spaces, no
  dashes), since it names the files the graders sort by, and neither it nor the name is a
  placeholder (000000000, "Student Name", empty);
- the notebook has been run: every code cell has been executed, none ended in an error, some
  produced output, and the outputs contain the "Test acc:" lines the training prints;
- its results are not a preview: outputs naming the smoke or quick profile (the training log
  prints "[<run> seed <k>, profile <name>]") are refused unless --allow-preview;
- results/<profile>/ holds the results files the notebook replays, for every profile its outputs
  show (the lab's own and the `cpu` study beside it);
- the PDF is built from that notebook by report/export_notebook.py (weasyprint or Chromium),
  or given with --pdf (then it must be a PDF, and where poppler's pdftotext is installed, not a
  preview);
- an existing zip is never replaced without --force. The zip is written to a temporary file
  and moved into place, so an interrupted run never leaves half a zip under the final name.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from engine.checkpoint import atomic_write
from engine.errors import LabError, run_cli

STUDENT_ID = re.compile(r"[A-Za-z0-9]{6,12}")
PREVIEW_PROFILES = ("smoke", "quick")
# "[baseline seed 0, profile quick]" (experiments.py), "profile: quick", "PROFILE = 'quick'".
PROFILE_RE = re.compile(r"\bprofile\b\s*[:=]?\s*['\"]?(full|cpu|quick|smoke)\b", re.IGNORECASE)
MAIN_PROFILE_RE = re.compile(r"^profile: (full|cpu|quick|smoke) \{", re.MULTILINE)
TEST_ACC = "Test acc:"
PREVIEW_BANNER = "PREVIEW: profile"  # lab/notebook.py preview_banner, at the notebook's top
PLACEHOLDER_IDS = ("123456789", "12345678", "1234567", "123456")
PLACEHOLDER_NAMES = (
    "student name",
    "your name",
    "name",
    "student",
    "firstname lastname",
    "first last",
    "xxx",
    "todo",
)


def check_student_id(student_id: str) -> str:
    if not STUDENT_ID.fullmatch(student_id or ""):
        raise LabError(
            f"student id {student_id!r} must be 6 to 12 ASCII letters or digits, e.g. 312551001"
        )
    if len(set(student_id)) == 1 or student_id in PLACEHOLDER_IDS:
        raise LabError(
            f"student id {student_id!r} is a placeholder; pass your own with --student-id"
        )
    return student_id


def check_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name or name.lower() in PLACEHOLDER_NAMES or set(name) <= set("x?-_. "):
        raise LabError(f"name {name!r} is a placeholder or empty; pass your own with --name")
    return name


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise LabError(f"{what} {path} not found; pass its path with --{what}")
    return path


def output_text(output: dict) -> str:
    """The text a notebook output shows: stream text, or the text/plain of a result."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else str(text)


def check_notebook(path: Path, allow_preview: bool = False) -> dict:
    """Refuse a notebook that was not run to the end with results; return what was found."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb["cells"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise LabError(
            f"{path} is not a Jupyter notebook ({type(e).__name__}); save it from Jupyter"
        ) from None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise LabError(
            f"{path} is not a Jupyter notebook (its cells are not a list of cells); "
            "save it from Jupyter"
        )
    code = [
        (i + 1, c)
        for i, c in enumerate(cells)
        if c.get("cell_type") == "code" and "".join(c.get("source", "")).strip()
    ]
    if not code:
        raise LabError(f"{path} has no code cells")
    unrun = [i for i, c in code if c.get("execution_count") is None]
    if unrun:
        raise LabError(
            f"{path} has {len(unrun)} code cell(s) never run (first: cell {unrun[0]}); run all "
            "cells (Kernel > Restart Kernel and Run All Cells) and save before packing"
        )
    for i, c in code:
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                raise LabError(
                    f"{path} cell {i} ended with an error ({out.get('ename', 'error')}: "
                    f"{str(out.get('evalue', ''))[:80]}); fix it, rerun all cells and save"
                )
    texts = [output_text(o) for _, c in code for o in c.get("outputs", [])]
    if not any(c.get("outputs") for _, c in code):
        raise LabError(f"{path} has no outputs; run all cells and save before packing")
    test_lines = [ln.strip() for t in texts for ln in t.splitlines() if TEST_ACC in ln]
    if not test_lines:
        raise LabError(
            f"{path} shows no '{TEST_ACC}' line, so no test results; run the training cells and "
            "save before packing"
        )
    profiles = sorted({m.group(1).lower() for t in texts for m in PROFILE_RE.finditer(t)})
    preview = [p for p in profiles if p in PREVIEW_PROFILES]
    if preview and not allow_preview:
        raise LabError(
            f"{path} shows results of the {' and '.join(preview)} profile (a preview, not the "
            "real runs); rerun with --profile full, or pass --allow-preview to pack it anyway"
        )
    # the set-up cell's "profile: <name> {...}" line names the notebook's own profile: listed
    # first, before a study shown beside it
    main = [m.group(1) for t in texts for m in MAIN_PROFILE_RE.finditer(t)]
    if main and main[0] in profiles:
        profiles.remove(main[0])
        profiles.insert(0, main[0])
    return {"profiles": profiles, "test_lines": test_lines}


def check_report(path: Path, allow_preview: bool = False) -> bool:
    """The report must be a PDF; where pdftotext exists, refuse a preview report. Returns
    whether the preview check could run."""
    with path.open("rb") as f:
        if f.read(5) != b"%PDF-":
            raise LabError(f"report {path} is not a PDF; leave out --pdf to export the notebook")
    if shutil.which("pdftotext") is None:
        return False
    proc = subprocess.run(
        ["pdftotext", "-l", "1", str(path), "-"], capture_output=True, text=True, timeout=60
    )
    if PREVIEW_BANNER in " ".join(proc.stdout.split()) and not allow_preview:
        raise LabError(
            f"report {path} shows preview results (smoke/quick); rerun the notebook with "
            "LAB3_PROFILE=full, or pass --allow-preview to pack it anyway"
        )
    return True


def check_model(path: Path) -> None:
    try:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as e:
        raise LabError(f"{path} is not valid Python ({e}); fix it before packing") from None


REPO = Path(__file__).resolve().parent
# How to install it, beside the code (the project's README names paths the zip does not hold;
# the grader's README is written by grader_readme).
EXTRAS = ("requirements.txt",)
# The command line the zip's README tells the grader to train a run with.
SCRIPTS = ("experiments.py",)
GRADER_README = "README.md"


def _imported_names(tree: ast.AST) -> set[str]:
    """Dotted names an AST imports at any depth; `from a import b` gives a and a.b (b may be a
    submodule). Relative imports are resolved by the caller's package, so they come back with
    their level as leading dots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(
                f"{base}.{alias.name}" if node.module else base + alias.name for alias in node.names
            )
    return names


def _module_file(name: str, root: Path) -> list[Path]:
    """The files under `root` that importing `name` runs (each package's __init__.py, then the
    module), or [] when `name` is not a local module."""
    parts, files = name.split("."), []
    for i in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:i])
        if (base / "__init__.py").is_file():
            files.append(base / "__init__.py")
        elif base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
            break
        else:
            break
    return files


def notebook_code(path: Path) -> list[str]:
    """The code cells of a notebook, IPython magics and shell lines dropped."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cells = []
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            src = c.get("source", "")
            src = "".join(src) if isinstance(src, list) else str(src)
            cells.append(
                "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!")))
            )
    return cells


def local_modules(notebook: str | Path, root: str | Path = REPO, scripts=()) -> list[str]:
    """Paths (relative to `root`, posix) of every module under `root` that the notebook (and the
    `scripts`, paths relative to `root`) import, directly or through another local module, with
    their packages' __init__.py."""
    root = Path(root).resolve()
    todo: list[tuple[str, Path | None]] = []
    sources = notebook_code(Path(notebook))
    sources += [(root / f).read_text(encoding="utf-8") for f in scripts if (root / f).is_file()]
    for src in sources:
        try:
            todo += [(n, None) for n in _imported_names(ast.parse(src))]
        except SyntaxError:
            continue  # a cell of shell or magic syntax: nothing to import from it
    found: set[Path] = set()
    while todo:
        name, importer = todo.pop()
        if name.startswith("."):  # relative: from the importer's package
            level = len(name) - len(name.lstrip("."))
            pkg = importer.parent.relative_to(root).parts if importer else ()
            pkg = pkg[: len(pkg) - (level - 1)] if level > 1 else pkg
            name = ".".join([*pkg, *filter(None, name.lstrip(".").split("."))])
        for f in _module_file(name, root):
            if f not in found:
                found.add(f)
                todo += [(n, f) for n in _imported_names(ast.parse(f.read_text(encoding="utf-8")))]
    return sorted(f.relative_to(root).as_posix() for f in found)


def results_files(
    notebook_profiles: list[str], results: Path, profile: str | None
) -> tuple[list[str], list[Path]]:
    """The profiles whose results the notebook replays and their files: results/<profile>/*.json
    (every run's file and lr_range.json) and the logs a cut job left a folder down (*/*.log: the
    notebook reads unfinished runs from them) of `profile`, or of every profile the outputs show
    that has results."""
    if profile is None and not notebook_profiles:
        raise LabError("the notebook's outputs show no profile; pass --profile")
    packed, files = [], []
    for p in [profile] if profile else notebook_profiles:
        found = sorted(f for f in (Path(results) / p).glob("*.json") if f.is_file())
        if found:
            packed.append(p)
            files += found + sorted(f for f in (Path(results) / p).glob("*/*.log") if f.is_file())
    if not files:
        where = ", ".join(str(Path(results) / p) for p in [profile] if p) or (
            ", ".join(str(Path(results) / p) for p in notebook_profiles)
        )
        raise LabError(
            f"no results files in {where}; pass --results, the folder the notebook read (its "
            "RESULTS_DIR)"
        )
    return packed, files


def grader_readme(
    sid: str, name: str, profiles: list[str], notebook: str, pdf: str, modules: list[str], n: int
) -> str:
    """The zip's README: what is where, how to re-run the notebook in replay mode, and how to
    train a run again."""
    tops = sorted({m.split("/")[0] for m in modules})
    main = profiles[0]
    return f"""Lab 3 hand-in of {name} ({sid})
================================

What is where
- {pdf}: the report, the executed notebook exported to PDF (title page first).
- {notebook}: the executed notebook, with its outputs as the student ran it.
- resnet18.py: the model.
- results/{{{",".join(profiles)}}}/: the {n} results files the notebook replays (one JSON per run
  and seed, with its per-epoch log; lr_range.json is the LR range test; a folder of logs, where
  there is one, holds the runs a cut job left unfinished, shown as such).
- experiments.py: the command line that trains any run of the grid.
- {", ".join(tops)}: the local modules the notebook and experiments.py import.
- requirements.txt: the Python packages.

Re-running the notebook from its results (replay mode, no training)
1. python -m venv venv && venv/bin/pip install -r requirements.txt
2. Put a copy of CIFAR-10 anywhere (the notebook's set-up cell says which forms it reads) and
   point LAB3_DATA_DIR at it.
3. In this folder:
     LAB3_PROFILE={main} LAB3_TRAIN_MISSING=0 LAB3_DATA_DIR=/path/to/cifar10 \\
       venv/bin/jupyter nbconvert --to notebook --execute {notebook} --output rerun.ipynb
   Every run is replayed from results/ and prints its log and test line; with
   LAB3_TRAIN_MISSING=0 nothing trains (a run without a results file is reported as not run).

Training a run again (e.g. the final model; a GPU for the full profile)
     venv/bin/python experiments.py list
     venv/bin/python experiments.py run final --profile {main} --data-dir /path/to/cifar10 \\
       --out retrained
   The new results file, retrained/{main}/final__seed0.json, records the same configuration as
   results/{main}/final__seed0.json; compare their test accuracy and log.
"""


def make_submission(
    student_id: str,
    name: str = "",
    notebook: str | Path = "student_lab3.ipynb",
    report: str | Path | None = None,
    model: str | Path = "resnet18.py",
    out: str | Path = ".",
    force: bool = False,
    allow_preview: bool = False,
    root: str | Path = REPO,
    results: str | Path | None = None,
    profile: str | None = None,
) -> tuple[Path, dict]:
    """Check the inputs and write <out>/<id>_lab3.zip (see the module's docstring); `report` is a
    ready PDF, or None to export the notebook; returns (zip path, what was found)."""
    sid = check_student_id(student_id)
    name = check_name(name)
    nb = _need_file(Path(notebook), "notebook")
    py = _need_file(Path(model), "model")
    found = check_notebook(nb, allow_preview)
    check_model(py)
    root = Path(root)
    results = Path(results or root / "results")
    profiles, result_files = results_files(found["profiles"], results, profile)
    target = Path(out) / f"{sid}_lab3.zip"
    if target.exists() and not force:
        raise LabError(f"{target} already exists; pass --force to replace it")
    modules = local_modules(nb, root, scripts=SCRIPTS)
    nb_name, pdf_name = f"{sid}_lab3.ipynb", f"{sid}_lab3.pdf"
    with tempfile.TemporaryDirectory(prefix="lab3-submission-") as tmp:
        if report is None:
            from report import export_notebook

            pdf = export_notebook.export(nb, Path(tmp) / pdf_name, student_id=sid, name=name)
            found["report_checked"] = True  # built here from the checked notebook
        else:
            pdf = _need_file(Path(report), "pdf")
            found["report_checked"] = check_report(pdf, allow_preview)
        members: dict[str, Path | str] = {nb_name: nb, "resnet18.py": py, pdf_name: pdf}
        for rel in [*modules, *(e for e in (*SCRIPTS, *EXTRAS) if (root / e).is_file())]:
            members.setdefault(rel, root / rel)  # resnet18.py: the --model file given
        for f in result_files:
            members[f"results/{f.relative_to(results).as_posix()}"] = f
        n_runs = sum(f.suffix == ".json" for f in result_files)  # the logs aside
        members[GRADER_README] = grader_readme(
            sid, name, profiles, nb_name, pdf_name, modules, n_runs
        )

        def write(f) -> None:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                for arcname, src in members.items():
                    if isinstance(src, str):
                        z.writestr(arcname, src)
                    else:
                        z.write(src, arcname=arcname)

        atomic_write(target, write)
    found["members"] = list(members)
    found["profile"] = ", ".join(profiles)
    return target, found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--student-id", required=True, help="6-12 ASCII letters/digits, e.g. 312551001")
    ap.add_argument("--notebook", default="student_lab3.ipynb", help="the executed notebook")
    ap.add_argument(
        "--name", required=True, help="your name, as on the title page (Chinese is fine)"
    )
    ap.add_argument("--pdf", default=None, help="a ready PDF (default: export the notebook)")
    ap.add_argument("--results", default=None, help="the results folder the notebook read")
    ap.add_argument("--profile", default=None, help="default: the one the notebook's outputs show")
    ap.add_argument("--model", default="resnet18.py", help="the model file (packed as resnet18.py)")
    ap.add_argument("--out", default=".", help="folder for <id>_lab3.zip (default: .)")
    ap.add_argument("--force", action="store_true", help="replace an existing zip")
    ap.add_argument(
        "--allow-preview",
        action="store_true",
        help="pack results of the smoke/quick profile anyway",
    )
    args = ap.parse_args(argv)
    target, found = make_submission(
        args.student_id,
        args.name,
        args.notebook,
        args.pdf,
        args.model,
        args.out,
        args.force,
        args.allow_preview,
        results=args.results,
        profile=args.profile,
    )
    profiles = ", ".join(found["profiles"]) or "not shown"
    print(f"wrote {target}: {', '.join(found['members'])}")
    print(
        f"  notebook: {len(found['test_lines'])} '{TEST_ACC}' line(s), last: "
        f"{found['test_lines'][-1]}; profile(s) in the outputs: {profiles}"
    )
    if any(p in PREVIEW_PROFILES for p in found["profiles"]):
        print("  warning: packed with preview results (--allow-preview)", file=sys.stderr)
    if not found["report_checked"]:
        print("  note: pdftotext not found, so the report was not checked for the preview banner")
    return 0


if __name__ == "__main__":
    # OSError: an unreadable file or a read-only --out
    sys.exit(run_cli(main, errors=(LabError, OSError)))
