"""The one exception type for user mistakes.

Anything a user can get wrong (a missing file, a malformed line, a bad config value) raises
`UserError` with a one-line message naming the file, line or key and what was expected. Every
script's `main()` catches it, prints ``error: <message>`` and returns exit code 2, so a user sees
one line instead of a traceback. Bugs in our own code keep raising ordinary exceptions.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""
