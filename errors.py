"""The one exception type the lab raises for bad input.

A `LabError` carries a single line that says what is wrong and what to do. The command-line
tools print it without a traceback and exit non-zero; the notebook shows it as-is.
"""


class LabError(Exception):
    """Bad input or state the user can fix; the message is one line saying how."""
