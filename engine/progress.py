"""Progress bars that look right in a terminal, a log file and a saved or exported notebook."""

from __future__ import annotations

import sys


class _DisplayLine:
    """tqdm's file inside a Jupyter kernel: each write replaces one display output, so a saved
    or exported notebook keeps only the bar's last state (nothing once a leave=False bar
    closes), instead of every '\\r' redraw as a separate stderr output."""

    def __init__(self) -> None:
        self._handle = None

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if self._handle is None:
            if line:
                from IPython.display import display

                self._handle = display({"text/plain": line}, raw=True, display_id=True)
        else:
            self._handle.update({"text/plain": line}, raw=True)

    def flush(self) -> None:
        pass


class _Nowhere:
    """A bar's file where a bar has no place: writes are dropped."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def bar_file():
    """Where progress bars go: a display line in a notebook, stderr in a terminal, and nowhere
    when stderr is a file or a pipe: there a bar's carriage-return frames would end up in front
    of the lab's lines (`> log 2>&1` and `grep '^Test'` found nothing, issue #17), and the lab
    prints its block of lines per epoch anyway."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if getattr(shell, "kernel", None) is not None:
        return _DisplayLine()
    isatty = getattr(sys.stderr, "isatty", None)
    return sys.stderr if isatty is not None and isatty() else _Nowhere()
