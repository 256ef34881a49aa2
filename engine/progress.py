"""Progress bars only where they can be redrawn: a terminal."""

from __future__ import annotations

import sys


class _Nowhere:
    """A bar's file where a bar has no place: writes are dropped."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def bar_file():
    """Where progress bars go: stderr in a terminal, and nowhere else. In a file or a pipe a
    bar's carriage-return frames would end up in front of the lab's lines (`> log 2>&1` and
    `grep '^Test'` found nothing, issue #17); in a notebook kernel (Jupyter, papermill
    --log-output, nbconvert --execute) a bar left an empty output or a frozen frame in the saved
    notebook and its PDF. There the per-epoch lines the lab prints are the progress."""
    isatty = getattr(sys.stderr, "isatty", None)
    return sys.stderr if isatty is not None and isatty() else _Nowhere()
