"""Notes: several receipts in one blob, split and joined without changing a byte of any.

A note holds receipts one after another, blank lines between them. What is not
a receipt this version can read (a newer format's receipt, junk) is kept as an
entry of its own, so that merging notes never drops anything.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from typing import Callable, Iterator

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
    lines = _Lines(text)
    i = 0
    while i < len(text):
        line = lines.at(i)
        if line.strip() == "":
            i += len(line)
            continue
        if line.rstrip("\n") != MAGIC:
            end = lines.next(i + len(line), _starts_receipt)
            yield "", text[i:end]
            i = end
            continue
        start = i
        i = lines.next(start + len(line), _ends_payload)  # any version's receipt starts anew
        if i < len(text) and lines.at(i).rstrip("\n") == UNSIGNED_TRAILER:
            yield text[start:i], lines.at(i)
            i += len(lines.at(i))
            continue
        if i >= len(text) or lines.at(i).rstrip("\n") != SIG_BEGIN:
            yield text[start:i], ""
            continue
        payload_end = i
        i = lines.next(i, _ends_signature)
        if i < len(text) and lines.at(i).rstrip("\n") == SIG_END:
            i += len(lines.at(i))  # a block cut short ends where the next receipt starts
        yield text[start:payload_end], text[payload_end:i]


class _Lines:
    """A note's lines, as str.splitlines(keepends=True) cuts them, by the offset where each starts.

    Only lines starting with '-----' or a magic prefix can start or end a receipt or its
    signature, so those are found first and the others are never looked at one by one; where
    LF is the only line break (as in every note gitproof writes) the text is not cut up at all.
    """

    MARKS = ("-----", MAGIC_PREFIX)
    OTHER_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where splitlines breaks besides LF

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] | None = None  # every line's start, when LF is not the only break
        if any(ch in text for ch in self.OTHER_BREAKS):
            lines = text.splitlines(keepends=True)
            self.starts = list(accumulate(map(len, lines), initial=0))
            self.marked = list(compress(self.starts, map(str.startswith, lines, repeat(self.MARKS))))
        else:
            self.marked = sorted(self._lf_marks())

    def _lf_marks(self) -> Iterator[int]:
        for mark in self.MARKS:
            if self.text.startswith(mark):
                yield 0
            found = self.text.find("\n" + mark)
            while found >= 0:
                yield found + 1
                found = self.text.find("\n" + mark, found + 1)

    def at(self, start: int) -> str:
        """The line starting at ``start``, with its line break."""
        if self.starts is not None:
            return self.text[start:self.starts[bisect_right(self.starts, start)]]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end + 1]

    def next(self, start: int, wanted: Callable[[str], bool]) -> int:
        """Where the first line from ``start`` on that is ``wanted`` starts; the text's end if none is."""
        for k in range(bisect_left(self.marked, start), len(self.marked)):
            if wanted(self.at(self.marked[k])):
                return self.marked[k]
        return len(self.text)


def _starts_receipt(line: str) -> bool:
    return line.startswith(MAGIC_PREFIX)


def _ends_payload(line: str) -> bool:
    return line.rstrip("\n") in (SIG_BEGIN, UNSIGNED_TRAILER) or line.startswith(MAGIC_PREFIX)


def _ends_signature(line: str) -> bool:
    return line.rstrip("\n") == SIG_END or line.startswith(MAGIC_PREFIX)


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
        data = payload.encode("utf-8")
        receipt = parse_payload(data)
    except ReceiptFormatError as exc:
        return NoteEntry(None, f"malformed receipt: {exc}", index)
    except (ValueError, RecursionError, OverflowError) as exc:  # hostile input: never a crash
        return NoteEntry(None, f"malformed receipt: {type(exc).__name__}", index)
    if (trailer == UNSIGNED_TRAILER) != (receipt.key_fingerprint == UNSIGNED_KEY):
        return NoteEntry(None, "malformed receipt: 'unsigned' key without the unsigned trailer "
                               "(or the reverse)", index)
    if not signature.endswith("\n"):
        signature += "\n"
    return NoteEntry(SignedReceipt(receipt, data, signature), None, index)


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
