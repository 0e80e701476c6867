"""gitproof.text: untrusted text on one line and on a terminal, and dates as text."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gitproof.text import escape, one_line_safe, printable, stamp, terminal_safe


@pytest.mark.parametrize("value, escaped", [
    ("plain text", "plain text"), (" edges ", "%20edges%20"), ("100%", "100%25"),
    ("a\nb\tc\x7f", "a%0Ab%09c%7F"), ("caf\u00e9", "caf\u00e9"),
])
def test_escape_keeps_a_value_on_one_line(value, escaped):
    assert escape(value) == escaped


@pytest.mark.parametrize("value, shown", [
    ("name\u202e.txt", "name%E2%80%AE.txt"),  # a right-to-left override would reverse what follows
    ("\x9b31m", "%C2%9B31m"),  # a C1 control sequence introducer
    ("bad\udcffbyte", "bad%FFbyte"),  # a byte that was not UTF-8
    ("line\u2028break", "line%E2%80%A8break"),
    ("a\nb", "a%0Ab"),
])
def test_printable_also_shows_what_a_terminal_would_obey_or_reorder(value, shown):
    assert printable(value) == shown


def test_terminal_safe_keeps_lines_tabs_and_percent_signs():
    assert terminal_safe("50% done\n\tnext\x1b[2J\u202e") == "50% done\n\tnext%1B[2J%E2%80%AE"


def test_one_line_safe_escapes_every_control_but_leaves_percent_signs():
    assert one_line_safe("why: 100%\nforged line\x1b\u200f") == "why: 100%%0Aforged line%1B%E2%80%8F"


def test_stamp_is_utc_to_the_second():
    moment = datetime(2025, 1, 31, 13, 0, 5, 999, tzinfo=timezone(timedelta(hours=1)))
    assert stamp(moment) == "2025-01-31T12:00:05Z"
