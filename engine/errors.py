"""What the command-line tools show besides the lab's lines: one-line errors, and progress bars
only where they can be redrawn."""

import io
import os
import sys


class LabError(Exception):
    """Bad input or state the user can fix; the message is one line saying how."""


def run_cli(main, argv=None, errors=(LabError,), interrupted="interrupted: nothing was written"):
    """main(argv) as every tool here runs it: a LabError (or another of `errors`) becomes one
    line on stderr and exit code 2, Ctrl-C one line and 130."""
    try:
        return main(argv)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: stop quietly, and let the flush at exit find no pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def bar_file():
    """Where progress bars go: stderr in a terminal, nowhere else. In a log file a bar's frames
    end up among the lab's lines (issue #17), in a notebook as a frozen frame in its PDF."""
    return sys.stderr if sys.stderr.isatty() else io.StringIO()  # one bar's frames, then dropped
