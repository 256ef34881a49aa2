"""The report: the executed notebook exported to PDF (report/export_notebook.py).

The PDF step runs where weasyprint is installed, and its text is read back with
pdftotext where poppler is installed; the HTML step always runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from engine.errors import LabError
from report import export_notebook

REPO = export_notebook.REPO


def has_weasyprint() -> bool:
    try:
        import weasyprint  # noqa: F401  (OSError where the system's Pango is missing)
    except (ImportError, OSError):
        return False
    return True


HAS_WEASYPRINT = has_weasyprint()
needs_engine = pytest.mark.skipif(
    not HAS_WEASYPRINT, reason="no weasyprint (pip install weasyprint)"
)
needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="pdftotext missing (apt-get install poppler-utils)"
)


def pdf_text(path) -> str:
    out = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())  # pdftotext breaks lines where the page did


MACHINE_PATHS = ("/tmp/", "/root/", "/work/", "/home/")


def assert_no_machine_path(text: str) -> None:
    found = [p for p in MACHINE_PATHS if p in text]
    assert not found, [text[max(0, text.index(p) - 80) : text.index(p) + 80] for p in found]


def has_cjk_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    out = subprocess.run(["fc-list", ":lang=zh-tw"], capture_output=True, text=True).stdout
    return bool(out.strip())


# ---------------------------------------------------------------- notebook export


def test_fold_carriage_returns():
    bar = "\rep 1:   0%|   | 0/4\rep 1:  50%|#  | 2/4\rep 1: 100%|###| 4/4\n"
    assert export_notebook.fold_carriage_returns(bar) == "ep 1: 100%|###| 4/4\n"
    cleared = "Epoch: 1\n\rbar 10%\rbar 90%\r          \r\nEpoch: 2\n"
    assert export_notebook.fold_carriage_returns(cleared) == "Epoch: 1\nEpoch: 2\n"
    assert export_notebook.fold_carriage_returns("abcdef\rXY") == "XYcdef"  # overwrite, not replace
    assert export_notebook.fold_carriage_returns("plain\n\nlines\r\n") == "plain\n\nlines\n"


def _nbclient_style_notebook():
    """What nbclient saves: every tqdm redraw is its own stderr output."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()  # " + "x" * 200, execution_count=1)
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="[baseline seed 0, profile full]\n")
    ]
    cell.outputs += [
        nbformat.v4.new_output("stream", name="stderr", text=f"\repoch 1/1: {p:3d}%|")
        for p in (0, 25, 50, 75, 100)
    ]
    cell.outputs += [
        nbformat.v4.new_output("stream", name="stderr", text="\r" + " " * 20 + "\r"),
        nbformat.v4.new_output("stream", name="stdout", text="Test loss: 0.3 | Test acc: 0.9312\n"),
    ]
    # Taller than a page: the classic template's absolutely positioned <body> once cut the
    # PDF after page 1.
    log = "".join(f"Epoch: {i}\n" for i in range(1, 151))
    cell.outputs.insert(1, nbformat.v4.new_output("stream", name="stdout", text=log))
    cell2 = nbformat.v4.new_code_cell("for i in tqdm(range(3)): pass", execution_count=2)
    cell2.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=f"\r{i}/3 done") for i in range(4)
    ] + [nbformat.v4.new_output("stream", name="stderr", text="\n")]
    cell2.outputs.append(nbformat.v4.new_output("display_data", data={"text/plain": ""}))
    nb.cells = [nbformat.v4.new_markdown_cell("# 實驗 Lab 3"), cell, cell2]
    return nb


def test_clean_notebook_keeps_final_states():
    nb = export_notebook.clean_notebook(_nbclient_style_notebook())
    first, second = nb.cells[1].outputs, nb.cells[2].outputs
    # The cleared bar is gone and the two stdout pieces around it are one output again.
    assert [o["name"] for o in first] == ["stdout"]
    assert first[0]["text"].startswith("[baseline seed 0, profile full]\nEpoch: 1\n")
    assert first[0]["text"].endswith("Epoch: 150\nTest loss: 0.3 | Test acc: 0.9312\n")
    assert [o["text"] for o in second] == ["3/3 done\n"]


def test_export_html_and_pdf(tmp_path):
    import nbformat

    path = tmp_path / "nb.ipynb"
    nbformat.write(_nbclient_style_notebook(), path)
    html = export_notebook.export(path, tmp_path / "nb.html").read_text()
    assert "3/3 done" in html and "1/3 done" not in html and "epoch 1/1" not in html
    assert "pre-wrap" in html and "實驗" in html
    assert "<script" not in html  # nothing to fetch or run
    assert "Test acc: 0.9312" in html and "tqdm(range(3))" not in html  # outputs, not code
    with pytest.raises(LabError, match="must end in .pdf or .html"):
        export_notebook.export(path, tmp_path / "nb.docx")
    if HAS_WEASYPRINT:
        pdf = export_notebook.export(path, tmp_path / "nb.pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-"
        if shutil.which("pdftotext"):
            text = pdf_text(pdf)
            assert "Test acc: 0.9312" in text and "3/3 done" in text and "25%" not in text
            assert "Epoch: 150" in text and "Epoch: 1 " in text  # every page, not just the first


def test_title_page(tmp_path):
    import nbformat

    path = tmp_path / "nb.ipynb"
    nbformat.write(_nbclient_style_notebook(), path)
    html = export_notebook.export(
        path, tmp_path / "nb.html", student_id="312551001", name="王小明 <Wang>", date="2026-12-01"
    ).read_text()
    title = html[html.index('<div class="lab3-title">') :]
    title = title[: title.index("</div>")]
    for text in ("312551001", "王小明 &lt;Wang&gt;", "2026-12-01", "Deep Learning, Lab 3"):
        assert text in title, text
    assert html.index("lab3-title") < html.index("實驗 Lab 3")  # page 1, before the notebook
    # in the document's body, not inside the head's styles (which mention "<body>" too)
    assert html.index("</head>") < html.index('<div class="lab3-title">')
    plain = export_notebook.export(path, tmp_path / "plain.html").read_text()
    assert '<div class="lab3-title">' not in plain


def test_cli_error_is_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "report" / "export_notebook.py"),
            str(tmp_path / "missing.ipynb"),
            "--out",
            str(tmp_path / "x.html"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: notebook") and proc.stderr.count("\n") == 1


@needs_engine
@needs_pdftotext
@pytest.mark.skipif(not has_cjk_font(), reason="no CJK font (apt-get install fonts-noto-cjk)")
def test_traditional_chinese_renders(tmp_path):
    import nbformat

    line = "這是一行繁體中文：訓練與驗證準確率。"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# 報告\n\n{line}\n")]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    pdf = export_notebook.export(path, tmp_path / "nb.pdf", student_id="312551001", name="王小明")
    text = pdf_text(pdf)
    assert line in text and "王小明" in text
