"""The one exception type for user mistakes.

Anything a user can get wrong (a missing file, a malformed line, a bad config value) raises
`UserError` with a one-line message naming the file, line or key and what was expected. Every
script's `main()` catches it, prints ``error: <message>`` and returns exit code 2, so a user sees
one line instead of a traceback. Bugs in our own code keep raising ordinary exceptions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def exit_code_of(run: Callable[..., object], *args: object) -> int:
    """Call `run(*args)`: 0 when it returns, 2 after printing ``error: <message>`` for a UserError."""
    try:
        run(*args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
