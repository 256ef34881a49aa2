"""Pack the hand-in, <student id>_lab3.zip, so that the notebook replays from the unpacked
folder with only CIFAR-10 added: the executed notebook, resnet18.py and the report (the notebook
exported to PDF) under the handout's names, the local modules the notebook and experiments.py
import, the results files the notebook replays, requirements.txt and a README for the grader.
"""

import argparse
import json
import modulefinder
import re
import sys
import tempfile
import zipfile
from pathlib import Path

from engine.checkpoint import atomic_write
from engine.errors import LabError, run_cli

REPO = Path(__file__).resolve().parent
PREVIEW_PROFILES = ("smoke", "quick")
# A run's "[baseline seed 0, profile quick]", a section's "== norm: 3 experiment(s), profile cpu ==";
# the set-up cell's "profile: full {...}" names the notebook's own.
PROFILE_RE = re.compile(r"\bprofile\b\s*[:=]?\s*['\"]?(full|cpu|quick|smoke)\b", re.IGNORECASE)
OWN_PROFILE_RE = re.compile(r"^profile: (full|cpu|quick|smoke) \{", re.MULTILINE)
TEST_ACC = "Test acc:"
PLACEHOLDER_NAMES = ("name", "your name", "student", "student name", "first last", "todo")


def check_student_id(student_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]{6,12}", student_id):
        raise LabError(
            f"student id {student_id!r} must be 6 to 12 ASCII letters or digits, e.g. 312551001"
        )
    if len(set(student_id)) == 1 or student_id in "1234567890":  # 000000, 123456789
        raise LabError(f"student id {student_id!r} is a placeholder; pass yours with --student-id")
    return student_id


def check_name(name: str) -> str:
    name = " ".join(name.split())
    if name.lower() in PLACEHOLDER_NAMES or set(name.lower()) <= set("x?-_. "):
        raise LabError(f"name {name!r} is a placeholder or empty; pass yours with --name")
    return name


def check_notebook(path: Path, allow_preview: bool = False) -> dict:
    """Refuse a notebook not run to the end with test results; return its test lines and the
    profiles its outputs show (its own first)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (ValueError, KeyError, TypeError):  # not JSON, or not a notebook's
        cells = None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise LabError(f"{path} is not a Jupyter notebook (its cells are not a list of cells)")
    code = [(i, c) for i, c in enumerate(cells, 1) if c.get("cell_type") == "code"]
    code = [(i, c) for i, c in code if "".join(c.get("source", "")).strip()]
    unrun = [i for i, c in code if c.get("execution_count") is None]
    if unrun:
        raise LabError(
            f"{path} has {len(unrun)} code cell(s) never run (first: cell {unrun[0]}); run all "
            "cells (Kernel > Restart Kernel and Run All Cells) and save before packing"
        )
    outputs = [(i, out) for i, c in code for out in c.get("outputs", [])]
    for i, out in outputs:
        if out.get("output_type") == "error":
            err = f"{out.get('ename', 'error')}: {str(out.get('evalue', ''))[:80]}"
            raise LabError(f"{path} cell {i} ended with an error ({err}); fix it, rerun, save")
    texts = ["".join(o.get("text", o.get("data", {}).get("text/plain", ""))) for _, o in outputs]
    test_lines = [ln.strip() for t in texts for ln in t.splitlines() if TEST_ACC in ln]
    if not test_lines:
        raise LabError(f"{path} shows no '{TEST_ACC}' line; run all cells and save it first")
    profiles = sorted({m.group(1).lower() for t in texts for m in PROFILE_RE.finditer(t)})
    preview = [p for p in profiles if p in PREVIEW_PROFILES]
    if preview and not allow_preview:
        raise LabError(
            f"{path} shows results of the {' and '.join(preview)} profile (a preview, not the "
            "real runs); rerun with --profile full, or pass --allow-preview to pack it anyway"
        )
    own = next((m.group(1) for t in texts for m in OWN_PROFILE_RE.finditer(t)), None)
    return {"profiles": sorted(profiles, key=lambda p: p != own), "test_lines": test_lines}


def notebook_code(path) -> list[str]:
    """The notebook's code cells, IPython magics and shell lines blanked."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [re.sub(r"(?m)^\s*[%!].*$", "", src) for src in code]


def local_modules(notebook, root=REPO, scripts=("experiments.py",)) -> list[str]:
    """The files under `root` (relative, posix) that the notebook and `scripts` import, directly
    or through each other, packages' __init__.py included."""
    root = Path(root).resolve()
    finder = modulefinder.ModuleFinder(path=[str(root)])  # libraries are not looked for
    importer = finder.add_module("__main__")
    sources = [(root / s).read_text(encoding="utf-8") for s in scripts if (root / s).is_file()]
    for src in notebook_code(notebook) + sources:
        try:
            finder.scan_code(compile(src, "<cell>", "exec"), importer)
        except SyntaxError:
            continue  # a cell of shell or magic syntax
    files = [Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__]
    return sorted(f.relative_to(root).as_posix() for f in files if f.is_relative_to(root))


def grader_readme(sid, name, profiles, notebook, pdf, modules, n) -> str:
    """The zip's README: what is where, how to replay the notebook, how to train a run again."""
    tops = ", ".join(sorted({m.split("/")[0] for m in modules}))
    own = profiles[0]
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
- {tops}: the local modules the notebook and experiments.py import.
- requirements.txt: the Python packages.

Re-running the notebook from its results (replay mode, no training)
1. python -m venv venv && venv/bin/pip install -r requirements.txt
2. Put a copy of CIFAR-10 anywhere (the notebook's set-up cell says which forms it reads) and
   point LAB3_DATA_DIR at it.
3. In this folder:
     LAB3_PROFILE={own} LAB3_TRAIN_MISSING=0 LAB3_DATA_DIR=/path/to/cifar10 \\
       venv/bin/jupyter nbconvert --to notebook --execute {notebook} --output rerun.ipynb
   Every run is replayed from results/ and prints its log and test line; with
   LAB3_TRAIN_MISSING=0 nothing trains (a run without a results file is reported as not run).

Training a run again (e.g. the final model; a GPU for the full profile)
     venv/bin/python experiments.py list
     venv/bin/python experiments.py run final --profile {own} --data-dir /path/to/cifar10 \\
       --out retrained
   The new results file, retrained/{own}/final__seed0.json, records the same configuration as
   results/{own}/final__seed0.json; compare their test accuracy and log.
"""


def make_submission(
    sid, name, notebook, report, out, force=False, allow_preview=False, results=None
) -> tuple[Path, dict]:
    """Check the inputs and write <out>/<id>_lab3.zip; `report` is a ready PDF, or None to export
    the notebook. Returns the zip's path and what was found."""
    sid, name, nb = check_student_id(sid), check_name(name), Path(notebook)
    if not nb.is_file():
        raise LabError(f"notebook {nb} not found; pass its path with --notebook")
    found = check_notebook(nb, allow_preview)
    results = Path(results or REPO / "results")
    profiles = [p for p in found["profiles"] if any((results / p).glob("*.json"))]
    if not profiles:
        shown = ", ".join(found["profiles"]) or "none"
        raise LabError(
            f"no results files in {results} for the profiles the notebook shows ({shown}); pass "
            "--results, the folder the notebook read (its RESULTS_DIR)"
        )
    target = Path(out) / f"{sid}_lab3.zip"
    if target.exists() and not force:
        raise LabError(f"{target} already exists; pass --force to replace it")
    modules = local_modules(nb)
    nb_name, pdf_name = f"{sid}_lab3.ipynb", f"{sid}_lab3.pdf"
    with tempfile.TemporaryDirectory(prefix="lab3-submission-") as tmp:
        if report is None:
            from report.export_notebook import export

            pdf = export(nb, Path(tmp) / pdf_name, sid, name)
        else:
            pdf = Path(report)
            if not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
                raise LabError(f"report {pdf} is not a PDF; leave out --pdf to export the notebook")
        members = {nb_name: nb, "resnet18.py": REPO / "resnet18.py", pdf_name: pdf}
        for rel in [*modules, "experiments.py", "requirements.txt"]:
            members.setdefault(rel, REPO / rel)
        for p in profiles:
            for f in sorted((results / p).glob("*.json")) + sorted((results / p).glob("*/*.log")):
                members[f"results/{f.relative_to(results).as_posix()}"] = f
        n_runs = sum(m.startswith("results/") and m.endswith(".json") for m in members)
        text = grader_readme(sid, name, profiles, nb_name, pdf_name, modules, n_runs)
        members["README.md"] = Path(tmp) / "README.md"
        members["README.md"].write_text(text, encoding="utf-8")

        def write(f) -> None:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
                for arcname, src in members.items():
                    z.write(src, arcname)

        atomic_write(target, write)
    return target, {**found, "members": list(members), "packed": profiles}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--student-id", required=True, help="6-12 ASCII letters/digits, e.g. 312551001")
    ap.add_argument("--name", required=True, help="as on the title page (Chinese is fine)")
    ap.add_argument("--notebook", default="student_lab3.ipynb", help="the executed notebook")
    ap.add_argument("--pdf", default=None, help="a ready PDF (default: export the notebook)")
    ap.add_argument("--results", default=None, help="the results folder the notebook read")
    ap.add_argument("--out", default=".", help="folder for <id>_lab3.zip (default: .)")
    ap.add_argument("--force", action="store_true", help="replace an existing zip")
    ap.add_argument("--allow-preview", action="store_true", help="pack smoke/quick results")
    a = ap.parse_args(argv)
    target, found = make_submission(
        a.student_id, a.name, a.notebook, a.pdf, a.out, a.force, a.allow_preview, a.results
    )
    print(f"wrote {target}: {', '.join(found['members'])}")
    print(
        f"  notebook: {len(found['test_lines'])} '{TEST_ACC}' line(s), last: "
        f"{found['test_lines'][-1]}; profile(s) in the outputs: {', '.join(found['profiles'])}"
    )
    if set(found["packed"]) & set(PREVIEW_PROFILES):
        print("  warning: packed with preview results (--allow-preview)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # OSError: an unreadable input or a read-only --out
    sys.exit(run_cli(main, errors=(LabError, OSError)))
