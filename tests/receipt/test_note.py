"""gitproof.receipt.note: several receipts in one note, split and joined byte for byte."""
from __future__ import annotations

import pytest

from gitproof.receipt import (
    MAGIC,
    UNSIGNED_TRAILER,
    SignedReceipt,
    join_note,
    join_raw,
    parse_note,
    raw_entries,
    serialize_payload,
)
from tests.factories import make_receipt

FAKE_SIG = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"


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


def test_unsigned_receipts_are_marked_as_such_and_nothing_else_passes_for_one():
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


def test_raw_entries_give_back_what_was_joined():
    newer = b"gpu-proof receipt v2\nsomething: new\n"  # a newer format's receipt stays an entry of its own
    first, second = _signed().text.encode(), _signed(branch="other").text.encode()
    entries = raw_entries(join_raw(b"", first, newer, second))
    assert entries[0] == first and entries[2] == second
    assert entries[1].strip() == newer.strip()


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
