"""student_lab3.ipynb: committed clean or with real full-profile outputs, in sync with its jupytext source (student_lab3.py); executed top to
bottom in the smoke profile, then re-executed in replay-only mode over the saved results.

The executions run the documented command (`jupyter nbconvert --execute` with the stream
coalescing preprocessor) in a subprocess, with results, checkpoints, figures and the executed
copy all under tmp_path: the committed notebook, results and plots are never written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "student_lab3.ipynb"
PARAMETERS = (
    "PROFILE",
    "DATA_DIR",
    "RESULTS_DIR",
    "PLOTS_DIR",
    "FORCE",
    "TRAIN_MISSING",
    "SEEDS",
    "RESUME",
)
TEST_LINE = re.compile(r"^Test loss: \d+\.\d{4} \| Test acc: \d\.\d{4}", re.M)
# A tqdm text bar's state, e.g. "epoch 1/2:  25%|##5       | 1/4 [00:05<00:16,  5.66s/it]"
BAR = re.compile(r"\d+%\|[# 0-9]*\|")
EXECUTE = [
    "-m",
    "jupyter",
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    "--NotebookExporter.preprocessors=nbconvert.preprocessors.CoalesceStreamsPreprocessor",
    "--ExecutePreprocessor.timeout=900",
]


def committed() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged 'parameters' (papermill)"
    return cells[0]


# ---------------------------------------------------------------- the committed file


def test_committed_notebook_names_no_file_the_repository_lacks():
    # every path its prose or its outputs give (a module, a results file, a figure) is there
    path = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w.-]+\.(?:py|json|md|png|log|ipynb|sh))\b")
    missing = set()
    for cell in committed().cells:
        texts = [cell.source if cell.cell_type == "markdown" else ""] + [
            o.get("text", "") or "".join(o.get("data", {}).get("text/markdown", ""))
            for o in cell.get("outputs", [])
        ]
        for text in texts:
            for name in path.findall(text):
                if not (REPO / name).exists() and not list(REPO.glob(f"**/{name}")):
                    missing.add(name)
    assert not missing, f"the notebook names files the repository lacks: {sorted(missing)}"


def test_committed_notebook_carries_only_real_results():
    """No outputs at all, or the outputs of a full-profile execution labelled with hardware and
    date: never a smoke or quick preview that could be mistaken for real results."""
    nb = committed()
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if all(c.outputs == [] for c in code):
        return
    text = "\n".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in code
        for o in c.outputs
    )
    assert "profile: full" in text, "the committed notebook's outputs are not from the full profile"
    assert not re.search(r"profile (smoke|quick)\b", text), (
        "preview results in the committed notebook"
    )
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert re.search(r"Test loss: \d\.\d{4} \| Test acc: \d\.\d{4}", text)
    assert "H200" in text or "NVIDIA" in text or "cuda" in text  # runs labelled with hardware


def test_parameters_cell_reads_the_environment(monkeypatch):
    source = parameters_cell(committed()).source
    for name in PARAMETERS:
        assert re.search(rf"^{name} = ", source, re.M), f"the parameters cell lacks {name}"
    env = dict(
        LAB3_PROFILE="smoke",
        LAB3_RESULTS_DIR="elsewhere",
        LAB3_FORCE="1",
        LAB3_TRAIN_MISSING="0",
        LAB3_SEEDS="3",
        LAB3_PLOTS_DIR="figs",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ns: dict = {}
    exec(source, ns)
    assert (ns["PROFILE"], ns["RESULTS_DIR"], ns["PLOTS_DIR"]) == ("smoke", "elsewhere", "figs")
    assert ns["FORCE"] is True and ns["TRAIN_MISSING"] is False and ns["SEEDS"] == 3
    for key in env:
        monkeypatch.delenv(key)
    monkeypatch.delenv("LAB3_DATA_DIR", raising=False)
    ns = {}
    exec(source, ns)
    assert ns["RESULTS_DIR"] == "results" and ns["PLOTS_DIR"] is None and ns["DATA_DIR"] is None
    # SEEDS 0: the set-up cell resolves it from the profile, after papermill's -p PROFILE
    assert ns["FORCE"] is False and ns["TRAIN_MISSING"] is True and ns["SEEDS"] == 0
    assert ns["PROFILE"] in ("full", "quick")  # the engine's default for this machine


def test_committed_notebook_matches_its_source():
    """student_lab3.py (jupytext percent) and the .ipynb hold the same cells: `jupytext --sync`
    was run after the last edit of either."""
    import jupytext

    source = jupytext.read(REPO / "student_lab3.py")

    def cells(book):
        return [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in book.cells]

    assert cells(source) == cells(committed()), "run: jupytext --sync student_lab3.py"


def test_notebook_cells_are_calls_not_library():
    """No cell defines more than one function, and none runs past about 25 lines."""
    for cell in committed().cells:
        if cell.cell_type != "code":
            continue
        assert len(re.findall(r"^def ", cell.source, re.M)) <= 1, cell.source[:200]
        assert len(cell.source.splitlines()) <= 26, cell.source[:200]


# ---------------------------------------------------------------- executing it


def execute(tmp: Path, name: str, **env: str) -> nbformat.NotebookNode:
    """Run the documented nbconvert command on the committed notebook; return the executed copy."""
    from conftest import data_location

    full_env = dict(
        os.environ,
        LAB3_PROFILE="smoke",
        LAB3_DATA_DIR=str(data_location()),
        LAB3_RESULTS_DIR=str(tmp / "results"),
        LAB3_PLOTS_DIR=str(tmp / "plots"),
        LAB3_CHECKPOINTS_DIR=str(tmp / "checkpoints"),
        LAB3_SEEDS="1",
        **env,
    )
    full_env.pop("LAB3_FORCE", None)
    cmd = [sys.executable, *EXECUTE, str(NOTEBOOK), "--output-dir", str(tmp), "--output", name]
    out = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    return nbformat.read(tmp / name, as_version=4)


def texts(nb, kind: str) -> str:
    """All stream text of one kind (stdout/stderr) and all markdown the cells displayed."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if kind in ("stdout", "stderr") and o.output_type == "stream" and o.name == kind:
                parts.append(o.text)
            elif kind == "markdown" and "text/markdown" in o.get("data", {}):
                parts.append(o.data["text/markdown"])
    return "\n".join(parts)


def committed_files() -> dict[str, int]:
    """Files under the repository's results/ and plots/ with their modification times."""
    return {
        str(p): p.stat().st_mtime_ns for d in ("results", "plots") for p in (REPO / d).rglob("*")
    }


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    from conftest import data_location

    if data_location() is None:
        pytest.skip("CIFAR-10 copy not found (set LAB3_DATA_DIR): the notebook trains on it")
    tmp = tmp_path_factory.mktemp("notebook")
    before = NOTEBOOK.read_bytes(), committed_files()
    first = execute(tmp, "first.ipynb")
    # Restart: a fresh kernel, replay only. Every run must come back from its results file.
    replay = execute(tmp, "replay.ipynb", LAB3_TRAIN_MISSING="0")
    assert NOTEBOOK.read_bytes() == before[0], "executing must not touch the committed notebook"
    assert committed_files() == before[1], "executing must not write into results/ or plots/"
    return tmp, first, replay


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_in_smoke(executed):
    tmp, nb, _ = executed
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "not every cell ran"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    stdout = texts(nb, "stdout")
    # the baseline's and the final run's test lines, and one per run of the groups
    assert len(TEST_LINE.findall(stdout)) >= 20, stdout[-3000:]
    assert re.search(r"^Epoch: 1$", stdout, re.M) and re.search(r"^Val loss: ", stdout, re.M)
    assert "not run" not in stdout
    assert images(nb) >= 15, "expected the samples, curves, overlays, schedules and confusion"
    assert "| experiment" in texts(nb, "markdown"), "the comparison tables are missing"
    # figures land in LAB3_PLOTS_DIR and results in LAB3_RESULTS_DIR (see `executed`)
    pngs = {p.name for p in (tmp / "plots").glob("*.png")}
    assert {"samples.png", "baseline_seed0.png", "final_confusion.png", "lr_schedules.png"} <= pngs
    assert (tmp / "results" / "smoke" / "final__seed0.json").exists()


@pytest.mark.slow
def test_a_preview_opens_with_its_banner(executed):
    """Issue #19: the first thing the set-up cell shows, before any figure, names the profile,
    the data and the hardware; no markdown cell claims the profile it ran on."""
    _, nb, _ = executed
    shown = [
        o.data["text/markdown"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    ]
    assert shown and shown[0].startswith("> **PREVIEW: profile `smoke`"), shown[:1]
    assert "Data: " in shown[0] and "Hardware: CPU" in shown[0]
    first_image = next(
        i
        for i, c in enumerate(nb.cells)
        if any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    )
    banner = next(
        i
        for i, c in enumerate(nb.cells)
        if any(
            "PREVIEW" in o.get("data", {}).get("text/markdown", "") for o in c.get("outputs", [])
        )
    )
    assert banner < first_image and banner <= 4, "the banner must open the notebook"
    static = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not re.search(r"LAB3_PROFILE=full\)|executed .* with `?LAB3_PROFILE", static)


@pytest.mark.slow
def test_progress_bars_export_cleanly(executed):
    """No bar left at 0% and no pile of intermediate states in the saved outputs or the HTML."""
    tmp, nb, _ = executed
    assert not BAR.search(texts(nb, "stderr")), texts(nb, "stderr")[:2000]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "html",
            str(tmp / "first.ipynb"),
            "--output-dir",
            str(tmp),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    html = (tmp / "first.html").read_text()
    html = re.sub(r'src="data:image/png;base64,[^"]*"', "", html)  # base64 can look like a bar
    assert not BAR.search(html)


@pytest.mark.slow
def test_reexecution_replays_every_run(executed):
    _, first, replay = executed
    stdout = texts(replay, "stdout")
    assert "not run" not in stdout
    assert stdout.count("replaying") >= 23, "every run and the LR range test come from files"
    # the same test figures as the run that trained them
    assert sorted(TEST_LINE.findall(stdout)) == sorted(TEST_LINE.findall(texts(first, "stdout")))
    assert images(replay) == images(first)
