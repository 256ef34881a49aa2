"""Pack the hand-in, <student id>_lab3.zip, which replays from the unpacked folder with only
CIFAR-10 added (README.md, "The report and the hand-in", lists what it holds and refuses)."""

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
from report.export_notebook import export

REPO = Path(__file__).resolve().parent
PREVIEW_PROFILES = ("smoke", "quick")
# a run's "[final seed 0, profile cpu]", a section's "== ..., profile cpu =="; own "profile: full {"
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
    """Refuse a notebook not run to the end; return its test lines and profiles (its own first)."""
    try:  # a list of cells, each a dict
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = [(i, c) for i, c in enumerate(cells, 1) if c.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, or not a notebook's
        raise LabError(f"{path} is not a Jupyter notebook (its cells are not a list)") from None
    code = [(i, c) for i, c in code if "".join(c.get("source", "")).strip()]
    if unrun := [i for i, c in code if c.get("execution_count") is None]:
        raise LabError(
            f"{path}: cell {unrun[0]} was never run; run all cells (Kernel > Restart Kernel and "
            "Run All Cells) and save before packing"
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


def local_modules(notebook, root=REPO) -> list[str]:
    """The files under `root` (relative, posix) that the notebook and experiments.py import,
    directly or through each other, packages' __init__.py included."""
    root = Path(root).resolve()
    finder = modulefinder.ModuleFinder(path=[str(root)])  # libraries are not looked for
    importer = finder.add_module("__main__")
    script = root / "experiments.py"
    scripts = [script.read_text(encoding="utf-8")] if script.is_file() else []
    for src in notebook_code(notebook) + scripts:
        try:
            finder.scan_code(compile(src, "<cell>", "exec"), importer)
        except SyntaxError:
            continue  # a cell of shell or magic syntax
    files = [Path(m.__file__).resolve() for m in finder.modules.values() if m.__file__]
    return sorted(f.relative_to(root).as_posix() for f in files if f.is_relative_to(root))


def grader_readme(sid, name, profiles, notebook, pdf, modules) -> str:
    """The zip's README: what is where, how to replay the notebook, how to train a run again."""
    tops, own = ", ".join(sorted({m.split("/")[0] for m in modules})), profiles[0]
    return f"""Lab 3 hand-in of {name} ({sid})

- {pdf}: the report, the executed notebook exported to PDF; {notebook}: the notebook.
- resnet18.py: the model; {tops}: the local modules the notebook imports.
- results/{{{",".join(profiles)}}}/: what the notebook replays, one JSON per run and seed with its
  per-epoch log (lr_range.json: the LR range test; */*.log: runs a cut job left unfinished).
- experiments.py trains any run of the grid; requirements.txt lists the Python packages.

Replay the notebook (nothing trains) with CIFAR-10 anywhere (its set-up cell names the forms):
    python -m venv venv && venv/bin/pip install -r requirements.txt
    LAB3_PROFILE={own} LAB3_TRAIN_MISSING=0 LAB3_DATA_DIR=/path/to/cifar10 \\
      venv/bin/jupyter nbconvert --to notebook --execute {notebook} --output rerun.ipynb

Train the final model again (a GPU for the full profile), then compare its results file,
retrained/{own}/final__seed0.json, with results/{own}/final__seed0.json:
    venv/bin/python experiments.py run final --profile {own} --data-dir /path/to/cifar10 \\
      --out retrained
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
        pdf = export(nb, Path(tmp) / pdf_name, sid, name) if report is None else Path(report)
        if not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
            raise LabError(f"report {pdf} is not a PDF; leave out --pdf to export the notebook")
        members = {nb_name: nb, "resnet18.py": REPO / "resnet18.py", pdf_name: pdf}
        members |= {rel: REPO / rel for rel in [*modules, "experiments.py", "requirements.txt"]}
        for p in profiles:
            for f in sorted((results / p).glob("*.json")) + sorted((results / p).glob("*/*.log")):
                members[f"results/{f.relative_to(results).as_posix()}"] = f
        text = grader_readme(sid, name, profiles, nb_name, pdf_name, modules)
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
    last, shown = found["test_lines"][-1], ", ".join(found["profiles"])
    print(f"  the notebook's last test line: {last}; profile(s) in its outputs: {shown}")
    return 0


if __name__ == "__main__":
    # OSError: an unreadable input or a read-only --out
    sys.exit(run_cli(main, errors=(LabError, OSError)))
