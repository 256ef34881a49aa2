"""The one exception type the lab raises for bad input.

A `LabError` carries a single line that says what is wrong and what to do. The command-line
tools print it without a traceback and exit non-zero; the notebook shows it as-is.
"""


class LabError(Exception):
    """Bad input or state the user can fix; the message is one line saying how."""


def run_cli(main, argv=None, errors=(LabError,), interrupted="interrupted: nothing was written"):
    """Call main(argv) the way every command-line tool here does: a LabError (or another of
    `errors`) becomes one line on stderr and exit code 2, Ctrl-C one line and 130."""
    import sys

    try:
        return main(argv)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do. Python would
        # otherwise complain again when it flushes stdout at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
