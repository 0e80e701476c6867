"""Notes: several receipts in one blob, split and joined without changing a byte of any.

A note holds receipts one after another, blank lines between them. What is not
a receipt this version can read (a newer format's receipt, junk) is kept as an
entry of its own, so that merging notes never drops anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from gitproof.receipt.model import (
    MAGIC,
    MAGIC_PREFIX,
    SIG_BEGIN,
    SIG_END,
    UNSIGNED_KEY,
    UNSIGNED_TRAILER,
    ReceiptFormatError,
    SignedReceipt,
)
from gitproof.receipt.parse import parse_payload

# A note larger than this is not read: 10 receipts of 5,000 tests each with kernel evidence
# fit many times over, and a hostile 100 MB note would otherwise cost gigabytes to split.
MAX_NOTE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class NoteEntry:
    """One receipt found in a note, or the reason it could not be read."""

    signed: SignedReceipt | None
    error: str | None
    index: int
    code: str = "malformed"  # the failure code an unreadable entry gets


def split_note(text: str) -> Iterator[tuple[str, str]]:
    """Split a note into (payload, armored signature) text pairs.

    Blank lines between receipts are allowed; anything else outside a
    receipt is reported as an error entry with empty payload.
    """
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].strip() == "":
            i += 1
            continue
        if lines[i].rstrip("\n") != MAGIC:
            end = _next_magic(lines, i + 1)
            yield "", "".join(lines[i:end])
            i = end
            continue
        start = i
        while i < len(lines) and lines[i].rstrip("\n") not in (SIG_BEGIN, UNSIGNED_TRAILER):
            if i > start and lines[i].startswith(MAGIC_PREFIX):  # any version's receipt starts anew
                break
            i += 1
        if i < len(lines) and lines[i].rstrip("\n") == UNSIGNED_TRAILER:
            yield "".join(lines[start:i]), lines[i]
            i += 1
            continue
        if i >= len(lines) or lines[i].rstrip("\n") != SIG_BEGIN:
            yield "".join(lines[start:i]), ""
            continue
        payload_end = i
        while i < len(lines) and lines[i].rstrip("\n") != SIG_END and not lines[i].startswith(MAGIC_PREFIX):
            i += 1
        if i < len(lines) and lines[i].rstrip("\n") == SIG_END:
            i += 1  # a block cut short ends where the next receipt starts
        yield "".join(lines[start:payload_end]), "".join(lines[payload_end:i])


def _next_magic(lines: list[str], start: int) -> int:
    """Where the next receipt of any version starts (so a newer one stays an entry of its own)."""
    for j in range(start, len(lines)):
        if lines[j].startswith(MAGIC_PREFIX):
            return j
    return len(lines)


def parse_note(text: str) -> list[NoteEntry]:
    """Every receipt in a note; malformed ones become entries with an error."""
    entries = []
    for index, (payload, signature) in enumerate(split_note(text)):
        entries.append(_parse_entry(payload, signature, index))
    return entries


def _parse_entry(payload: str, signature: str, index: int) -> NoteEntry:
    if not payload:
        return NoteEntry(None, "text in note that is not a receipt", index)
    trailer = signature.rstrip("\n")
    if not trailer.endswith(SIG_END) and trailer != UNSIGNED_TRAILER:
        return NoteEntry(None, "receipt has no complete SSH signature block", index)
    try:
        receipt = parse_payload(payload.encode("utf-8"))
    except ReceiptFormatError as exc:
        return NoteEntry(None, f"malformed receipt: {exc}", index)
    except (ValueError, RecursionError, OverflowError) as exc:  # hostile input: never a crash
        return NoteEntry(None, f"malformed receipt: {type(exc).__name__}", index)
    if (trailer == UNSIGNED_TRAILER) != (receipt.key_fingerprint == UNSIGNED_KEY):
        return NoteEntry(None, "malformed receipt: 'unsigned' key without the unsigned trailer "
                               "(or the reverse)", index)
    if not signature.endswith("\n"):
        signature += "\n"
    return NoteEntry(SignedReceipt(receipt, payload.encode("utf-8"), signature), None, index)


def join_note(existing: bytes, addition: SignedReceipt) -> bytes:
    """Append a receipt to a note's bytes, leaving the existing bytes exactly as they are."""
    return join_raw(existing, addition.text.encode("utf-8"))


def raw_entries(data: bytes) -> list[bytes]:
    """A note's entries as their exact bytes: receipts, and text that is not one (a newer
    format's receipt, say). Blank lines between entries are left out.

    Latin-1 maps each byte to one character and back, so the split works on any bytes and
    gives back exactly what was stored.
    """
    if len(data) > MAX_NOTE_BYTES:  # too large to split safely: one opaque entry, kept whole
        return [data]
    return [(payload + signature).encode("latin-1")
            for payload, signature in split_note(data.decode("latin-1"))]


def join_raw(existing: bytes, *additions: bytes) -> bytes:
    """Append entries' exact bytes to a note, as :func:`join_note` does for a receipt; in one
    growing buffer, so many additions cost time in proportion to the note's size."""
    out = bytearray(existing)
    for addition in additions:
        if out:
            out += b"" if out.endswith(b"\n\n") else (b"\n" if out.endswith(b"\n") else b"\n\n")
        out += addition if addition.endswith(b"\n") else addition + b"\n"
    return bytes(out)


def note_entries(data: bytes) -> list[NoteEntry]:
    """Every receipt in a note blob; bytes that are not UTF-8 make their entry malformed."""
    return parse_note(data.decode("utf-8", errors="replace"))
