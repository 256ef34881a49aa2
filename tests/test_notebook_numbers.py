"""The notebook's prose quotes only what its cells print (issue #24): every figure in a Markdown
cell (a number with a decimal point, a percentage, or one in scientific notation) must appear
among the outputs of the same section (a level-2 heading and what follows it, up to the next).
Whole numbers (epochs, layers, years), a paper's section numbers and `code` spans are not
figures. A stale claim,
left behind when the results change, fails here."""

import re

import nbformat
from conftest import REPO

NOTEBOOK = REPO / "student_lab3.ipynb"
FIGURE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?%|\d+\.\d+(?:e-?\d+)?|\d+e-?\d+)")
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")


def sections(nb) -> list[tuple[str, list, list]]:
    """(heading, Markdown sources, output texts) per level-2 section."""
    out = [("(top)", [], [])]
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## "):
            out.append((cell.source.strip().splitlines()[0], [], []))
        if cell.cell_type == "markdown":
            out[-1][1].append(cell.source)
        elif cell.cell_type == "code":
            out[-1][2].extend(output_text(o) for o in cell.get("outputs", []))
    return out


def output_text(output) -> str:
    if "text" in output:
        return "".join(output["text"])
    data = output.get("data", {})
    return "\n".join("".join(data[k]) for k in ("text/plain", "text/markdown") if k in data)


def figures(markdown: str) -> list[str]:
    """The figures of a Markdown text, outside headings and code spans."""
    found = []
    for line in markdown.splitlines():
        if line.lstrip().startswith("#"):
            continue
        line = re.sub(r"`[^`]*`|[Ss]ection \d+(?:\.\d+)*", "", line)  # names, not figures
        found += FIGURE.findall(line)
    return found


def printed(texts: list[str]) -> set[float]:
    """Every number the outputs print, and its size: the prose says "worse by 4.09" of a
    printed -4.09 (FIGURE reads a figure without its sign)."""
    values = {float(m.replace(",", "")) for t in texts for m in NUMBER.findall(t)}
    return values | {abs(v) for v in values}


def quoted_not_printed(markdown: list[str], outputs: list[str]) -> list[str]:
    values = printed(outputs)
    missing = []
    for fig in figures("\n".join(markdown)):
        v = float(fig.rstrip("%"))
        candidates = {v, v / 100} if fig.endswith("%") else {v, v * 100}
        if not any(abs(c - p) <= 1e-9 * max(1.0, abs(p)) for c in candidates for p in values):
            missing.append(fig)
    return missing


def test_the_checker_finds_a_stale_figure():
    assert quoted_not_printed(["accuracy 0.8259, then 82.5%"], ["Test acc: 0.8259"]) == ["82.5%"]
    assert quoted_not_printed(["at most 1.7e-03 and 91.44%"], ["1.7e-03 | 0.9144"]) == []
    assert quoted_not_printed(["`train_resnet18_94.py`, 26 epochs, section 4.2"], []) == []
    assert quoted_not_printed(["worse by 4.09 points"], ["-4.09 pp"]) == []


def test_every_figure_in_the_prose_is_printed_in_its_section():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    stale = {h: m for h, md, outs in sections(nb) if (m := quoted_not_printed(md, outs))}
    assert not stale, f"figures in the prose that no output of their section prints: {stale}"
