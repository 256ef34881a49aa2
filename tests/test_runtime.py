"""engine.runtime.command_line: the command saved with a result names no machine path (#13)."""

from __future__ import annotations

from engine.runtime import command_line


def test_command_line_has_no_machine_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / "experiments.py"), "run", "baseline", "--out", str(tmp_path / "res"),
            "--data-dir=/somewhere/else/cifar10-png.tar.gz", "--checkpoints", "/abs/ck/"]  # fmt: skip
    line = command_line(argv)
    assert line == (
        "experiments.py run baseline --out res --data-dir=…/cifar10-png.tar.gz --checkpoints …/ck"
    )
    assert str(tmp_path) not in line and "/somewhere" not in line
