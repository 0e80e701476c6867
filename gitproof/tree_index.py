"""Finding receipts by the code they cover: an index from fingerprint trees to the commits whose
notes hold a receipt for those trees.

A receipt vouches for trees, not for a commit id, so it validates every commit with the same
trees at the policy's paths, wherever in the notes it sits: a squash merge, a rebase or a
cherry-pick makes a new commit with the receipt's trees. Scanning every note on every verify
would cost time in proportion to the notes, so this module keeps a derived cache:

- One index file per notes ref and set of policy scopes, under ``<git dir>/gpu-proof/tree-index/``.
  Each record maps a key (sha256 of a scope's shard, paths and tree ids) to a commit whose note
  holds a receipt claiming exactly those trees. Records are fixed-width and sorted, so a lookup is
  a binary search over the file, whatever its size.
- The file names the notes tip it describes. When the ref has moved, only the notes that differ
  between the two tips are read again (a tree diff); when the old tip is gone or the file is
  damaged, the index is rebuilt from the notes.
- It is only ever a list of candidates. Every receipt it points at is read, parsed and judged in
  full, so a stale, damaged or hostile index can cost a receipt being missed, never a receipt
  being accepted. A file is replaced atomically (write, then rename), so concurrent writers each
  leave a file that is true for the tip it names; readers check that tip before trusting it.
- Where the git directory cannot be written (a read-only CI checkout), the index lives in memory.

docs/receipt-format.md §1.1 states these invariants for other readers.
"""
from __future__ import annotations

import bisect
import hashlib
import mmap
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import pygit2

from gitproof.files import write_atomically
from gitproof.git import common_dir
from gitproof.notes import NOTE_MODES, NotesStore, is_note_path, walk_notes_tree
from gitproof.receipt import MAGIC, MAX_NOTE_BYTES, SIG_BEGIN, UNSIGNED_TRAILER, ReceiptFormatError
from gitproof.receipt.parse import unescape

Trees = dict[str, str | None]
# One scope of a policy: its shard (None when unsharded) and its fingerprint paths.
ScopeKey = tuple[str | None, tuple[str, ...]]

_VERSION = b"gitproof tree index v1"
_KEY_HEX = 64
_ID_WIDTH = 64  # commit ids padded to SHA-256 width, so that every record has the same length
_RECORD = _KEY_HEX + 1 + _ID_WIDTH + 1
_FIELD = re.compile(rb"^(tree|shard): ([^\n]*)$", re.MULTILINE)
_MAGIC_LINE = b"\n" + MAGIC.encode() + b"\n"
_SIG_BEGIN = ("\n" + SIG_BEGIN + "\n").encode()
_UNSIGNED = ("\n" + UNSIGNED_TRAILER).encode()
# Bounds on what one note can put in the index; a real note holds a few receipts, and the
# same note blob sits on one commit (or a few, where an older install copied it on rebase).
MAX_CLAIMS_PER_NOTE = 64
MAX_COMMITS_PER_NOTE = 16
_COMMIT_ID = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_RECORD_RE = re.compile(rb"[0-9a-f]{64} [0-9a-f]{40}(?:[0-9a-f]{24}| {24})\n")
_ABSENT = "absent"


def scope_key(shard: str | None, paths: Iterable[str], trees: Trees) -> str | None:
    """The index key of a code state for one scope; None when ``trees`` lacks one of the paths."""
    parts = [shard or ""]
    for path in sorted(paths):
        if path not in trees:
            return None
        parts.append(f"{path}={trees[path] or _ABSENT}")
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def claimed_trees(note: bytes, limit: int = MAX_CLAIMS_PER_NOTE) -> list[tuple[str | None, Trees]]:
    """The distinct (shard, trees) that the receipts in a note claim, read from their headers,
    at most ``limit`` of them.

    Lenient on purpose: the receipts are judged in full later, so anything that looks like a
    signed (or unsigned) receipt is worth listing, and anything else is skipped. The limit keeps
    a hostile note of many fake headers from filling the index: a real note holds a few receipts.
    """
    claims: list[tuple[str | None, Trees]] = []
    for chunk in (b"\n" + note).split(_MAGIC_LINE)[1:]:
        if _SIG_BEGIN not in chunk and _UNSIGNED not in chunk:
            continue  # not a receipt split_note would hand to the verifier
        claim = _claim(chunk)
        if claim not in claims:
            claims.append(claim)
            if len(claims) >= limit:
                break
    return claims


def _claim(chunk: bytes) -> tuple[str | None, Trees]:
    end = chunk.find(b"\n\n")
    shard: str | None = None
    trees: Trees = {}
    for name, raw in _FIELD.findall(chunk, 0, end if end >= 0 else len(chunk)):
        value = raw.decode("utf-8", "replace")
        if name == b"shard":
            shard = _unescaped(value)
        else:
            tree, _, path = value.partition(" ")
            trees[_unescaped(path)] = None if tree == _ABSENT else tree
    return shard, trees


def _unescaped(value: str) -> str:
    try:
        return unescape(value)
    except ReceiptFormatError:
        return value  # not canonical: the full parse will say so, if the receipt is ever judged


class TreeIndex:
    """Which commits' notes hold receipts for given trees, kept in step with one notes ref."""

    def __init__(self, notes: NotesStore, scopes: Sequence[ScopeKey]) -> None:
        self.notes = notes
        self.repo = notes.repo
        self.scopes = sorted(set(scopes), key=lambda s: (s[0] or "", s[1]))
        self.path = _index_path(self.repo, notes.ref, self.scopes)
        self._data: bytes | mmap.mmap | None = None
        self._tip: str | None = None
        self._offset = 0

    def holders(self, shard: str | None, paths: Iterable[str], trees: Trees) -> list[str]:
        """Commits whose notes hold a receipt claiming these trees for this scope, in id order."""
        key = scope_key(shard, paths, trees)
        if key is None:
            return []
        data = self._current()
        return _lookup(data, self._offset, key.encode("ascii"))

    # -- keeping the index current -------------------------------------------------------------

    def _current(self) -> bytes | mmap.mmap:
        tip = self.notes.tip()
        tip_id = str(tip.id) if tip else ""
        if self._data is not None and self._tip == tip_id:
            return self._data
        stored = self._read_file()
        if stored is not None and stored[0] == tip_id:
            self._use(stored[1], tip_id, stored[2])
            return cast(bytes, self._data)
        records = self._updated(stored, tip) if stored is not None else None
        if records is None:
            records = self._build(tip)
        self._save(tip_id, records)
        return cast(bytes, self._data)

    def _use(self, data: bytes | mmap.mmap, tip_id: str, offset: int) -> None:
        self._data, self._tip, self._offset = data, tip_id, offset

    def _records(self, notes: Iterable[tuple[str, str]]) -> list[bytes]:
        """The records of (commit id, note blob id) pairs: each blob read once, whatever the number
        of commits it sits on, and indexed for at most MAX_COMMITS_PER_NOTE of them."""
        keys: dict[str, list[bytes]] = {}
        uses: dict[str, int] = {}
        records: set[bytes] = set()
        for commit_id, blob_id in notes:
            uses[blob_id] = uses.get(blob_id, 0) + 1
            if uses[blob_id] > MAX_COMMITS_PER_NOTE:
                continue
            if blob_id not in keys:
                keys[blob_id] = self._keys_of(self._note(blob_id))
            padded = commit_id.encode("ascii").ljust(_ID_WIDTH)
            records.update(key + b" " + padded + b"\n" for key in keys[blob_id])
        return list(records)

    def _keys_of(self, note: bytes) -> list[bytes]:
        keys = []
        for shard, trees in claimed_trees(note):
            for scope_shard, paths in self.scopes:
                key = scope_key(shard, paths, trees) if scope_shard == shard else None
                if key is not None and key.encode("ascii") not in keys:
                    keys.append(key.encode("ascii"))
        return keys

    def _note(self, blob_id: str) -> bytes:
        odb = self.repo.odb  # straight from the object database: no Blob object, twice as fast
        try:
            kind, size = odb.read_header(blob_id)
            if kind != pygit2.enums.ObjectType.BLOB or size > MAX_NOTE_BYTES:
                return b""  # never read; the verifier reports such a note when it meets it
            return odb.read(blob_id)[1]
        except (KeyError, ValueError, pygit2.GitError):
            return b""  # not in this repository (a submodule entry, a partial clone)

    def _build(self, tip: pygit2.Commit | None) -> list[bytes]:
        """Every record, from the notes themselves."""
        if tip is None:
            return []
        notes = walk_notes_tree(tip.tree, "", "")
        return self._records((commit_id, blob_id) for commit_id, (blob_id, _) in notes.items())

    def _updated(self, stored: tuple[str, bytes | mmap.mmap, int], tip: pygit2.Commit | None) -> list[bytes] | None:
        """The stored records carried to the new tip by reading only the notes that changed;
        None when the stored tip's tree is no longer in the repository or a record is damaged."""
        old_tip, data, offset = stored
        old_tree = _tree_of(self.repo, old_tip)
        if old_tree is None and old_tip:
            return None
        new_tree = tip.tree if tip else None
        changed = _changed_notes(self.repo, old_tree, new_tree)
        kept = []
        for start in range(offset, len(data), _RECORD):
            record = bytes(data[start:start + _RECORD])
            if not _RECORD_RE.match(record):
                return None
            if record[_KEY_HEX + 1:-1].rstrip().decode("ascii") not in changed:
                kept.append(record)
        added = self._records((commit, blob) for commit, blob in changed.items() if blob is not None)
        return kept + added

    # -- the file --------------------------------------------------------------------------------

    def _read_file(self) -> tuple[str, bytes | mmap.mmap, int] | None:
        """(tip, data, where records start), or None when there is no usable file."""
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                data: bytes | mmap.mmap = (mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                                           if size else b"")
        except (OSError, ValueError):
            return None
        newline = data.find(b"\n")
        header = bytes(data[:newline]).split(b" ") if newline > 0 else []
        if len(header) != 5 or b" ".join(header[:4]) != _VERSION or (size - newline - 1) % _RECORD:
            return None
        tip = header[4].decode("ascii", "replace")
        return ("" if tip == "-" else tip), data, newline + 1

    def _save(self, tip_id: str, records: list[bytes]) -> None:
        records.sort()
        data = _VERSION + b" " + (tip_id or "-").encode("ascii") + b"\n" + b"".join(records)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, data)
        except OSError:
            pass  # a read-only git directory: the index lives in memory for this process
        self._use(data, tip_id, len(data) - len(records) * _RECORD)


def _index_path(repo: pygit2.Repository, ref: str, scopes: Sequence[ScopeKey]) -> Path:
    name = hashlib.sha256(repr((ref, list(scopes))).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return common_dir(repo) / "gpu-proof" / "tree-index" / name


def _lookup(data: bytes | mmap.mmap, offset: int, key: bytes) -> list[str]:
    count = (len(data) - offset) // _RECORD
    keys = _RecordKeys(data, offset)
    first = bisect.bisect_left(keys, key, 0, count)
    found = []
    for i in range(first, count):
        start = offset + i * _RECORD
        if data[start:start + _KEY_HEX] != key:
            break
        commit = bytes(data[start + _KEY_HEX + 1:start + _RECORD - 1]).rstrip().decode("ascii", "replace")
        if _COMMIT_ID.match(commit) and commit not in found:  # a damaged record names no commit
            found.append(commit)
    return found


class _RecordKeys(Sequence[bytes]):
    """The keys of the fixed-width records, as a sequence that bisect can search in place."""

    def __init__(self, data: bytes | mmap.mmap, offset: int) -> None:
        self.data, self.offset = data, offset

    def __len__(self) -> int:
        return (len(self.data) - self.offset) // _RECORD

    def __getitem__(self, i):  # type: ignore[no-untyped-def]  # bisect only asks for ints
        start = self.offset + i * _RECORD
        return bytes(self.data[start:start + _KEY_HEX])


def _tree_of(repo: pygit2.Repository, commit_id: str) -> pygit2.Tree | None:
    if not commit_id:
        return None
    try:
        return cast(pygit2.Commit, repo[commit_id]).tree
    except (KeyError, ValueError, pygit2.GitError, AttributeError):
        return None


def _changed_notes(repo: pygit2.Repository, old: pygit2.Tree | None,
                   new: pygit2.Tree | None) -> dict[str, str | None]:
    """commit id -> its note blob in ``new`` (None when removed), for every note that differs."""
    if old is None or new is None:
        tree = new or old
        notes = walk_notes_tree(tree, "", "") if tree is not None else {}
        return {commit: (blob if new is not None else None) for commit, (blob, _) in notes.items()}
    changed: dict[str, str | None] = {}
    for delta in old.diff_to_tree(new).deltas:
        for side, present in ((delta.old_file, False), (delta.new_file, True)):
            if not is_note_path(side.path) or side.mode not in NOTE_MODES:
                continue  # a gitlink or a link at a note's path is no note (walk_notes_tree agrees)
            commit = side.path.replace("/", "")
            if present and delta.status != pygit2.enums.DeltaStatus.DELETED:
                changed[commit] = str(side.id)
            else:
                changed.setdefault(commit, None)
    return changed
