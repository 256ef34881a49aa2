"""engine.runtime.command_line: the command saved with a result names no machine path (#13)."""

from __future__ import annotations

from engine.runtime import command_line


def test_command_line_has_no_machine_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        str(tmp_path / "experiments.py"),
        "run",
        "baseline",
        "--out",
        str(tmp_path / "res"),
        "--data-dir=/somewhere/else/cifar10-png.tar.gz",
        "--checkpoints",
        "/abs/ck/",
    ]
    line = command_line(argv)
    assert line == (
        "experiments.py run baseline --out res --data-dir=…/cifar10-png.tar.gz --checkpoints …/ck"
    )
    assert str(tmp_path) not in line and "/somewhere" not in line


def test_a_closed_pipe_ends_a_command_quietly():
    """`python experiments.py list | head -1`: no BrokenPipeError traceback (engine.errors.run_cli)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        f"{sys.executable} experiments.py list | head -1",
        shell=True,
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert p.stdout.strip() == "baseline:"
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
