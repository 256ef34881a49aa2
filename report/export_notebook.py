"""Export the executed notebook to PDF (or HTML), after a title page: the lab's report; outputs
without their code, progress bars at their last state, nothing fetched (maths as LaTeX source)."""

import argparse
import copy
import datetime as dt
import functools
import html
import logging
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, the lab's modules one level up are not on it

from engine.checkpoint import atomic_write  # noqa: E402
from engine.errors import LabError, run_cli  # noqa: E402

PRINT_CSS = Path(__file__).with_name("print.css")
COURSE = "Deep Learning, Lab 3: tuning the training process (ResNet18 on CIFAR-10)"


def fold_carriage_returns(text: str) -> str:
    """What a terminal shows: each '\\r' returns to the line's start and what follows overwrites;
    lines a '\\r' left blank (a cleared progress bar) are dropped."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        shown = functools.reduce(lambda s, seg: seg + s[len(seg) :], line.split("\r"))
        if "\r" not in line or re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", shown).strip():  # ANSI codes
            lines.append(shown if "\r" not in line else shown.rstrip())
    return "\n".join(lines)


def merge_streams(outputs: list) -> list:
    """Consecutive writes to one stream as one output, as Jupyter shows them."""
    merged: list = []
    for out in outputs:
        if out.get("output_type") == "stream":
            out = {**out, "text": "".join(out["text"])}
            last = merged[-1] if merged else {}
            if last.get("output_type") == "stream" and last["name"] == out["name"]:
                last["text"] += out["text"]
                continue
        merged.append(out)
    return merged


def clean_notebook(nb: dict) -> dict:
    """A copy of `nb` with progress output in its final state, bars that cleared themselves gone."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in merge_streams(cell["outputs"]):
            if out.get("output_type") == "stream":
                out["text"] = fold_carriage_returns(out["text"])
            data = out.get("data", {})  # blank: an empty stream, or empty plain text alone
            plain = "".join(data["text/plain"]) if set(data) == {"text/plain"} else "x"
            if out.get("text", plain).strip():
                kept.append(out)
        cell["outputs"] = merge_streams(kept)  # dropped bars leave stream pieces side by side
    return nb


def export(notebook, out, student_id: str = "", name: str = "", date: str | None = None) -> Path:
    """Write `out` (.pdf or .html) from `notebook`, atomically: nbconvert's classic HTML (its
    block layout prints well), outputs only, no scripts, the print CSS, a title page where an id
    or a name is given."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook, out = Path(notebook), Path(out)
    if not notebook.is_file():
        raise LabError(f"notebook {notebook} not found")
    if out.suffix.lower() not in (".pdf", ".html"):
        raise LabError(f"--out must end in .pdf or .html, got {out}")
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as e:  # nbformat raises several types for a broken file
        raise LabError(f"{notebook} is not a readable notebook ({type(e).__name__})") from None
    exporter = HTMLExporter(template_name="classic", exclude_input=True)
    page, _ = exporter.from_notebook_node(nbformat.from_dict(clean_notebook(nb)))
    # The templates load MathJax, require.js and mermaid from CDNs; a printed page runs none.
    page = re.sub(r"<script\b.*?</script>", "", page, flags=re.DOTALL | re.IGNORECASE)
    head, _, body = page.partition("</head>")
    if student_id or name:
        lines = [COURSE, name, f"Student id: {student_id}", date or dt.date.today().isoformat()]
        title = '<div class="lab3-title"><h1>Lab 3 report</h1><p class="lab3-course">'
        title += "</p><p>".join(map(html.escape, lines)) + "</p></div>\n"
        body = re.sub(r"(<body\b[^>]*>)", lambda m: m.group(1) + "\n" + title, body, count=1)
    page = f"{head}<style>{PRINT_CSS.read_text(encoding='utf-8')}</style>\n</head>{body}"
    if out.suffix.lower() == ".html":
        atomic_write(out, lambda f: f.write(page.encode()))
        return out
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher  # weasyprint 66 or newer
    except (ImportError, OSError):  # OSError: the system's Pango is missing
        raise LabError(
            "weasyprint cannot make the PDF; `pip install -U weasyprint` (README's one-time setup)"
        ) from None
    # weasyprint logs every CSS property of nbconvert's it does not support; keep the errors.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    fetcher = URLFetcher(allowed_protocols=("file", "data"))
    doc = HTML(string=page, base_url=notebook.resolve().parent.as_uri() + "/", url_fetcher=fetcher)
    atomic_write(out, doc.write_pdf)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("notebook", help="the executed .ipynb")
    ap.add_argument("--out", default=None, help="PDF or HTML (default: report/build/<name>.pdf)")
    ap.add_argument("--student-id", default="", help="on the title page, e.g. 312551001")
    ap.add_argument("--name", default="", help="on the title page (Chinese is fine)")
    ap.add_argument("--date", default=None, help="on the title page (default: today)")
    args = ap.parse_args(argv)
    out = args.out or REPO / "report" / "build" / f"{Path(args.notebook).stem}.pdf"
    print(f"wrote {export(args.notebook, out, args.student_id, args.name, args.date)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
