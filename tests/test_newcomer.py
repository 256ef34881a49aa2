"""The newcomer's path (issue #19): README's set-up, main job and test command, what CI runs,
and the small things a first run meets (--help, a third-party warning). Text checks and one
--help call: about a second."""

import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quick_start() -> list[list[str]]:
    """The commands of README's quick start, block by block, as shell lines."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    blocks = [re.sub(r"\\\n\s*", "", b) for b in blocks]  # continuation lines joined
    return [[ln for ln in b.splitlines() if ln.strip() and not ln.startswith("#")] for b in blocks]


def test_readme_gives_set_up_main_job_and_tests() -> None:
    (gpu, cpu), (main_job,), (tests,) = quick_start()[:3]
    for set_up in (gpu, cpu):
        assert "pip install -r requirements.txt" in set_up and "python3 -m venv .venv" in set_up
    # without a GPU: the CPU build of torch first, before requirements.txt would pull CUDA's (#22)
    assert "download.pytorch.org/whl/cpu" in cpu
    assert cpu.index("whl/cpu") < cpu.index("-r requirements.txt")
    # torch and torchvision in one command from one index, and the pair checked at once (#31)
    assert re.search(r"pip install torch torchvision --index-url \S+/whl/cpu", cpu)
    for set_up in (gpu, cpu):
        assert set_up.endswith("&& python -m engine.runtime")
    argv = shlex.split(main_job)
    assert argv[:2] == ["papermill", "student_lab3.ipynb"] and "--log-output" in argv
    # the executed copy goes apart from the committed reference run, into a folder in the repo
    out = Path(argv[2])
    assert out != Path("student_lab3.ipynb") and out.parent == Path("runs")
    assert (REPO / "runs" / "README.md").exists()
    assert tests == "python -m pytest"


def test_ci_runs_readmes_test_command_and_no_more_environment() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    commands = [
        ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    tests = quick_start()[2][0]
    assert commands[-1] == tests
    assert "LAB3_" not in ci, "CI must not set what README does not give"
    assert "pip install -q -r requirements.txt" in ci
    assert "fonts-noto-cjk" in ci and "poppler-utils" in ci and "libpango" in ci


def test_requirements_hold_papermill() -> None:
    names = {
        re.split(r"[<>=#\s\[]", ln.strip(), maxsplit=1)[0].lower()
        for ln in (REPO / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {"papermill", "torch", "torchvision", "pytest", "weasyprint"} <= names


def test_top_level_help_lists_commands_and_their_options() -> None:
    out = subprocess.run(
        [sys.executable, "experiments.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for word in ("list", "run", "--profile", "--seeds", "--data-dir", "--set", "--force"):
        assert re.search(rf"^\s+{re.escape(word)}\b", out.stdout, re.M), word


def test_pytest_config_silences_weasyprints_harfbuzz_warning() -> None:
    from _pytest.config import parse_warning_filter

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    filters = config["tool"]["pytest"]["ini_options"]["filterwarnings"]
    message = (
        "HarfBuzz-Subset will be required by future versions of WeasyPrint. Please install "
        "this library with your package manager."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for f in filters:
            warnings.filterwarnings(*parse_warning_filter(f, escape=False))
        warnings.warn(message, DeprecationWarning, stacklevel=1)
        warnings.warn("something else", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_a_mismatched_torchvision_is_one_line_and_training_needs_none(tmp_path) -> None:
    """#31: pip paired a CPU torch with a CUDA torchvision, whose import fails with "operator
    torchvision::nms does not exist". Training never needs torchvision: a run goes on and records
    it as missing; where it is needed (set-up check, torchvision's files, the v2 reference) one
    line names the fix."""
    fake = tmp_path / "fake" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n'
    )
    env = {**__import__("os").environ, "PYTHONPATH": f"{fake.parent}:{REPO}"}
    train = """
import torch
from engine.data import Cifar10
from train_utils import RunConfig, train
g = torch.Generator().manual_seed(0)
x = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
y = lambda n: torch.arange(n) % 10
data = Cifar10(x(300), y(300), x(100), y(100), "random pixels")
cfg = RunConfig(width=4, train_subset=200, val_size=100, epochs=1, batch_size=50)
r = train(cfg, data, progress=False, log=lambda s: None, device="cpu")
print(r.status, r.env["torchvision"])
"""
    done = subprocess.run(
        [sys.executable, "-c", train], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.split() == ["ok", "None"]
    for argv in (
        ["-m", "engine.runtime"],
        ["-c", "from engine.augment import torchvision_transform as t; t('none', [0], [1])"],
    ):
        done = subprocess.run(
            [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode != 0
        last = done.stderr.strip().splitlines()[-1]
        assert "torchvision cannot be used with torch" in last and "nms does not exist" in last
        assert "pip install --force-reinstall torch==" in last
    assert len(done.stderr.strip().splitlines()) > 1  # a library call raises (LabError) ...
    done = subprocess.run(
        [sys.executable, "-m", "engine.runtime"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert (
        done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    )  # ... a command says one line
