"""Export the executed notebook to PDF (or HTML), readable on paper: the lab's report.

    python report/export_notebook.py student_lab3.ipynb --student-id 312551001 --name "王小明"
        # -> report/build/student_lab3.pdf
    python report/export_notebook.py student_lab3.ipynb --out nb.html    # HTML only, images inside

Page 1 is a title page: the course, the student's name and id, and the date (--date, default
today). make_submission.py calls this with the id and name it is given.

What it fixes on the way (the .ipynb itself is not changed):
- progress bars: tqdm redraws its bar with carriage returns, so a stream output holds every
  intermediate state ("0%", "1%", ...); each line is folded to what a terminal would show last,
  and lines that end blank (a bar that cleared itself, leave=False) are dropped. Notebook tqdm
  widgets are replaced by their saved final state where the notebook saved widget state;
- code cells show their outputs only (the .ipynb keeps the code); long lines wrap instead of
  running off the page;
- nothing is fetched: the page keeps no scripts (MathJax, require.js and mermaid come from
  CDNs), and the PDF engines only read local files (report/render.py). Markdown maths is
  therefore shown as its LaTeX source.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import html
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as `python report/export_notebook.py`, this folder is on the path but the lab's
# modules (one level up) are not.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.checkpoint import atomic_write  # noqa: E402
from engine.errors import LabError, run_cli  # noqa: E402
from report import render  # noqa: E402

# nbconvert's classic template: its block layout prints well; the lab template's flex
# layout lets wide outputs and figures run off the page in weasyprint.
TEMPLATE_NAME = "classic"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# Printed pages: wrapped code and output, A4, CJK fonts after the Latin ones.
PRINT_CSS = """
@page { size: A4; margin: 12mm 10mm 14mm 10mm;
        @bottom-center { content: counter(page) " / " counter(pages); font-size: 8pt; } }
body { font-family: "DejaVu Sans", "Noto Sans", "Noto Sans CJK TC", sans-serif; }
pre, code, .highlight pre, .jp-OutputArea-output pre, .CodeMirror pre {
  white-space: pre-wrap !important; word-wrap: break-word !important;
  overflow-wrap: anywhere !important; word-break: break-all;
  font-family: "DejaVu Sans Mono", "Noto Sans Mono CJK TC", monospace !important;
  font-size: 8pt !important; }
/* The classic template pins the body element with position: absolute to fill a browser window; an
   absolutely positioned box is not split across pages, so all but page 1 was lost. */
body { position: static !important; overflow: visible !important; }
#notebook, #notebook-container, main { overflow: visible !important; height: auto !important;
  padding: 0 !important; box-shadow: none !important; }
/* The classic template lays cells out with flex boxes and asks not to break inside a cell.
   weasyprint drops a flex cell taller than a page whose breaks are avoided (the whole document
   came out blank), and sizes a flex box before its code lines wrap. So: plain blocks, breaks
   allowed, and the In/Out prompt floated to the left of its cell. */
div.cell, div.inner_cell, div.input, div.output_wrapper, div.output, div.output_area,
div.text_cell, div.code_cell { display: block !important; }
* { page-break-inside: auto !important; break-inside: auto !important; }
img, table { break-inside: avoid !important; }  /* a table and its header on one page */
h1, h2, h3, h4 { break-after: avoid !important; }  /* no heading alone at a page's foot */
div.input > div.prompt, div.output_area > div.prompt {
  float: left; width: 9ex; min-width: 0 !important; padding: 0.4em 0 !important; font-size: 7pt; }
div.text_cell > div.prompt { display: none; }
div.inner_cell, div.output_subarea { margin-left: 10ex !important; max-width: none !important; }
img { max-width: 100% !important; page-break-inside: avoid; }
/* Tables of figures: one line a row, small enough to fit the page. */
div.output_markdown { margin-left: 0 !important; }
div.output_markdown table, div.text_cell_render table { font-size: 7pt; margin-left: 0 !important; }
div.output_markdown td, div.output_markdown th { white-space: nowrap; padding: 1px 4px !important; }
/* The title page. */
div.lab3-title { text-align: center; padding-top: 70mm; page-break-after: always; }
div.lab3-title h1 { font-size: 22pt; margin: 0 0 6mm 0; }
div.lab3-title p { font-size: 13pt; margin: 3mm 0; }
div.lab3-title p.lab3-course { font-size: 15pt; }
"""
COURSE = "Deep Learning, Lab 3: tuning the training process (ResNet18 on CIFAR-10)"
TITLE = "Lab 3 report"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def fold_carriage_returns(text: str) -> str:
    """What a terminal shows for `text`: each '\\r' returns to the line start and the next
    characters overwrite. Lines a '\\r' left blank (a cleared progress bar) are dropped."""
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" not in line:
            lines.append(line)
            continue
        shown = ""
        for segment in line.split("\r"):
            shown = segment + shown[len(segment) :]
        if _ANSI.sub("", shown).strip():
            lines.append(shown.rstrip())
    return "\n".join(lines)


def _widget_text(model_id: str, state: dict) -> str | None:
    """The final text of a saved tqdm notebook widget: prefix, n/total, postfix."""
    models = state.get("state", {})
    box = models.get(model_id, {}).get("state", {})
    parts = []
    for ref in box.get("children", []):
        child = models.get(str(ref).removeprefix("IPY_MODEL_"), {})
        st, name = child.get("state", {}), child.get("model_name", "")
        if name == "HTMLModel":
            parts.append(re.sub(r"<[^>]+>", "", html.unescape(str(st.get("value", "")))))
        elif name in ("FloatProgressModel", "IntProgressModel"):
            parts.append(
                f"[{st.get('value', '?'):g}/{st.get('max', '?'):g}]"
                if isinstance(st.get("value"), (int, float))
                else ""
            )
    text = " ".join(p.strip() for p in parts if p.strip())
    return text or None


def clean_notebook(nb: dict) -> dict:
    """A copy of `nb` (a v4 notebook as dict/NotebookNode) with progress output in its final
    state."""
    nb = copy.deepcopy(nb)
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {})
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in merge_streams(cell.get("outputs", [])):
            if out.get("output_type") == "stream":
                out["text"] = fold_carriage_returns(out["text"])
                if not out["text"].strip():
                    continue
            elif (
                set(out.get("data", {})) == {"text/plain"}
                and not "".join(out["data"]["text/plain"]).strip()
            ):
                continue  # a progress line that cleared itself (older notebooks' bars)
            elif WIDGET_VIEW in out.get("data", {}):
                final = _widget_text(out["data"][WIDGET_VIEW].get("model_id", ""), state)
                if final:
                    out["data"] = {"text/plain": final}
            kept.append(out)
        # Again: dropping the cleared bars on stderr leaves stdout pieces side by side.
        cell["outputs"] = merge_streams(kept)
    return nb


def merge_streams(outputs: list) -> list:
    """Join consecutive stream outputs of the same stream, as Jupyter shows them: a kernel run
    by nbclient saves every write (each progress-bar redraw) as its own output."""
    merged: list = []
    for out in outputs:
        if out.get("output_type") == "stream":
            text = out["text"] if isinstance(out["text"], str) else "".join(out["text"])
            last = merged[-1] if merged else None
            if (
                last is not None
                and last.get("output_type") == "stream"
                and last["name"] == out["name"]
            ):
                last["text"] += text
                continue
            out = {**out, "text": text}
        merged.append(out)
    return merged


def title_page(student_id: str, name: str, date: str, course: str = COURSE) -> str:
    """The title page's HTML: course, name, student id, date (all escaped)."""
    esc = html.escape
    return (
        f'<div class="lab3-title"><h1>{esc(TITLE)}</h1>'
        f'<p class="lab3-course">{esc(course)}</p>'
        f"<p>{esc(name)}</p><p>Student id: {esc(student_id)}</p><p>{esc(date)}</p></div>\n"
    )


def notebook_html(nb, title: str = "") -> str:
    """nbconvert's HTML of `nb`, images embedded, no scripts; `title` (HTML) opens the body."""
    import nbformat
    from nbconvert import HTMLExporter

    # The report shows what the cells printed and drew, not their code: the notebook handed in
    # beside it has the code, and the code the lab asks to see (the block, make_layer) is
    # printed by a cell as Markdown, so it stays.
    exporter = HTMLExporter(template_name=TEMPLATE_NAME, exclude_input=True)
    body, _ = exporter.from_notebook_node(nbformat.from_dict(nb))
    # No scripts: a printed page runs none, and the template's load MathJax, require.js and
    # mermaid from CDNs, which an offline Chromium would wait for.
    body = re.sub(r"<script\b.*?</script>", "", body, flags=re.DOTALL | re.IGNORECASE)
    if title:  # the body tag after the head: styles and comments above may mention "<body>"
        head, sep, rest = body.partition("</head>")
        rest = re.sub(r"(<body\b[^>]*>)", lambda m: m.group(1) + "\n" + title, rest, count=1)
        body = head + sep + rest
    body = body.replace("</head>", f"<style>{PRINT_CSS}</style>\n</head>", 1)
    return body


def export(
    notebook: str | Path,
    out: str | Path,
    engine: str = "auto",
    student_id: str = "",
    name: str = "",
    date: str | None = None,
) -> Path:
    """Write `out` (.pdf or .html) from `notebook`, with a title page when `student_id` or
    `name` is given; returns `out`."""
    import nbformat

    notebook, out = Path(notebook), Path(out)
    if not notebook.is_file():
        raise LabError(f"notebook {notebook} not found")
    if out.suffix.lower() not in (".pdf", ".html"):
        raise LabError(f"--out must end in .pdf or .html, got {out}")
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as e:  # nbformat raises several types for a broken file
        raise LabError(f"{notebook} is not a readable notebook ({type(e).__name__})") from None
    title = ""
    if student_id or name:
        date = date or datetime.date.today().isoformat()
        title = title_page(student_id, name, date)
    page = notebook_html(clean_notebook(nb), title)
    if out.suffix.lower() == ".html":
        atomic_write(out, lambda f: f.write(page.encode()))
        return out
    pdf_engine = render.pick_engine(engine)
    with tempfile.TemporaryDirectory(prefix="lab3-nb-") as tmp:
        html_path = Path(tmp) / "notebook.html"
        html_path.write_text(page, encoding="utf-8")
        return render.html_to_pdf(html_path, out, pdf_engine)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("notebook", help="the executed .ipynb")
    ap.add_argument("--out", default=None, help="PDF or HTML (default: report/build/<name>.pdf)")
    ap.add_argument(
        "--engine",
        default="auto",
        choices=("auto", *render.ENGINES),
        help="PDF engine (default: weasyprint, else chromium)",
    )
    ap.add_argument("--student-id", default="", help="on the title page, e.g. 312551001")
    ap.add_argument("--name", default="", help="on the title page (Chinese is fine)")
    ap.add_argument("--date", default=None, help="on the title page (default: today)")
    args = ap.parse_args(argv)
    out = args.out or REPO / "report" / "build" / f"{Path(args.notebook).stem}.pdf"
    t0 = time.perf_counter()
    path = export(args.notebook, out, args.engine, args.student_id, args.name, args.date)
    print(f"wrote {path} [{time.perf_counter() - t0:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
