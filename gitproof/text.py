"""Untrusted text made safe to store on one line or to show on a terminal, and dates as text.

Receipt fields, commit subjects, paths and signer names come from people who
may be hostile: a control character can drive a terminal, a bidirectional
override can reorder what a reader sees. What could do that is written as
``%XX``, the uppercase hex of its UTF-8 bytes.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

_NEEDS_ESCAPE_RE = re.compile(r"[%\x00-\x1f\x7f]")
# C1 controls, bidi marks and overrides, line separators, and the surrogate escapes that stand
# for bytes that were not UTF-8 (from a file read with errors="surrogateescape").
_INVISIBLE_RE = re.compile("[\u0080-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                           "\udc80-\udcff]")
# C0 and C1 controls (newline and tab too), DEL, and bidirectional marks and overrides.
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Control characters other than newline and tab, with everything _INVISIBLE_RE covers.
_UNSAFE_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u061c\u200e\u200f\u2028\u2029"
                        "\u202a-\u202e\u2066-\u2069\udc80-\udcff]")
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def percent_bytes(match: re.Match[str]) -> str:
    """A regular expression match written as ``%XX`` per UTF-8 byte (for ``re.sub``)."""
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8", "surrogateescape"))


def escape(value: str) -> str:
    """Make any string fit on one line, reversibly (the receipt format's escaping).

    ``%``, control characters, DEL and leading/trailing spaces become ``%XX``
    (uppercase hex of the UTF-8 byte); everything else stays as it is.
    """
    if not _NEEDS_ESCAPE_RE.search(value) and not value.startswith(" ") and not value.endswith(" "):
        return value
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        code = ord(ch)
        if ch == "%" or code < 0x20 or code == 0x7F or (ch == " " and i in (0, last)):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def printable(value: str) -> str:
    """:func:`escape`, and also the C1 controls (U+0080..U+009F, which some
    terminals obey) and the bidirectional overrides that could reorder what a
    reader sees: for showing receipt text, which is unauthenticated until
    verified, on a terminal. Not part of the receipt format."""
    escaped = escape(value)
    if not _INVISIBLE_RE.search(escaped):
        return escaped
    return _INVISIBLE_RE.sub(percent_bytes, escaped)


def terminal_safe(text: str) -> str:
    """A message for the terminal, with what could drive or disguise it shown as %XX.

    Unlike :func:`printable`, lines and ``%`` stay as they are: for whole messages that
    may quote a hostile path or value (from a policy file, say), not for receipt fields."""
    return _UNSAFE_RE.sub(percent_bytes, text)


def one_line_safe(text: str) -> str:
    """A message that quotes untrusted text (a signer's reason, say), kept on one line and safe
    for a terminal: every control character and bidirectional override shown as %XX."""
    return _CONTROL_RE.sub(percent_bytes, text)


def stamp(when: datetime) -> str:
    """A moment as UTC to the second, ``2025-01-31T12:00:00Z``, for messages."""
    return when.astimezone(timezone.utc).strftime(STAMP_FORMAT)
