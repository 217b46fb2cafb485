"""The one exception type for user mistakes.

Anything a user can get wrong (a missing file, a malformed line, a bad config value) raises
`UserError` with a one-line message naming the file, line or key and what was expected. Every
script's `main()` catches it, prints ``error: <message>`` and returns exit code 2, so a user sees
one line instead of a traceback. Bugs in our own code keep raising ordinary exceptions.

A `UserError` raised inside a DataLoader worker process reaches the main process re-raised with the
worker's whole traceback as its message; `one_line` recovers the worker's own line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def one_line(exc: UserError) -> str:
    """The message of a UserError, also when a DataLoader worker raised it.

    PyTorch re-raises a worker's exception as ``UserError("Caught UserError in DataLoader worker
    process 0.\\nOriginal Traceback (most recent call last): ... utils.errors.UserError: <message>")``;
    the text after the last ``UserError: `` is the worker's message.
    """
    text = str(exc)
    if text.startswith(f"Caught {UserError.__name__} in DataLoader worker"):
        return text.rpartition(f"{UserError.__name__}: ")[2].strip()
    return text


def exit_code_of(run: Callable[..., object], *args: object) -> int:
    """Call `run(*args)`: 0 when it returns, 2 after printing ``error: <message>`` for a UserError."""
    try:
        run(*args)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0
