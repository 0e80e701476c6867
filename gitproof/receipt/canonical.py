"""Patterns that match only canonical receipt text: exactly what this version writes.

The parser's fast reading proves the many ``test:`` and ``gpu-use:`` lines of a
receipt canonical with these, in one pass each, instead of parsing every line
and writing it back (gitproof.receipt.parse). A line they do not match is read
the slow way and may still be canonical. They must never match a line that the
slow way refuses or reads differently: the receipt tests compare the two on
generated and mutated text. Control characters are refused for the whole
payload before these run, so the patterns do not repeat that.
"""
from __future__ import annotations

import re

from gitproof.receipt.model import OUTCOMES

# float(text) formatted with "%.3f" gives text back for every decimal of at most 15 significant
# digits (a double keeps 15), so for at most 12 digits before the point, without a leading zero.
_DURATION = r"(?:0|[1-9][0-9]{0,11})\.[0-9]{3}"
_TEST = rf"test: ({'|'.join(OUTCOMES)}) ({_DURATION})s "
# A test line whose node id escape() leaves as it is and unescape() reads as itself: no '%', no
# space at either end. Groups: outcome, duration, node id.
TEST_LINE = re.compile(rf"{_TEST}((?:[^ %](?:[^%]*[^ %])?)?)")
# The same for every line of a test section at once, one match per line, for a section without '%'
# (the caller checks that, much faster than a pattern).
PLAIN_TEST_LINES = re.compile(rf"^{_TEST}((?:[^ \n](?:.*[^ \n])?)?)\n", re.M)

# A string as json_text writes it (ensure_ascii=False): '"', '\\' and the control characters escaped,
# with JSON's short escapes where it has one and a lowercase \u00xx otherwise; nothing else.
_STRING = r'"[^"\\\x00-\x1f]*+(?:\\(?:["\\bfnrt]|u00(?:0[0-7bef]|1[0-9a-f]))[^"\\\x00-\x1f]*+)*+"'
# A gpu-use record as GpuUse.to_dict writes it without kernel tracing, in json_text's layout. Every
# value has the type gitproof.receipt.fields.gpu_use_object demands, and no key appears twice.
_USE_REST = (r'"used": (?:true|false|null), "method": (?:STR|null), "evidence": STR, '
             r'"devices": \[(?:STR(?:, STR)*+)?\], "nvml": (?:STR|null)').replace("STR", _STRING)
PLAIN_USE = re.compile(rf'\{{"test": {_STRING}, {_USE_REST}\}}')
# The members after ``test`` of such a record.
PLAIN_USE_REST = re.compile(_USE_REST)
# gpu-use lines that start as such a record does, one match per line. Groups: the test's JSON
# string, the rest of the record, which is a plain one's when PLAIN_USE_REST matches it (records
# mostly differ in their test alone, so each distinct rest needs checking once).
USE_LINES = re.compile(rf'^gpu-use: \{{"test": ({_STRING}), (.*)\}}\n', re.M)
