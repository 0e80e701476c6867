"""The root of gitproof's errors.

Every error that reports a problem with input, configuration or the
environment (a hostile note, a malformed policy, a missing key) derives from
``GitproofError``, so the CLI and the hooks catch it once and print one line.
Anything else escaping is a bug.
"""
from __future__ import annotations


class GitproofError(Exception):
    """Raised for a problem the user can act on; the message says what it is and what to do."""
