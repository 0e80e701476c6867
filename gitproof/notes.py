"""Receipt storage in git: notes under refs/notes/gpu-proof, plus pending receipts.

Writes go through a compare-and-swap on the notes ref (libgit2 refuses to
create a commit on a ref whose tip is not the commit's first parent), so a
concurrent writer is never overwritten, and a crash before the ref update
leaves the ref exactly as it was: only unreferenced objects remain.
"""
from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from typing import cast

import pygit2

from gitproof.errors import GitproofError
from gitproof.receipt import MAX_NOTE_BYTES, NoteEntry, SignedReceipt, join_note, note_entries

NOTES_REF = "refs/notes/gpu-proof"
# A notes tree with more entries than this is split one fan-out level down (git's notes code
# keeps trees about this size), so adding a note rewrites a few small trees, not one huge one.
FANOUT_LIMIT = 256
# Tree entries that hold a note: blobs (walk_notes_tree agrees), never a submodule entry.
NOTE_MODES = (pygit2.enums.FileMode.BLOB, pygit2.enums.FileMode.BLOB_EXECUTABLE, pygit2.enums.FileMode.LINK)
_HEX_NAME = re.compile(r"^[0-9a-f]+$")
_MAX_RETRIES = 50
# libgit2's words for "another writer holds the ref lock".
_LOST_RACE = ("failed to lock", "locked", "already exists")


class NotesError(GitproofError):
    """The notes ref cannot be read or written."""


def _signature(repo: pygit2.Repository) -> pygit2.Signature:
    try:
        return repo.default_signature
    except (KeyError, pygit2.GitError):
        return pygit2.Signature("gitproof", "gitproof@localhost")


class NotesStore:
    """Read and append receipts on commits, never rewriting what is there."""

    def __init__(self, repo: pygit2.Repository, ref: str = NOTES_REF) -> None:
        self.repo = repo
        self.ref = ref
        self._index: dict[str, tuple[str, str]] | None = None
        self._index_tip: str | None = None
        self._parsed: dict[str, list[NoteEntry]] = {}
        self._tip_tree: tuple[pygit2.Oid, pygit2.Tree] | None = None

    # -- reading -------------------------------------------------------------

    def tip(self) -> pygit2.Commit | None:
        try:
            return self.repo.references[self.ref].peel(pygit2.Commit)
        except (KeyError, pygit2.GitError, ValueError):
            return None

    def index(self) -> dict[str, tuple[str, str]]:
        """commit id -> (blob id, path in notes tree), fanout included."""
        tip = self.tip()
        tip_id = str(tip.id) if tip else None
        if self._index is None or tip_id != self._index_tip:
            self._index = walk_notes_tree(tip.tree, "", "") if tip else {}
            self._index_tip = tip_id
        return self._index

    def annotated_commits(self) -> set[str]:
        return set(self.index())

    def blob_id(self, commit_id: str) -> str | None:
        """The id of the commit's note blob: a lookup at each place git may keep it, no walk."""
        tip = self.tip()
        found = note_location(self._tree_of(tip), commit_id) if tip is not None else None
        return found[0] if found else None

    def _tree_of(self, tip: pygit2.Commit) -> pygit2.Tree:
        """The tip's root tree, kept while the tip stays: each ``.tree`` parses it again,
        which for a flat notes tree of 10,000 notes costs milliseconds."""
        if self._tip_tree is None or self._tip_tree[0] != tip.id:
            self._tip_tree = (tip.id, tip.tree)
        return self._tip_tree[1]

    def note_bytes(self, commit_id: str) -> bytes | None:
        """The note's bytes exactly as stored."""
        blob_id = self.blob_id(commit_id)
        return None if blob_id is None else _blob(self.repo, blob_id).data

    def entries(self, commit_id: str) -> list[NoteEntry]:
        """Parsed receipts on a commit; parsed once per note blob."""
        blob_id = self.blob_id(commit_id)
        if blob_id is None:
            return []
        if blob_id not in self._parsed:
            size = self.blob_size(blob_id)
            self._parsed[blob_id] = (
                [NoteEntry(None, f"the note is {size} bytes, over the {MAX_NOTE_BYTES}-byte limit; not read",
                           0, "note-too-large")]
                if size > MAX_NOTE_BYTES else note_entries(self.repo.odb.read(blob_id)[1]))  # half a Blob's cost
        return self._parsed[blob_id]

    def blob_size(self, blob_id: str) -> int:
        """The note's size from the object header, without reading the note."""
        return self.repo.odb.read_header(blob_id)[1]

    # -- writing -------------------------------------------------------------

    def add(self, commit_id: str, signed: SignedReceipt) -> bool:
        """Append a receipt to the commit's note. False when it was already there."""
        for _ in range(_MAX_RETRIES):
            tip = self.tip()
            existing = _existing_note(tip, commit_id)
            data = existing[0] if existing else b""
            if len(data) <= MAX_NOTE_BYTES and any(
                    e.signed and e.signed.identity == signed.identity for e in note_entries(data)):
                return False
            path = existing[1] if existing else commit_id
            new_tree = tree_with_note(self.repo, tip.tree if tip else None, path, join_note(data, signed))
            if self.commit_tree(tip, new_tree, f"gpu-proof: receipt for {commit_id}"):
                return True
        raise NotesError(f"{self.ref} kept changing under us; try again")

    def commit_tree(self, tip: pygit2.Commit | None, tree: pygit2.Oid, message: str,
                other_parents: tuple[pygit2.Oid, ...] = ()) -> bool:
        """Record ``tree`` as a notes commit on top of ``tip``, if the ref is still there."""
        sig = _signature(self.repo)
        expected = tip.id if tip else None
        parents = ([expected] if expected else []) + list(other_parents)
        new = self.repo.create_commit(None, sig, sig, message + "\n", tree, parents)
        return self.compare_and_swap(expected, new, message)

    def compare_and_swap(self, expected: pygit2.Oid | None, new: pygit2.Oid, message: str) -> bool:
        """Point the ref at ``new`` only if it still points at ``expected``.

        The check and the update happen under git's own ref lock
        (``<ref>.lock``), so no concurrent writer, gitproof or git, is lost.
        """
        try:
            with self.repo.transaction() as txn:
                txn.lock_ref(self.ref)
                if self._current_target() != expected:
                    raise _LostRace
                txn.set_target(self.ref, new, message=message)
        except _LostRace:
            return False
        except pygit2.GitError as exc:
            if any(sign in str(exc) for sign in _LOST_RACE):
                time.sleep(random.uniform(0.001, 0.02))  # the lock is held by another writer
                return False
            raise NotesError(f"cannot update {self.ref}: {exc}") from exc
        self._index = None
        return True

    def _current_target(self) -> pygit2.Oid | None:
        ref = self.repo.references.get(self.ref)
        return cast(pygit2.Oid, ref.target) if ref is not None else None  # a direct ref


def note_location(tree: pygit2.Tree, commit_id: str) -> tuple[str, str] | None:
    """(blob id, path) of the commit's note in a notes tree, looked for as git does: flat here,
    or down one two-hex-digit folder at a time. A handful of lookups, however many notes."""
    if not _HEX_NAME.match(commit_id):
        return None
    node, path = tree, ""
    for start in range(0, len(commit_id) - 2, 2):
        rest = commit_id[start:]
        if rest in node:
            found = node[rest]
            return (str(found.id), path + rest) if found.filemode in NOTE_MODES else None
        folder = rest[:2]
        if folder not in node or node[folder].type_str != "tree":
            return None
        node, path = cast(pygit2.Tree, node[folder]), f"{path}{folder}/"
    return None


def _blob(repo: pygit2.Repository, blob_id: str) -> pygit2.Blob:
    return cast(pygit2.Blob, repo[blob_id])  # the index lists blobs only


class _LostRace(Exception):
    """Another writer moved the notes ref between our read and our update."""


def _existing_note(tip: pygit2.Commit | None, commit_id: str) -> tuple[bytes, str] | None:
    """The commit's note blob, raw, and where it sits in the notes tree."""
    if tip is None:
        return None
    tree = tip.tree
    for path in _fanout_paths(commit_id):
        try:
            entry = tree[path]
        except KeyError:
            continue
        if isinstance(entry, pygit2.Blob):
            return entry.data, path
    return None


def _fanout_paths(commit_id: str, max_depth: int = 4) -> list[str]:
    """Where git may keep a note: flat, or split into 2-hex-digit directories."""
    return [
        "/".join([commit_id[2 * i:2 * i + 2] for i in range(depth)] + [commit_id[2 * depth:]])
        for depth in range(max_depth + 1)
    ]


def walk_notes_tree(tree: pygit2.Tree, prefix: str, path: str) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for entry in tree:
        name = cast(str, entry.name)  # a tree entry always has one
        if not _HEX_NAME.match(name):
            continue
        full = prefix + name
        entry_path = f"{path}{name}"
        if entry.type_str == "tree" and len(name) == 2 and len(full) < 40:
            found.update(walk_notes_tree(cast(pygit2.Tree, entry), full, entry_path + "/"))
        elif entry.type_str == "blob" and len(full) in (40, 64):
            found[full] = (str(entry.id), entry_path)
    return found


def is_note_path(path: str) -> bool:
    """``ab/cdef...`` or a flat id: hex fan-out folders of two digits, then the rest of the id."""
    *folders, name = path.split("/")
    return (all(len(f) == 2 and _HEX_NAME.match(f) for f in folders) and bool(_HEX_NAME.match(name))
            and len(name) + 2 * len(folders) in (40, 64))


def is_notes_tree(tree: pygit2.Tree, depth: int = 0, prefix: str = "", seen: set[str] | None = None) -> bool:
    """Only notes: blobs named by a full object id, under two-hex-digit fan-out folders,
    and one note per commit id (git would concatenate two; a reader that takes one would not)."""
    seen = set() if seen is None else seen
    for entry in tree:
        name = cast(str, entry.name)  # a tree entry always has one
        if not _HEX_NAME.match(name):
            return False
        if entry.type_str == "tree":
            if len(name) != 2 or depth >= 30 or not is_notes_tree(cast(pygit2.Tree, entry), depth + 1,
                                                                   prefix + name, seen):
                return False
        elif entry.type_str != "blob" or len(name) + 2 * depth not in (40, 64) or prefix + name in seen:
            return False
        else:
            seen.add(prefix + name)
    return True


def tree_with_note(repo: pygit2.Repository, root: pygit2.Tree | None, path: str,
                   data: bytes) -> pygit2.Oid:
    """``root`` with the note at ``path`` (a commit id, flat or fanned out) set to ``data``."""
    return tree_with_notes(repo, root, {path.replace("/", ""): data})


def tree_with_notes(repo: pygit2.Repository, root: pygit2.Tree | None,
                    notes: Mapping[str, bytes]) -> pygit2.Oid:
    """``root`` with each commit's note set, in one pass: O(k log n) tree writes for k notes.

    A note that exists stays where it is; a new one goes where git would look first, below the
    fan-out folders that exist. A tree that grows past FANOUT_LIMIT entries is split into
    two-hex-digit folders, as git's own notes code does, so a flat notes tree written by an
    older gitproof converts on its next write and then stays cheap to change.
    """
    blobs = {commit_id: _blob_of(repo, data) for commit_id, data in notes.items()}
    return _put(repo, root, blobs)


def _blob_of(repo: pygit2.Repository, data: bytes) -> pygit2.Oid:
    """The blob holding ``data``, written only when the repository lacks it (a merge mostly
    stores notes that arrived whole: hashing is a quarter of the cost of writing)."""
    known = pygit2.hash(data)
    return known if known in repo.odb else repo.create_blob(data)


def _put(repo: pygit2.Repository, tree: pygit2.Tree | None, blobs: dict[str, pygit2.Oid]) -> pygit2.Oid:
    """Insert notes named by the rest of their ids into one (sub)tree of the notes tree."""
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    deeper: dict[str, dict[str, pygit2.Oid]] = {}
    for rest, blob in blobs.items():
        folder = rest[:2]
        if tree is not None and rest not in tree and len(rest) > 2 and _is_tree_entry(tree, folder):
            deeper.setdefault(folder, {})[rest[2:]] = blob
        else:
            builder.insert(rest, blob, pygit2.enums.FileMode.BLOB)
    for folder, items in deeper.items():
        builder.insert(folder, _put(repo, cast(pygit2.Tree, cast(pygit2.Tree, tree)[folder]), items),
                       pygit2.enums.FileMode.TREE)
    return _split_if_full(repo, builder.write())


def _is_tree_entry(tree: pygit2.Tree, name: str) -> bool:
    return name in tree and tree[name].type_str == "tree"


def _split_if_full(repo: pygit2.Repository, tree_id: pygit2.Oid) -> pygit2.Oid:
    """Move the notes of a tree with more than FANOUT_LIMIT entries one fan-out level down."""
    tree = cast(pygit2.Tree, repo[tree_id])
    if len(tree) <= FANOUT_LIMIT:
        return tree_id
    flat = {cast(str, e.name): e.id for e in tree
            if e.type_str == "blob" and len(cast(str, e.name)) > 2 and _HEX_NAME.match(cast(str, e.name))}
    if not flat:
        return tree_id
    builder = repo.TreeBuilder(tree)
    groups: dict[str, dict[str, pygit2.Oid]] = {}
    for name, blob in flat.items():
        builder.remove(name)
        groups.setdefault(name[:2], {})[name[2:]] = blob
    for folder, items in groups.items():
        sub = cast(pygit2.Tree, tree[folder]) if _is_tree_entry(tree, folder) else None
        builder.insert(folder, _put(repo, sub, items), pygit2.enums.FileMode.TREE)
    return builder.write()
