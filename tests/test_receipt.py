from __future__ import annotations

import pytest

from gitproof.receipt import (MAGIC, ReceiptFormatError, SignedReceipt, TestResult, escape,
                              join_note, parse_note, parse_payload, serialize_payload, unescape)
from tests.factories import make_receipt

FAKE_SIG = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"


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


def test_first_lines_are_the_readable_summary():
    lines = serialize_payload(make_receipt()).decode().splitlines()
    assert lines[0] == MAGIC
    assert [line.split(":")[0] for line in lines[1:8]] == [
        "verdict", "counts", "gpu", "signer", "time", "mode", "tree"]


def test_verdict_failed_when_any_test_fails_or_errors_or_pytest_failed():
    failing = make_receipt(tests=[TestResult("t::a", "passed", 0), TestResult("t::b", "error", 0)])
    assert failing.verdict == "failed"
    assert make_receipt(exit_status=1).verdict == "failed"
    assert make_receipt(tests=[]).verdict == "failed"
    assert make_receipt(tests=[TestResult("t::a", "skipped", 0)]).verdict == "failed"
    assert make_receipt(tests=[TestResult("t::a", "passed", 0), TestResult("t::b", "skipped", 0)]).verdict == "passed"
    assert make_receipt().verdict == "passed"


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


def _signed(**overrides) -> SignedReceipt:
    receipt = make_receipt(**overrides)
    return SignedReceipt(receipt, serialize_payload(receipt), FAKE_SIG)


def test_a_note_holds_several_receipts_with_blank_lines_between():
    first, second = _signed(), _signed(signer="bob@example.com")
    note = join_note(join_note(b"", first), second).decode()
    assert note.startswith(first.text) and note.endswith(second.text)
    entries = parse_note("\n" + note + "\n\n")
    assert [e.signed.receipt.signer for e in entries] == ["alice@example.com", "bob@example.com"]
    assert all(e.error is None for e in entries)


def test_garbage_in_a_note_is_reported_and_good_receipts_still_read():
    good = _signed()
    note = "hello, I am not a receipt\n\n" + good.text + "\n" + MAGIC + "\nverdict: passed\n"
    entries = parse_note(note)
    assert [e.error is None for e in entries] == [False, True, False]
    assert entries[1].signed == good
    assert "not a receipt" in entries[0].error
    assert "signature" in entries[2].error


def test_identity_differs_when_any_byte_differs():
    assert _signed().identity == _signed().identity
    assert _signed().identity != _signed(branch="other").identity


def test_shard_and_ci_fields_round_trip():
    receipt = make_receipt(shard="kernels", ci={"provider": "github-actions", "run_id": "42"})
    payload = serialize_payload(receipt)
    assert b"\nshard: kernels\n" in payload and b'\nci: {"provider": "github-actions"' in payload
    assert parse_payload(payload) == receipt


def test_unsigned_receipts_are_marked_as_such_and_nothing_else_passes_for_one():
    from gitproof.receipt import UNSIGNED_TRAILER

    receipt = make_receipt(key_fingerprint="unsigned")
    note = serialize_payload(receipt).decode() + UNSIGNED_TRAILER + "\n\n" + _signed().text
    entries = parse_note(note)
    assert entries[0].signed.unsigned and not entries[1].signed.unsigned
    lying = serialize_payload(make_receipt()).decode() + UNSIGNED_TRAILER + "\n"
    assert "unsigned" in parse_note(lying)[0].error


def test_join_keeps_existing_bytes_even_when_they_are_not_utf8():
    existing = b"\xff\xfe not text\n"
    joined = join_note(existing, _signed())
    assert joined.startswith(existing) and joined.endswith(_signed().text.encode())


@pytest.mark.parametrize("hostile", [
    lambda t: t.replace('pytest-args: ["--gpu-proof"]', "pytest-args: " + "[" * 100000),
    lambda t: t.replace("exit-status: 0", "exit-status: " + "9" * 5000),
    lambda t: t.replace("gpu: {", "gpu: " + "[" * 100000 + "{", 1),
    lambda t: t.replace("\n\ntest:", "\ngpu-use: " + "{\"a\": " * 100000 + "\n\ntest:", 1),
    lambda t: t.replace("\n\ntest:", "\ngpu-facts: " + "[" * 100000 + "\n\ntest:", 1),
    lambda t: t.replace("\n\ntest:", '\ngpu-use: {"test": "x", "used": ' + "9" * 5000 + "}\n\ntest:", 1),
])
def test_hostile_receipts_are_malformed_entries_not_crashes(hostile):
    text = hostile(serialize_payload(make_receipt()).decode()) + FAKE_SIG
    [entry] = parse_note(text)
    assert entry.signed is None and entry.error.startswith("malformed receipt")
