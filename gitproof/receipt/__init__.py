"""The receipt: a readable, line-oriented record of one GPU test session.

``model`` states what a receipt says and writes the exact bytes that get
signed; ``parse`` reads those bytes back, strictly; ``fields`` checks the
JSON-valued header fields, and ``checks`` reads a ``check:`` record as a typed
:class:`CheckRecord` (the GPU records are typed in gitproof.gpu.records);
``note`` splits and joins the several receipts a git note holds. Values are
escaped onto one line by gitproof.text.escape. docs/receipt-format.md is the specification.
"""
from gitproof.receipt.checks import CHECK_OUTCOMES, CheckRecord, check_outcome
from gitproof.receipt.model import (
    FAILING_OUTCOMES,
    MAGIC,
    MAGIC_PREFIX,
    MODES,
    OUTCOMES,
    SIG_BEGIN,
    SIG_END,
    UNSIGNED_KEY,
    UNSIGNED_TRAILER,
    Receipt,
    ReceiptFormatError,
    SignedReceipt,
    TestResult,
    serialize_payload,
)
from gitproof.receipt.note import (
    MAX_NOTE_BYTES,
    NoteEntry,
    join_note,
    join_raw,
    note_entries,
    parse_note,
    raw_entries,
    split_note,
)
from gitproof.receipt.parse import parse_payload, unescape

__all__ = [
    "CHECK_OUTCOMES", "FAILING_OUTCOMES", "MAGIC", "MAGIC_PREFIX", "MAX_NOTE_BYTES", "MODES", "OUTCOMES",
    "SIG_BEGIN", "SIG_END", "UNSIGNED_KEY", "UNSIGNED_TRAILER",
    "CheckRecord", "NoteEntry", "Receipt", "ReceiptFormatError", "SignedReceipt", "TestResult",
    "check_outcome", "join_note", "join_raw", "note_entries", "parse_note", "parse_payload",
    "raw_entries", "serialize_payload", "split_note", "unescape",
]
