"""make_submission.py: the zip holds exactly the three renamed files, and bad input is refused
with one line."""

from __future__ import annotations

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


def write_notebook(path: Path, executed: bool = True, profile: str = "full",
                   test_line: str = "Test loss: 0.2712 | Test acc: 0.9312", error: bool = False) -> Path:  # fmt: skip
    nb = nbformat.v4.new_notebook()
    imports = nbformat.v4.new_code_cell(
        "import experiments", execution_count=1 if executed else None
    )
    run = nbformat.v4.new_code_cell("run('final')", execution_count=2 if executed else None)
    if executed:
        run.outputs = [nbformat.v4.new_output(
            "stream", name="stdout", text=f"[final seed 0, profile {profile}]\nEpoch: 1\n{test_line}\n")]  # fmt: skip
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
    return {"notebook": nb, "report": pdf, "model": REPO / "resnet18.py", "out": out}


def test_zip_holds_exactly_the_three_renamed_files(files):
    target, found = ms.make_submission(SID, **files)
    assert target == files["out"] / f"{SID}_lab3.zip"
    with zipfile.ZipFile(target) as z:
        assert sorted(z.namelist()) == sorted(
            [f"{SID}_lab3.ipynb", "resnet18.py", f"{SID}_lab3.pdf"]
        )
        assert z.read("resnet18.py") == (REPO / "resnet18.py").read_bytes()
        assert z.read(f"{SID}_lab3.ipynb") == files["notebook"].read_bytes()
        assert z.read(f"{SID}_lab3.pdf") == files["report"].read_bytes()
    assert found["profiles"] == ["full"] and found["test_lines"][-1].endswith("0.9312")
    assert [p.name for p in files["out"].iterdir()] == [target.name]  # no temp file left


@pytest.mark.parametrize("bad", ["", "31255", "3125510012345", "312 551001", "312-551001",
                                 "３１２５５１００１", "312551001\n", "../312551001", "學號312551"])  # fmt: skip
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
    target, found = ms.make_submission(SID, **files, allow_preview=True)
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
    return subprocess.run([sys.executable, str(REPO / "make_submission.py"), *args],
                          capture_output=True, text=True, cwd=cwd)  # fmt: skip


def test_cli_errors_are_one_line(files, tmp_path):
    missing = _cli("--student-id", SID, "--notebook", "nope.ipynb", cwd=tmp_path)
    bad_id = _cli("--student-id", "12-34", cwd=tmp_path)
    for proc in (missing, bad_id):
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
        assert "Traceback" not in proc.stderr
    assert "notebook nope.ipynb not found" in missing.stderr


def test_cli_packs(files, tmp_path):
    proc = _cli("--student-id", SID, "--notebook", str(files["notebook"]), "--report",
                str(files["report"]), "--out", str(files["out"]), cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"{SID}_lab3.zip" in proc.stdout and "Test acc: 0.9312" in proc.stdout
