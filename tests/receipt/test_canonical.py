"""The fast reading of a payload (gitproof.receipt.canonical's patterns) against the strict one.

The strict reading parses every line, writes the receipt back and compares the
bytes; it is the oracle. The fast reading must give the same receipt for every
payload it accepts, and decline (leaving the answer to the strict reading)
only what is odd: never a payload this version writes.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitproof.receipt import OUTCOMES, Receipt, ReceiptFormatError, TestResult, canonical, parse, serialize_payload
from gitproof.receipt.fields import gpu_use_object
from gitproof.receipt.model import format_test_line, json_text
from tests.factories import make_receipt

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(codec="utf-8"), max_size=10)
NODEID = st.one_of(st.from_regex(r"tests/t_[a-z]\.py::test_[a-z0-9]{1,3}(\[[a-z -]{0,4}\])?", fullmatch=True),
                   TEXT, st.sampled_from(["", " ", "a b ", "%", "%25", "t[\u00e9\u2028]", 'q"\\']))
DURATION = st.one_of(st.floats(0, 1e16), st.integers(0, 10**14).map(lambda n: n / 1000),
                     st.sampled_from([-1.0, 0.0005, 0.0015, 999999999999.999, 1e12, 123456789012.3456]))
TEST = st.builds(TestResult, NODEID, st.sampled_from(OUTCOMES), DURATION)
OPTIONAL_TEXT = st.none() | TEXT
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain_use(test: str) -> st.SearchStrategy[dict[str, Any]]:
    """A record as GpuUse.to_dict writes it without kernel tracing."""
    return st.builds(lambda used, method, evidence, devices, nvml: {
        "test": test, "used": used, "method": method, "evidence": evidence, "devices": devices, "nvml": nvml},
        st.sampled_from([True, False, None]), OPTIONAL_TEXT, TEXT, st.lists(TEXT, max_size=2), OPTIONAL_TEXT)


def other_use(test: str) -> st.SearchStrategy[dict[str, Any]]:
    """Another writer's record: members left out, reordered, added, or kernels traced."""
    members = st.fixed_dictionaries({"used": st.sampled_from([True, False, None])}, optional={
        "method": OPTIONAL_TEXT, "kernels": st.fixed_dictionaries({"launches": st.integers(0, 2**64 - 1)}),
        "devices": st.lists(TEXT, max_size=1),
        "newer": st.integers() | st.floats(allow_nan=False, allow_infinity=False)})
    return st.builds(lambda extra, first: {"test": test, **extra} if first else {**extra, "test": test},
                     members, st.booleans())


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    tests = draw(st.lists(TEST, max_size=8, unique_by=lambda t: t.nodeid))
    named = draw(st.lists(st.sampled_from(tests), max_size=len(tests), unique_by=lambda t: t.nodeid)) if tests else []
    uses = [draw(st.one_of(plain_use(t.nodeid), plain_use(t.nodeid), other_use(t.nodeid))) for t in named]
    extra = draw(st.lists(st.tuples(st.sampled_from(["x-new", "future"]), st.from_regex(r"[ -~]{0,4}", fullmatch=True)),
                          max_size=2))
    return make_receipt(tests=tests, gpu_use=uses, extra=extra, exit_status=draw(st.sampled_from([0, 1])))


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """What this version writes, with its unknown fields moved anywhere in the header."""
    receipt = draw(receipts())
    lines = serialize_payload(receipt).decode().split("\n")
    blank = lines.index("")
    for key, value in receipt.extra:
        lines.remove(f"{key}: {value}")
        blank -= 1
        lines.insert(draw(st.integers(1, blank)), f"{key}: {value}")
        blank += 1
    return "\n".join(lines).encode()


EDIT_CHARS = st.one_of(st.sampled_from(list('"\\ %:,{}[]0159.esu\n\t\x7f\u00e9') + ["\\u00e9", "\\/", ", \"used\": 1"]),
                       st.characters())


@st.composite
def mutated_payloads(draw: st.DrawFn) -> bytes:
    """A payload this version writes, with a few characters replaced, dropped or inserted."""
    text = draw(payloads()).decode()
    bulk = text.find("\ngpu-use: ") if "\ngpu-use: " in text else text.find("\n\n")  # where the patterns read
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(min(bulk, len(text) - 1), len(text) - 1) | st.integers(0, len(text) - 1))
        kind = draw(st.sampled_from(["replace", "drop", "insert"]))
        ch = "" if kind == "drop" else draw(EDIT_CHARS)
        text = text[:i] + ch + text[i + (kind != "insert"):]
    return text.encode("utf-8", "surrogatepass")


def strict(payload: bytes) -> Receipt:
    return parse._read_strict(parse._payload_text(payload))


def fast(payload: bytes) -> Receipt:
    return parse._read_fast(payload, parse._payload_text(payload))


def answer(read: Any, payload: bytes) -> tuple[Any, ...]:
    """The receipt a reading gives, with each record's member order, or its refusal."""
    try:
        receipt = read(payload)
    except Exception as exc:  # the readings must agree on every error too
        return type(exc).__name__, str(exc)
    return receipt, [list(use) for use in receipt.gpu_use]


@SETTINGS
@given(payloads())
def test_the_fast_reading_accepts_what_this_version_writes_as_the_strict_one_reads_it(payload):
    expected = answer(strict, payload)
    assert answer(parse.parse_payload, payload) == expected
    if isinstance(expected[0], Receipt):  # not, say, for a negative duration, written but never read
        assert answer(fast, payload) == expected


@SETTINGS
@given(mutated_payloads())
def test_a_mutated_payload_gets_the_strict_readings_answer(payload):
    expected = answer(strict, payload)
    assert answer(parse.parse_payload, payload) == expected
    if isinstance(expected[0], Receipt) or answer(fast, payload)[0].__class__ is Receipt:
        assert answer(fast, payload) == expected  # the fast reading never accepts more, nor reads otherwise


@SETTINGS
@given(st.from_regex(canonical._DURATION, fullmatch=True))
def test_a_duration_the_pattern_matches_is_written_back_as_read(text):
    assert f"{float(text):.3f}" == text


@pytest.mark.parametrize("text", ["0.000", "0.001", "999999999999.999", "100000000000.001", "123456789012.345"])
def test_durations_at_the_patterns_edges_are_written_back_as_read(text):
    assert canonical.TEST_LINE.fullmatch(f"test: passed {text}s t") and f"{float(text):.3f}" == text


@SETTINGS
@given(st.from_regex(canonical.TEST_LINE, fullmatch=True).filter(lambda line: not CONTROL.search(line)))
def test_a_test_line_the_pattern_matches_is_canonical(line):  # control characters: refused for the whole payload
    outcome, duration, nodeid = canonical.TEST_LINE.fullmatch(line).groups()
    test = TestResult(nodeid, outcome, float(duration))
    assert format_test_line(test) == line and parse._read_test(line) == test


@settings(SETTINGS, max_examples=100)  # generating from this pattern is slow
@given(st.from_regex(canonical.PLAIN_USE, fullmatch=True))
def test_a_gpu_use_record_the_pattern_matches_is_canonical_and_well_typed(value):
    assert json_text(gpu_use_object(value)) == value
    assert parse._plain_uses(canonical.USE_LINES.findall(f"gpu-use: {value}\n")) == [json.loads(value)]


@SETTINGS
@given(st.text(st.characters(codec="utf-8")))
def test_every_string_json_text_writes_matches_the_string_pattern(value):
    assert canonical.PLAIN_USE.fullmatch(json_text(plain_record(value)))


def plain_record(value: str) -> dict[str, Any]:
    return {"test": value, "used": None, "method": value, "evidence": value, "devices": [value], "nvml": None}


@pytest.mark.parametrize("record", [
    '{"test": "a", "used": true, "used": false, "method": null, "evidence": "", "devices": [], "nvml": null}',
    '{"test":"a", "used": true, "method": null, "evidence": "", "devices": [], "nvml": null}',
    '{"test": "\\u0061", "used": true, "method": null, "evidence": "", "devices": [], "nvml": null}',
    '{"test": "a\\/", "used": true, "method": null, "evidence": "", "devices": [], "nvml": null}',
    '{"test": "a", "used": true, "method": null, "evidence": "\\u001F", "devices": [], "nvml": null}',
    '{"test": "a", "used": 1, "method": null, "evidence": "", "devices": [], "nvml": null}',
    '{"test": "a", "used": true, "method": null, "evidence": "", "devices": [ ], "nvml": null}',
])
def test_records_that_are_not_canonical_do_not_match(record):
    assert not canonical.PLAIN_USE.fullmatch(record)


@pytest.mark.parametrize("edit, accepted", [
    (lambda t: t, True),
    (lambda t: t.replace("test: passed 0.500s", "test: passed 00.500s"), False),
    (lambda t: t.replace("test: passed 0.500s", "test: passed 0.5000s"), False),
    (lambda t: t.replace("tests/test_k.py::test_a\n", "tests/test_k.py::test_a \n"), False),
    (lambda t: t.replace("tests/test_k.py::test_a\n", "tests/test_k.py::test_a%20\n"), False),  # not a listed use
    (lambda t: t.replace('"used": true', '"used": true, "newer": 1', 1), True),
    (lambda t: t.replace('\ngpu-use: {"test": "tests/test_k.py::test_b', '\nx-new: 1\ngpu-use: {"test": '
                         '"tests/test_k.py::test_b'), True),
    (lambda t: t.replace('\ngpu-use: {"test": "tests/test_k.py::test_b', '\nmode: local\ngpu-use: {"test": '
                         '"tests/test_k.py::test_b'), False),
    (lambda t: t.replace("env: os=Linux\n", "").replace("\n\ntest:", "\nenv: os=Linux\n\ntest:"), False),
    (lambda t: t.replace("tests/test_k.py::test_a\n", "tests/test_k.py::test_a\x01\n"), False),
])
def test_edits_near_the_patterns_get_the_strict_answer(edit, accepted):
    uses = [{"test": name, "used": True, "method": "torch", "evidence": "e", "devices": ["0"], "nvml": None}
            for name in ("tests/test_k.py::test_a", "tests/test_k.py::test_b[x]")]
    text = serialize_payload(make_receipt(gpu_use=uses)).decode()
    payload = edit(text).encode()
    assert answer(parse.parse_payload, payload) == answer(strict, payload)
    assert isinstance(answer(strict, payload)[0], Receipt) == accepted


@pytest.mark.parametrize("edit", [
    lambda t: t.replace("test_a\n", "test_a \n"), lambda t: t.replace("0.500s tests", "0.500s  tests"),
    lambda t: t.replace("0.500s", "0.50s"), lambda t: t.replace("0.500s", "00.500s"),
    lambda t: t.replace("test_a\n", "test_a\n\n"), lambda t: t.replace("test_a\n", "test_a\ntest: \n"),
])
def test_a_test_line_a_pattern_must_not_read_is_refused(edit):
    payload = edit(serialize_payload(make_receipt()).decode()).encode()
    assert answer(parse.parse_payload, payload) == answer(strict, payload)
    assert not isinstance(answer(strict, payload)[0], Receipt)


def test_escaped_node_ids_and_long_durations_are_read_line_by_line_and_still_accepted():
    tests = [TestResult("t.py::t[a\nb%]", "passed", 1.5), TestResult(" t ", "passed", 1e13), TestResult("", "error", 0)]
    payload = serialize_payload(make_receipt(tests=tests, exit_status=1))
    assert fast(payload).tests == tests == strict(payload).tests


def test_a_payload_with_a_control_character_is_left_to_the_strict_reading():
    payload = serialize_payload(make_receipt()).replace(b"test_a\n", b"test_a\x0b\n")
    with pytest.raises(ReceiptFormatError, match="control character"):
        fast(payload)
    with pytest.raises(ReceiptFormatError, match="control character in line"):
        parse.parse_payload(payload)


def test_plain_records_share_no_list():
    value = '{"test": "t", "used": true, "method": null, "evidence": "", "devices": ["0"], "nvml": null}'
    first, second = parse._plain_uses(canonical.USE_LINES.findall(f"gpu-use: {value}\n" * 2))
    assert first == second == json.loads(value) and first["devices"] is not second["devices"]


def _strptime_or_error(text: str) -> Any:
    from datetime import datetime, timezone

    from gitproof.receipt.model import TIME_FORMAT
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return ReceiptFormatError


@given(st.datetimes(min_value=datetime(1000, 1, 1)))  # strftime writes year 999 as "999"
def test_a_written_time_reads_back_as_strptime_reads_it(moment):
    from datetime import timezone

    from gitproof.receipt.model import format_time
    text = format_time(moment.replace(tzinfo=timezone.utc))
    assert parse._parse_time(text) == _strptime_or_error(text)


@given(st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{1,7}Z", fullmatch=True))
def test_time_text_is_accepted_exactly_when_strptime_accepts_it(text):
    expected = _strptime_or_error(text)
    if expected is ReceiptFormatError:
        with pytest.raises(ReceiptFormatError, match="bad timestamp"):
            parse._parse_time(text)
    else:
        assert parse._parse_time(text) == expected
