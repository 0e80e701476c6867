"""gitproof.receipt.model: what a receipt states, and the bytes that get signed."""
from __future__ import annotations

from gitproof.receipt import MAGIC, SignedReceipt, TestResult, serialize_payload
from tests.factories import make_receipt

FAKE_SIG = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"


def _signed(**overrides) -> SignedReceipt:
    receipt = make_receipt(**overrides)
    return SignedReceipt(receipt, serialize_payload(receipt), FAKE_SIG)


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


def test_counts_name_every_outcome():
    receipt = make_receipt(tests=[TestResult("t::a", "passed", 0), TestResult("t::b", "xfailed", 0)])
    assert receipt.counts == {"passed": 1, "failed": 0, "error": 0, "skipped": 0, "xfailed": 1, "xpassed": 0}
    assert b"\ncounts: passed=1 failed=0 error=0 skipped=0 xfailed=1 xpassed=0\n" in serialize_payload(receipt)


def test_values_are_escaped_onto_one_line():
    payload = serialize_payload(make_receipt(signer="eve\n@example.com", branch=" x",
                                             tests=[TestResult("t.py::t[a\nb]", "passed", 0.1)]))
    assert b"\nsigner: eve%0A@example.com " in payload and b"\nbranch: %20x\n" in payload
    assert payload.endswith(b"\ntest: passed 0.100s t.py::t[a%0Ab]\n")


def test_identity_differs_when_any_byte_differs():
    assert _signed().identity == _signed().identity
    assert _signed().identity != _signed(branch="other").identity


def test_a_signed_receipt_is_its_payload_then_its_signature():
    signed = _signed()
    assert signed.text == signed.payload.decode() + FAKE_SIG and not signed.unsigned
