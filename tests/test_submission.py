"""make_submission.py: the zip holds the three renamed files plus every local module the notebook
imports (and a copy unpacked elsewhere imports them), and bad input is refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

import make_submission as ms
from engine.errors import LabError

REPO = Path(__file__).resolve().parents[1]
SID = "312551001"


def write_notebook(
    path: Path,
    executed: bool = True,
    profile: str = "full",
    test_line: str = "Test loss: 0.2712 | Test acc: 0.9312",
    error: bool = False,
    code: str = "import experiments",
) -> Path:
    nb = nbformat.v4.new_notebook()
    imports = nbformat.v4.new_code_cell(code, execution_count=1 if executed else None)
    run = nbformat.v4.new_code_cell("run('final')", execution_count=2 if executed else None)
    if executed:
        run.outputs = [
            nbformat.v4.new_output(
                "stream",
                name="stdout",
                text=f"[final seed 0, profile {profile}]\nEpoch: 1\n{test_line}\n",
            )
        ]
    if error:
        run.outputs.append(
            nbformat.v4.new_output("error", ename="NameError", evalue="x", traceback=[])
        )
    nb.cells = [nbformat.v4.new_markdown_cell("# Lab 3"), imports, run]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def files(tmp_path):
    nb = write_notebook(tmp_path / "student_lab3.ipynb")
    pdf = tmp_path / "lab3_report.pdf"
    pdf.write_bytes(b"%PDF-1.7\n% a stand-in report\n")
    out = tmp_path / "out"
    out.mkdir()
    return {
        "name": "王小明",
        "notebook": nb,
        "report": pdf,
        "out": out,
    }


def test_zip_holds_the_three_renamed_files_and_the_code(files):
    target, found = ms.make_submission(SID, **files)
    assert target == files["out"] / f"{SID}_lab3.zip"
    with zipfile.ZipFile(target) as z:
        names = set(z.namelist())
        assert {f"{SID}_lab3.ipynb", "resnet18.py", f"{SID}_lab3.pdf"} <= names
        assert {
            "train_utils.py",
            "engine/__init__.py",
            "lab/grid.py",
            "engine/data.py",
            "requirements.txt",
            "README.md",
            "experiments.py",
        } <= names
        # The grader's README, not the project's; the results files the notebook replays.
        assert "Lab 3 hand-in of 王小明 (312551001)" in z.read("README.md").decode()
        saved = {f"results/full/{p.name}" for p in (REPO / "results" / "full").glob("*.json")}
        # a cut job's logs, from which the notebook reads its unfinished runs
        logs = {
            f"results/full/{p.relative_to(REPO / 'results' / 'full').as_posix()}"
            for p in (REPO / "results" / "full").glob("*/*.log")
        }
        assert saved and saved <= names and logs <= names
        assert not [n for n in names if n.startswith("results/") and n not in saved | logs]
        assert z.read("resnet18.py") == (REPO / "resnet18.py").read_bytes()
        assert z.read(f"{SID}_lab3.ipynb") == files["notebook"].read_bytes()
        assert z.read(f"{SID}_lab3.pdf") == files["report"].read_bytes()
        assert not [n for n in names if n.startswith(("tests/", "report/", "tools/"))]
    assert found["profiles"] == ["full"] and found["test_lines"][-1].endswith("0.9312")
    assert [p.name for p in files["out"].iterdir()] == [target.name]  # no temp file left


def test_zip_holds_the_study_beside_the_lab_and_the_command_that_retrains(files):
    # the set-up line names the notebook's own profile; the cpu study's runs are shown beside
    nb = nbformat.read(files["notebook"], as_version=4)
    nb.cells[1].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="profile: full {}\n"),
        nbformat.v4.new_output(
            "stream", name="stdout", text="== norm: 3 experiment(s), profile cpu ==\n"
        ),
    ]
    nbformat.write(nb, files["notebook"])
    target, found = ms.make_submission(SID, **files)
    assert found["profiles"] == ["full", "cpu"]
    with zipfile.ZipFile(target) as z:
        names = set(z.namelist())
        readme = z.read("README.md").decode()
    for profile in ("full", "cpu"):
        saved = {f"results/{profile}/{p.name}" for p in (REPO / "results" / profile).glob("*.json")}
        assert saved and saved <= names
    assert "experiments.py" in names
    assert "LAB3_PROFILE=full" in readme and "experiments.py run final --profile full" in readme


def test_local_modules_follow_imports(tmp_path):
    """Imports of every form, followed into the local modules; library imports left out."""
    import nbformat

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from . import b\nimport numpy\n")
    (tmp_path / "pkg" / "b.py").write_text("from helper import x\n")
    (tmp_path / "helper.py").write_text("x = 1\n")
    (tmp_path / "unused.py").write_text("")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport os\nfrom pkg import a")]
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert ms.local_modules(tmp_path / "n.ipynb", tmp_path) == [
        "helper.py",
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/b.py",
    ]


def test_the_notebooks_modules_are_packed_and_import_from_the_copy(files, tmp_path):
    """The committed notebook's local imports, found by parsing, all go into the zip, and a
    copy unpacked into an empty folder imports them (no path back to this checkout)."""
    notebook = REPO / "student_lab3.ipynb"
    modules = ms.local_modules(notebook)
    tops = {
        "train_utils.py",
        "resnet18.py",
        "lab/grid.py",
        "lab/notebook.py",
        "lab/stats.py",
        "engine/data.py",
        "engine/augment.py",
        "engine/schedules.py",
    }
    assert tops <= set(modules)
    assert not [m for m in modules if m.startswith(("tools/", "report/"))]  # for us, never packed
    # Every `import x` / `from x import` of the notebook that names a local file is covered.
    for src in ms.notebook_code(notebook):
        for line in src.splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                top = words[1].split(".")[0].rstrip(",")
                if (REPO / f"{top}.py").is_file() or (REPO / top / "__init__.py").is_file():
                    path = words[1].replace(".", "/")
                    assert f"{path}.py" in modules or f"{path}/__init__.py" in modules, line
    # The committed notebook's code, as an executed notebook would hold it.
    write_notebook(files["notebook"], code="\n".join(ms.notebook_code(notebook)))
    target, _ = ms.make_submission(SID, **files)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(target) as z:
        assert set(modules) <= set(z.namelist())
        z.extractall(unpacked)
    names = sorted(
        m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in modules
    )
    code = (
        "import importlib, os, sys\n"
        f"for n in {names!r}:\n"
        "    f = os.path.realpath(importlib.import_module(n).__file__)\n"
        "    assert f.startswith(os.path.realpath(os.getcwd())), (n, f)\n"
        "print('ok', len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=unpacked,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "31255",
        "3125510012345",
        "312 551001",
        "312-551001",
        "３１２５５１００１",
        "312551001\n",
        "../312551001",
        "學號312551",
    ],
)
def test_bad_ids_refused(files, bad):
    with pytest.raises(LabError, match="6 to 12 ASCII letters or digits"):
        ms.make_submission(bad, **files)
    assert not any(files["out"].iterdir())


def test_good_ids_accepted():
    for sid in ("312551001", "0816001", "A1234567", "r12345678901"[:12]):
        assert ms.check_student_id(sid) == sid


def test_existing_zip_not_overwritten_without_force(files):
    target, _ = ms.make_submission(SID, **files)
    before = target.read_bytes()
    files["report"].write_bytes(b"%PDF-1.7\n% a newer report\n")
    with pytest.raises(LabError, match="already exists; pass --force"):
        ms.make_submission(SID, **files)
    assert target.read_bytes() == before
    ms.make_submission(SID, **files, force=True)
    with zipfile.ZipFile(target) as z:
        assert z.read(f"{SID}_lab3.pdf") == b"%PDF-1.7\n% a newer report\n"


def test_unexecuted_notebook_refused(files):
    write_notebook(files["notebook"], executed=False)
    with pytest.raises(LabError, match="never run"):
        ms.make_submission(SID, **files)


def test_notebook_without_results_or_with_errors_refused(files):
    write_notebook(files["notebook"], test_line="(training skipped)")
    with pytest.raises(LabError, match="no 'Test acc:' line"):
        ms.make_submission(SID, **files)
    write_notebook(files["notebook"], error=True)
    with pytest.raises(LabError, match="ended with an error"):
        ms.make_submission(SID, **files)
    files["notebook"].write_text("not json")
    with pytest.raises(LabError, match="not a Jupyter notebook"):
        ms.make_submission(SID, **files)


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_preview_results_refused_unless_allowed(files, profile):
    write_notebook(files["notebook"], profile=profile)
    with pytest.raises(LabError, match=f"{profile} profile"):
        ms.make_submission(SID, **files)
    results = files["out"].parent / "results"
    (results / profile).mkdir(parents=True)
    (results / profile / "baseline__seed0.json").write_text("{}")
    target, found = ms.make_submission(SID, **files, allow_preview=True, results=results)
    assert target.is_file() and found["profiles"] == [profile]


def test_report_must_be_a_pdf(files):
    files["report"].write_text("# a Markdown report")
    with pytest.raises(LabError, match="is not a PDF"):
        ms.make_submission(SID, **files)


def test_failed_write_leaves_no_zip(files, monkeypatch):
    calls = []

    def failing_write(self, filename, arcname=None, *args, **kwargs):
        calls.append(arcname)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(self, filename, arcname, *args, **kwargs)

    original = zipfile.ZipFile.write
    monkeypatch.setattr(zipfile.ZipFile, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        ms.make_submission(SID, **files)
    assert not any(files["out"].iterdir())  # neither the zip nor its temporary file


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "make_submission.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_cli_errors_are_one_line(files, tmp_path):
    missing = _cli(
        "--student-id", SID, "--name", "王小明", "--notebook", "nope.ipynb", cwd=tmp_path
    )
    bad_id = _cli("--student-id", "12-34", "--name", "王小明", cwd=tmp_path)
    for proc in (missing, bad_id):
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr
    assert "notebook nope.ipynb not found" in missing.stderr


def test_cli_packs(files, tmp_path):
    proc = _cli(
        "--student-id",
        SID,
        "--name",
        "王小明",
        "--notebook",
        str(files["notebook"]),
        "--pdf",
        str(files["report"]),
        "--out",
        str(files["out"]),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{SID}_lab3.zip" in proc.stdout and "Test acc: 0.9312" in proc.stdout


@pytest.mark.parametrize(
    "sid, name",
    [
        ("000000000", "王小明"),
        ("123456789", "王小明"),
        (SID, ""),
        (SID, "Student Name"),
        (SID, "  your  name "),
    ],
)
def test_placeholders_refused(files, sid, name):
    with pytest.raises(LabError, match="placeholder"):
        ms.make_submission(sid, **{**files, "name": name})
    assert not any(files["out"].iterdir())


def test_missing_results_refused(files, tmp_path):
    with pytest.raises(LabError, match="no results files in"):
        ms.make_submission(SID, **files, results=tmp_path / "empty")


@pytest.mark.slow
def test_unpacked_zip_replays_every_section(tmp_path):
    """The grader's path: a smoke run's executed notebook is packed, unzipped into an empty
    folder and executed there in replay mode (LAB3_TRAIN_MISSING=0) with only CIFAR-10 added;
    every section prints its runs' logs and test lines, and nothing is left unrun."""
    from conftest import data_location
    from test_notebook import EXECUTE, execute

    if data_location() is None:
        pytest.skip("CIFAR-10 copy not found (set LAB3_DATA_DIR): the notebook trains on it")
    made = tmp_path / "made"
    execute(made, "trained.ipynb")  # smoke profile, trains into made/results
    from test_report import HAS_WEASYPRINT

    stand_in = None
    if not HAS_WEASYPRINT:  # no PDF engine here: a stand-in PDF
        stand_in = tmp_path / "stand_in.pdf"
        stand_in.write_bytes(b"%PDF-1.7\n% a stand-in report\n")
    out = tmp_path / "out"
    out.mkdir()
    target, found = ms.make_submission(
        SID,
        "王小明",
        made / "trained.ipynb",
        stand_in,
        out=out,
        allow_preview=True,
        results=made / "results",
    )
    assert found["packed"] == ["smoke"]
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(target) as z:
        z.extractall(unpacked)
        assert z.read(f"{SID}_lab3.pdf")[:5] == b"%PDF-"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAB3_", "PYTHONPATH"))}
    env.update(
        LAB3_PROFILE="smoke",
        LAB3_TRAIN_MISSING="0",
        LAB3_DATA_DIR=str(data_location()),
        LAB3_RESULTS_DIR="results",
        LAB3_PLOTS_DIR="plots",
        LAB3_SEEDS="1",
        LAB3_CHECKPOINTS_DIR="checkpoints",
    )
    cmd = [sys.executable, *EXECUTE, f"{SID}_lab3.ipynb", "--output", "rerun.ipynb"]
    proc = subprocess.run(cmd, cwd=unpacked, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rerun = nbformat.read(unpacked / "rerun.ipynb", as_version=4)
    sections = 0
    for cell in rerun.cells:
        text = "".join(
            o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"
        )
        if "== " not in text or "experiment(s), profile smoke ==" not in text:
            continue
        sections += 1
        assert "not run" not in text, text[:2000]
        for line in (
            "replaying results/smoke/",
            "Epoch: 1",
            "learning rate:",
            "Train loss:",
            "Val loss:",
            "Test loss:",
            "| Test acc:",
        ):
            assert line in text, (line, text[:2000])
    assert sections >= 5  # baseline, norm, aug, lr, batch, final
    blank = [
        o
        for c in rerun.cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "display_data"
        and not "".join(o.get("data", {}).get("text/plain", "x")).strip()
    ]
    assert not blank, "a progress bar left an empty output"
