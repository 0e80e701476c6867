"""gitproof.receipt.parse: reading a payload back, strictly."""
from __future__ import annotations

import pytest

from gitproof.receipt import MAGIC, ReceiptFormatError, TestResult, parse_payload, serialize_payload, unescape
from gitproof.text import escape
from tests.factories import make_receipt


@pytest.mark.parametrize("value", [
    "plain", "with space inside", " leading", "trailing ", "new\nline", "tab\there",
    "percent %41 sign", "caf\u00e9 \u2603", "\x7f", "", "%", "cr\r\n",
])
def test_escape_round_trips_and_stays_on_one_line(value):
    escaped = escape(value)
    assert "\n" not in escaped and "\r" not in escaped
    assert unescape(escaped) == value


@pytest.mark.parametrize("bad", ["%4", "%zz", "%0a", "%41", "%FF"])
def test_unescape_refuses_non_canonical_or_invalid_text(bad):
    with pytest.raises(ReceiptFormatError):
        unescape(bad)


def test_payload_round_trips_exactly():
    receipt = make_receipt(tests=[TestResult("tests/t.py::test[a\nb]", "passed", 0.1)])
    payload = serialize_payload(receipt)
    parsed = parse_payload(payload)
    assert parsed == receipt
    assert serialize_payload(parsed) == payload


def test_unknown_header_fields_are_kept_for_forward_compatibility():
    payload = serialize_payload(make_receipt())
    extended = payload.replace(b"\n\ntest:", b'\nattestation: {"kind": "nvidia-cc"}\n\ntest:', 1)
    receipt = parse_payload(extended)
    assert receipt.extra == [("attestation", '{"kind": "nvidia-cc"}')]
    assert serialize_payload(receipt) == extended


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("verdict: passed", "verdict: failed"), "verdict"),
    (lambda t: t.replace("passed=2", "passed=3"), "counts"),
    (lambda t: t.replace("mode: local", "mode: cloud"), "mode"),
    (lambda t: t.replace(MAGIC, "gpu-proof receipt v2"), "unsupported receipt format version"),
    (lambda t: t.replace(MAGIC, "a receipt"), "first line"),
    (lambda t: t.replace("commit: 333", "commit: xyz"), "commit"),
    (lambda t: t.replace("\n\ntest:", "\ntest:", 1), "blank line"),
    (lambda t: t + "trailing junk\n", "key: value"),
    (lambda t: t + "verdict: passed\n", "only 'test:' lines"),
    (lambda t: t.replace("test: passed 0.500s", "test: passed 0.5s"), "test line"),
    (lambda t: t.replace("gpu: {", "gpu: [", 1), "gpu"),
    (lambda t: t.replace("mode: local\n", "mode: local\nmode: local\n"), "twice"),
    (lambda t: t.replace("\n", "\r\n"), "LF"),
    (lambda t: t.replace("mode: local\n", "").replace("commit:", "mode: local\ncommit:"), "canonical"),
    (lambda t: t.replace("dirty-outside-paths: no", "dirty-outside-paths: maybe"), "dirty"),
])
def test_strict_parsing_rejects_malformed_receipts(mutate, message):
    text = serialize_payload(make_receipt()).decode()
    with pytest.raises(ReceiptFormatError, match=message):
        parse_payload(mutate(text).encode())


def test_unknown_fields_may_stand_anywhere_in_the_header():
    payload = serialize_payload(make_receipt())
    extended = payload.replace(b"\nmode: local\n", b"\nmode: local\nfuture-field: 42\n", 1)
    receipt = parse_payload(extended)
    assert receipt.extra == [("future-field", "42")] and receipt.mode == "local"


def test_shard_and_ci_fields_round_trip():
    receipt = make_receipt(shard="kernels", ci={"provider": "github-actions", "run_id": "42"})
    payload = serialize_payload(receipt)
    assert b"\nshard: kernels\n" in payload and b'\nci: {"provider": "github-actions"' in payload
    assert parse_payload(payload) == receipt


def test_a_gpu_use_record_must_name_a_listed_test_once():
    use = {"test": "tests/test_k.py::test_a", "used": True}
    receipt = make_receipt(gpu_use=[use])
    assert parse_payload(serialize_payload(receipt)).gpu_use == [use]
    with pytest.raises(ReceiptFormatError, match="two gpu-use records"):
        parse_payload(serialize_payload(make_receipt(gpu_use=[use, use])))
    with pytest.raises(ReceiptFormatError, match="does not list"):
        parse_payload(serialize_payload(make_receipt(gpu_use=[{**use, "test": "elsewhere"}])))
