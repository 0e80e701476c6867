"""gitproof.receipt.note: several receipts in one note, split and joined byte for byte."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitproof.receipt import (
    MAGIC,
    MAGIC_PREFIX,
    SIG_BEGIN,
    SIG_END,
    UNSIGNED_TRAILER,
    SignedReceipt,
    join_note,
    join_raw,
    parse_note,
    raw_entries,
    serialize_payload,
    split_note,
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


def _split_line_by_line(text: str) -> list[tuple[str, str]]:
    """split_note as it was before it jumped between marked lines: the oracle."""
    lines = text.splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "":
            i += 1
            continue
        if lines[i].rstrip("\n") != MAGIC:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(MAGIC_PREFIX)), len(lines))
            out.append(("", "".join(lines[i:end])))
            i = end
            continue
        start = i
        while i < len(lines) and lines[i].rstrip("\n") not in (SIG_BEGIN, UNSIGNED_TRAILER):
            if i > start and lines[i].startswith(MAGIC_PREFIX):
                break
            i += 1
        if i < len(lines) and lines[i].rstrip("\n") == UNSIGNED_TRAILER:
            out.append(("".join(lines[start:i]), lines[i]))
            i += 1
            continue
        if i >= len(lines) or lines[i].rstrip("\n") != SIG_BEGIN:
            out.append(("".join(lines[start:i]), ""))
            continue
        payload_end = i
        while i < len(lines) and lines[i].rstrip("\n") != SIG_END and not lines[i].startswith(MAGIC_PREFIX):
            i += 1
        if i < len(lines) and lines[i].rstrip("\n") == SIG_END:
            i += 1
        out.append(("".join(lines[start:payload_end]), "".join(lines[payload_end:i])))
    return out


NOTE_PIECES = st.sampled_from([
    MAGIC + "\n", "gpu-proof receipt v2\n", SIG_BEGIN + "\n", SIG_END + "\n", UNSIGNED_TRAILER + "\n", "\n", " \t\n",
    "verdict: passed\n", "test: passed 0.100s t\n", "AAAA\n", SIG_BEGIN, SIG_END + "\r\n", "-----\n", "x\x85y\n",
    "a\u2028" + SIG_BEGIN + "\n", "\r", "\x0c",
]) | st.text(max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(NOTE_PIECES, max_size=30).map("".join))
def test_a_note_splits_as_it_did_line_by_line(text):
    assert list(split_note(text)) == _split_line_by_line(text)
