"""Where DSSE envelopes of receipts are kept: git notes under refs/notes/gpu-proof-attestations.

The note on commit C holds the envelopes of receipts stored in C's receipt note
(refs/notes/gpu-proof), one envelope per line: compact JSON, which has no line break
inside, ending with LF. Writers only append a line, skip one already there byte for
byte, and move the ref with the compare-and-swap receipts use (gitproof.notes), so an
envelope, once written, is never rewritten or dropped. Blank lines mean nothing.

An envelope made for a *pending* receipt (code not committed yet) waits in a blob under
``refs/gpu-proof/pending-attestations/<the pending receipt's blob id>`` and moves into
the note of the commit its receipt attaches to (gitproof.pending).

This module stores bytes and never parses an envelope: building one is
gitproof.signing.attest's job, judging one gitproof.verify.attestations'.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

import pygit2

from gitproof.errors import GitproofError
from gitproof.notes import NotesStore, tree_with_note
from gitproof.receipt import MAX_NOTE_BYTES

ATTESTATIONS_REF = "refs/notes/gpu-proof-attestations"
PENDING_PREFIX = "refs/gpu-proof/pending-attestations/"
# An envelope holds its receipt base64-encoded twice (in the statement, then the statement
# in the envelope): about 1.8 times the receipt's size.
MAX_ENVELOPE_BYTES = MAX_NOTE_BYTES // 2
MAX_ATTESTATION_NOTE_BYTES = 2 * MAX_NOTE_BYTES
_MAX_RETRIES = 50
_HEX = re.compile(r"[0-9a-f]+")


class AttestationNoteError(GitproofError):
    """An attestation note cannot be read or written; the message says why."""


def envelope_lines(data: bytes) -> list[bytes]:
    """The envelopes in a note: its lines that are not blank, exactly as stored, without LF."""
    return [line for line in data.split(b"\n") if line.strip()]


def join_lines(existing: bytes, *lines: bytes) -> bytes:
    """``existing`` unchanged, then each line and LF."""
    out = bytearray(existing)
    if out and not out.endswith(b"\n"):
        out += b"\n"
    for line in lines:
        out += line + b"\n"
    return bytes(out)


def _fanout_paths(commit_id: str) -> list[str]:
    """Where git may keep a commit's note: flat, or under 2-hex-digit folders."""
    return ["/".join([commit_id[2 * i:2 * i + 2] for i in range(depth)] + [commit_id[2 * depth:]])
            for depth in range(len(commit_id) // 2)]


def note_blob(tip: pygit2.Commit | None, commit_id: str) -> tuple[pygit2.Blob, str] | None:
    """The note blob for ``commit_id`` in the notes commit ``tip``, and its path there."""
    if tip is None or not _HEX.fullmatch(commit_id) or len(commit_id) not in (40, 64):
        return None
    for path in _fanout_paths(commit_id):
        try:
            entry = tip.tree[path]
        except KeyError:
            continue
        if isinstance(entry, pygit2.Blob):
            return entry, path
    return None


def note_of(repo: pygit2.Repository, commit_id: str) -> pygit2.Blob | None:
    """The blob of the attestation note on ``commit_id``, its data not read yet; None when there
    is none. AttestationNoteError when it is over MAX_ATTESTATION_NOTE_BYTES (not to be read)."""
    found = note_blob(NotesStore(repo, ATTESTATIONS_REF).tip(), commit_id)
    if found is None:
        return None
    size = repo.odb.read_header(found[0].id)[1]
    if size > MAX_ATTESTATION_NOTE_BYTES:
        raise AttestationNoteError(f"the attestation note on {commit_id[:10]} is {size} bytes, over the "
                                   f"{MAX_ATTESTATION_NOTE_BYTES}-byte limit; not read")
    return found[0]


def read_note(repo: pygit2.Repository, commit_id: str) -> bytes | None:
    """The attestation note on ``commit_id`` as stored; None when there is none.
    AttestationNoteError when it is over MAX_ATTESTATION_NOTE_BYTES (not read)."""
    blob = note_of(repo, commit_id)
    return None if blob is None else blob.data


_WHITESPACE = b" \t\n\r\f\v"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Candidates:
    """The lines of a note that could be envelopes: compact JSON objects, so starting with "{"."""

    lines: list[bytes]  # the first few, as stored, without LF
    total: int  # how many such lines the note holds
    others: bool  # whether it holds other text, never an envelope (known when every candidate was taken)


def envelope_candidates(data: bytes, limit: int) -> Candidates:
    """The first ``limit`` lines of a note that start with "{", how many there are, and whether
    other text is there too. However many lines the note has, only the lines taken are split
    out: the rest is searched and counted by bytes methods, never line by line in Python, so a
    note of millions of short lines costs a scan, not millions of objects."""
    lines: list[bytes] = []
    start = 0 if data.startswith(b"{") else _next_candidate(data, 0)
    while start >= 0 and len(lines) < limit:
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        lines.append(data[start:end])
        start = _next_candidate(data, end)
    if start >= 0:  # more than ``limit``: count the rest, and leave other text unknown
        return Candidates(lines, len(lines) + 1 + data.count(b"\n{", start), False)
    others = _visible_bytes(data) > sum(_visible_bytes(line) for line in lines)
    return Candidates(lines, len(lines), others)


def _visible_bytes(data: bytes) -> int:
    """How many bytes of ``data`` are not ASCII whitespace, counted a chunk at a time."""
    return sum(len(data[at:at + _CHUNK].translate(None, _WHITESPACE)) for at in range(0, len(data), _CHUNK))


def _next_candidate(data: bytes, at: int) -> int:
    """Where the next line starting with "{" after position ``at`` begins; -1 when none does."""
    found = data.find(b"\n{", at)
    return found if found < 0 else found + 1


def check_room(repo: pygit2.Repository, commit_id: str | None, line: bytes) -> None:
    """AttestationNoteError when ``line`` is too large, or would take the note on ``commit_id``
    (None: a pending receipt's, not known yet) past its limit."""
    if len(line) > MAX_ENVELOPE_BYTES:
        raise AttestationNoteError(f"the envelope is {len(line)} bytes, over the {MAX_ENVELOPE_BYTES}-byte "
                                   "limit for one attestation; record fewer or smaller tests per run")
    if commit_id is None:
        return
    found = note_blob(NotesStore(repo, ATTESTATIONS_REF).tip(), commit_id)
    size = repo.odb.read_header(found[0].id)[1] if found else 0
    if size + len(line) + 1 > MAX_ATTESTATION_NOTE_BYTES:
        raise AttestationNoteError(f"the attestation note on {commit_id[:10]} would be over the "
                                   f"{MAX_ATTESTATION_NOTE_BYTES}-byte limit past which it is not read")


def append_envelope(repo: pygit2.Repository, commit_id: str, line: bytes) -> bool:
    """Append one envelope line to the commit's attestation note; False when it is there already."""
    if b"\n" in line or not line.strip():
        raise ValueError("an envelope is one line of JSON")
    check_room(repo, commit_id, line)
    store = NotesStore(repo, ATTESTATIONS_REF)
    for _ in range(_MAX_RETRIES):
        tip = store.tip()
        found = note_blob(tip, commit_id)
        data = found[0].data if found else b""
        if line in envelope_lines(data):
            return False
        tree = tree_with_note(repo, tip.tree if tip else None, found[1] if found else commit_id,
                              join_lines(data, line))
        if store.commit_tree(tip, tree, f"gpu-proof: attestation for {commit_id}"):
            return True
    raise AttestationNoteError(f"{ATTESTATIONS_REF} kept changing under us; try again")


# -- envelopes of pending receipts ------------------------------------------------------------

def pending_ref(receipt_ref: str) -> str:
    """Where the envelope of the pending receipt at ``receipt_ref`` waits."""
    return PENDING_PREFIX + receipt_ref.rsplit("/", 1)[-1]


def hold_pending(repo: pygit2.Repository, receipt_ref: str, line: bytes) -> str:
    """Keep the envelope of a pending receipt until the receipt attaches; the ref it is under."""
    check_room(repo, None, line)
    ref = pending_ref(receipt_ref)
    repo.references.create(ref, repo.create_blob(join_lines(b"", line)), force=True)
    return ref


def attach_pending(repo: pygit2.Repository, receipt_ref: str, commit_id: str) -> int:
    """Move the envelopes waiting for the pending receipt at ``receipt_ref`` onto ``commit_id``,
    where the receipt attached; how many were added. Never raises: it runs in the git hooks,
    where the receipt's attachment must not fail over its envelope. What cannot move (a ref
    gitproof did not write, a full note) stays where it is."""
    ref = repo.references.get(pending_ref(receipt_ref))
    if ref is None:
        return 0
    blob = repo.get(cast(pygit2.Oid, ref.target))
    if not isinstance(blob, pygit2.Blob) or blob.size > MAX_ENVELOPE_BYTES + 1:
        return 0
    try:
        added = sum(append_envelope(repo, commit_id, line) for line in envelope_lines(blob.data))
    except (GitproofError, ValueError):  # a full note; the notes ref kept moving
        return 0
    ref.delete()
    return added
