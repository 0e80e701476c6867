"""Receipts between clones: fetch into a tracking ref, merge as a union, push without force.

Remote receipts arrive in ``refs/remote-notes/<remote>/gpu-proof`` (outside
``refs/notes/``, so a forced fetch there can never overwrite local
receipts) and are merged into ``refs/notes/gpu-proof`` as the union of the
receipts on each commit. The notes ref is pushed as a fast-forward only; a
rejected push means the remote moved, so we fetch, merge and try again.
The real ``git`` program does the network transport, nothing else.

The DSSE envelopes of ``run --attest`` (refs/notes/gpu-proof-attestations, one per
line) travel the same way, in the same fetch and push, to
``refs/remote-notes/<remote>/gpu-proof-attestations``, and merge as the union of
envelope lines per commit. A remote without them is fine; a remote whose
attestations cannot be merged is reported, and never stops the receipts: a push
leaves the attestations ref out, with a warning, when the remote refuses it or its
copy there cannot be merged with ours, and the receipts (and branches) still go.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import pygit2

from gitproof.attestation_notes import ATTESTATIONS_REF, MAX_ATTESTATION_NOTE_BYTES, envelope_lines, join_lines
from gitproof.errors import GitproofError
from gitproof.notes import (NOTE_MODES, NOTES_REF, NotesStore, is_note_path, is_notes_tree, note_location,
                            tree_with_notes, walk_notes_tree)
from gitproof.receipt import MAGIC, SIG_BEGIN, SIG_END, UNSIGNED_TRAILER, join_raw, raw_entries

TRACKING_PREFIX = "refs/remote-notes/"
IN_SYNC_ENV = "GITPROOF_SYNC"  # set while gitproof itself pushes, so hooks stand aside
_PUSH_ATTEMPTS = 8
_MISSING_REMOTE_REF = ("couldn't find remote ref", "could not find remote ref")
SYNCED_REFS = (NOTES_REF, ATTESTATIONS_REF)  # the receipts first: they are what matters


class SyncError(GitproofError):
    """Talking to the remote failed; the message carries git's own words."""


def tracking_ref(remote: str, ref: str = NOTES_REF) -> str:
    """Where a remote's ``ref`` (its receipts by default) is fetched to; a remote given as a URL
    gets a hashed name."""
    leaf = ref.rsplit("/", 1)[-1]
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", remote) and ".." not in remote:
        return f"{TRACKING_PREFIX}{remote}/{leaf}"
    return f"{TRACKING_PREFIX}url-{hashlib.sha256(remote.encode()).hexdigest()[:16]}/{leaf}"


def git(repo: pygit2.Repository, *args: str, hooks_stand_aside: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real git on this repository, for transport only."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    if hooks_stand_aside:
        env[IN_SYNC_ENV] = "1"
    return subprocess.run(["git", "--git-dir", repo.path, *args], env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL)


@dataclass
class MergeResult:
    source: str
    kind: str  # "none", "fast-forward", "merge", "up-to-date"
    receipts_added: int = 0  # envelopes, in the merge of attestations
    commits_touched: int = 0
    bad_entries: list[str] = field(default_factory=list)
    attestations: MergeResult | None = None  # the envelopes' merge, when the remote has any
    unit: str = "receipt"

    def to_json(self) -> dict[str, Any]:
        data = {"result": self.kind, "receipts_added": self.receipts_added,
                "commits_touched": self.commits_touched, "bad_entries": self.bad_entries}
        if self.attestations is not None:
            data["attestations"] = self.attestations.to_json()
        return data

    def describe(self) -> str:
        text = self._describe()
        if self.attestations is not None and self.attestations.kind not in ("none", "up-to-date"):
            text += f"; attestations: {self.attestations._describe()}"
        return text

    def _describe(self) -> str:
        if self.kind == "none":
            return f"no receipts at {self.source}"
        if self.kind == "up-to-date":
            return "receipts already up to date"
        if self.kind == "refused":
            return f"not merged: {'; '.join(self.bad_entries)}"
        text = (f"fast-forwarded to {self.source}" if self.kind == "fast-forward" else
                f"merged {self.receipts_added} {self.unit}(s) on {self.commits_touched} commit(s) from {self.source}")
        if self.bad_entries:
            text += f"; ignored {len(self.bad_entries)} unreadable entr{'y' if len(self.bad_entries) == 1 else 'ies'}"
        return text


def check_remote_name(remote: str) -> None:
    """A remote that starts with "-" would reach git as an option (--upload-pack=... runs a command)."""
    if not remote or remote.startswith("-"):
        raise SyncError(f"refusing remote {remote!r}: a remote name or URL cannot start with '-'")


def fetch_notes(repo: pygit2.Repository, remote: str) -> bool:
    """Copy the remote's notes refs into our tracking refs. False when it has no receipts."""
    return NOTES_REF in fetch_refs(repo, remote)


def fetch_refs(repo: pygit2.Repository, remote: str, refs: tuple[str, ...] = SYNCED_REFS) -> set[str]:
    """Copy the remote's ``refs`` into our tracking refs, in one fetch; the ones it has.

    Only those refs are fetched, and no tags: a tag that points into the notes
    history would otherwise follow it in, under a name that could pass for a
    branch. git refuses the whole fetch when a ref is missing, so each ref the
    remote lacks costs one more try without it.
    """
    check_remote_name(remote)
    wanted = list(refs)
    while wanted:
        result = git(repo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", remote,
                     *[f"+{ref}:{tracking_ref(remote, ref)}" for ref in wanted])
        if result.returncode == 0:
            return set(wanted)
        missing = _missing_refs(result.stderr, wanted)
        if not missing:
            raise SyncError(f"cannot fetch receipts from {remote}: {result.stderr.strip()}")
        if NOTES_REF in missing:
            return set()  # no receipts: nothing else of ours is worth a fetch
        wanted = [ref for ref in wanted if ref not in missing]
    return set()


def _missing_refs(stderr: str, wanted: list[str]) -> list[str]:
    """The refs git says the remote lacks; the least important one when it does not say which."""
    if not any(sign in stderr for sign in _MISSING_REMOTE_REF):
        return []
    lines = [line.rstrip().rstrip("'\"") for line in stderr.splitlines()
             if any(sign in line for sign in _MISSING_REMOTE_REF)]
    named = [ref for ref in wanted if any(line.endswith(" " + ref) for line in lines)]
    return named or wanted[-1:]


def fetch(repo: pygit2.Repository, remote: str) -> MergeResult:
    """``git gpu-proof fetch``: bring the remote's receipts (and attestations) in, losing none of ours."""
    present = fetch_refs(repo, remote)
    result = merge(repo, tracking_ref(remote)) if NOTES_REF in present else MergeResult(remote, "none")
    if ATTESTATIONS_REF in present:
        result.attestations = _merge_attestations(repo, tracking_ref(remote, ATTESTATIONS_REF))
    return result


def _merge_attestations(repo: pygit2.Repository, source_ref: str) -> MergeResult:
    """Attestations that cannot be merged are reported, and leave everything local as it is."""
    try:
        return merge(repo, source_ref, NotesStore(repo, ATTESTATIONS_REF))
    except SyncError as exc:
        return MergeResult(source_ref, "refused", bad_entries=[str(exc)], unit="envelope")


def merge(repo: pygit2.Repository, source_ref: str, store: NotesStore | None = None) -> MergeResult:
    """Merge the notes at ``source_ref`` into ``store``'s (the receipts by default): union per
    commit, nothing dropped."""
    store = store or NotesStore(repo)
    layout = _layout(store.ref)
    source = repo.references.get(source_ref)
    if source is None:
        return MergeResult(source_ref, "none", unit=layout.unit)
    untouched = f"nothing was merged, local {layout.unit}s are untouched"
    try:
        theirs = source.peel(pygit2.Commit)
    except (ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        raise SyncError(f"{source_ref} does not point at a notes commit (it names a "
                        f"{repo[source.target].type_str}); {untouched}") from None
    while True:
        ours = store.tip()
        if ours is not None and (ours.id == theirs.id or repo.descendant_of(ours.id, theirs.id)):
            return MergeResult(source_ref, "up-to-date", unit=layout.unit)
        _check_notes_history(repo, theirs, ours, source_ref, untouched)
        # A fast-forward only when it loses nothing: a remote that removed receipts (plain
        # `git notes remove` and a push) must not take them from us; the merge restores them.
        if ours is None or (repo.descendant_of(theirs.id, ours.id) and _holds_all(repo, theirs, ours, layout)):
            if store.compare_and_swap(ours.id if ours else None, theirs.id,
                                      f"gpu-proof: fast-forward to {source_ref}"):
                return MergeResult(source_ref, "fast-forward", unit=layout.unit)
            continue
        result = _merge_commit(repo, store, ours, theirs, source_ref, layout)
        if result is not None:
            return result


def _merge_commit(repo: pygit2.Repository, store: NotesStore, ours: pygit2.Commit,
                  theirs: pygit2.Commit, source_ref: str, layout: _Layout) -> MergeResult | None:
    result = MergeResult(source_ref, "merge", unit=layout.unit)
    updates: dict[str, bytes] = {}
    for commit_id, blob_id in _their_changes(ours.tree, theirs.tree).items():
        current = note_location(ours.tree, commit_id)
        if current is not None and current[0] == blob_id:
            continue
        data, added = _union(repo, current, blob_id, commit_id, result, layout)
        if added:
            updates[commit_id] = data
            result.receipts_added += added
            result.commits_touched += 1
    tree = tree_with_notes(repo, ours.tree, updates)  # one pass: each touched subtree written once
    message = f"gpu-proof: merge {layout.unit}s from {source_ref}"
    if store.commit_tree(ours, tree, message, (theirs.id,)):
        return result
    return None  # our ref moved meanwhile: start again from the new tip


def _their_changes(ours: pygit2.Tree, theirs: pygit2.Tree) -> dict[str, str]:
    """commit id -> their note blob, for each of their notes that is not at the same path in ours
    (new, changed, or stored elsewhere): a tree diff, which skips every subtree both share."""
    changed: dict[str, str] = {}
    for delta in ours.diff_to_tree(theirs).deltas:
        theirs_side = delta.new_file
        if (delta.status != pygit2.enums.DeltaStatus.DELETED and is_note_path(theirs_side.path)
                and theirs_side.mode in NOTE_MODES):
            changed[theirs_side.path.replace("/", "")] = str(theirs_side.id)
    return changed


def _union(repo: pygit2.Repository, current: tuple[str, str] | None, their_blob: str, commit_id: str,
           result: MergeResult, layout: _Layout | None = None) -> tuple[bytes, int]:
    """Our note (``current``: its blob id and path, or None) united with their blob's; how many
    entries were added. Receipts unless ``layout`` says otherwise."""
    ours = _blob_data(repo, current[0]) if current else b""
    return (layout or _LAYOUTS[NOTES_REF]).union(ours, _blob_data(repo, their_blob), commit_id, result)


class _Layout(Protocol):
    """How the notes of one notes ref split into entries, and how two notes unite."""

    unit: str

    def union(self, ours: bytes, theirs: bytes, commit_id: str, result: MergeResult) -> tuple[bytes, int]:
        """Our note's bytes, unchanged, then every entry of theirs we lack; how many were added."""
        ...

    def lost(self, note: bytes, kept: bytes) -> int:
        """How many entries of ``note`` ``kept`` lacks."""
        ...


class _Receipts:
    """refs/notes/gpu-proof: receipts one after another (gitproof.receipt.note)."""

    unit = "receipt"

    def union(self, ours: bytes, theirs: bytes, commit_id: str, result: MergeResult) -> tuple[bytes, int]:
        """Entries this version cannot read (a newer format's receipts) are kept too: they
        cannot validate anything here, but they are not ours to delete."""
        held = _Held(ours)
        additions = []
        for entry in raw_entries(theirs):
            if held.holds(entry):
                continue
            held.add(entry)
            additions.append(entry)
            if not _is_receipt(entry):
                result.bad_entries.append(f"{commit_id[:10]}: kept an entry this version cannot read")
        return join_raw(ours, *additions), len(additions)  # one buffer: many entries stay linear

    def lost(self, note: bytes, kept: bytes) -> int:
        held = _Held(kept)
        return sum(1 for entry in raw_entries(note) if not held.holds(entry))


class _Envelopes:
    """refs/notes/gpu-proof-attestations: one DSSE envelope per line (gitproof.attestation_notes).
    A line is held only when the same bytes are a line here; an oversized note is one entry."""

    unit = "envelope"

    def union(self, ours: bytes, theirs: bytes, commit_id: str, result: MergeResult) -> tuple[bytes, int]:
        additions = self._missing(theirs, ours)
        return join_lines(ours, *additions), len(additions)

    def lost(self, note: bytes, kept: bytes) -> int:
        return len(self._missing(note, kept))

    @staticmethod
    def _missing(note: bytes, kept: bytes) -> list[bytes]:
        held = set(_Envelopes._lines(kept))
        return [line for line in dict.fromkeys(_Envelopes._lines(note)) if line not in held]

    @staticmethod
    def _lines(note: bytes) -> list[bytes]:
        return [note] if len(note) > MAX_ATTESTATION_NOTE_BYTES else envelope_lines(note)


_LAYOUTS: dict[str, _Layout] = {NOTES_REF: _Receipts(), ATTESTATIONS_REF: _Envelopes()}


def _layout(ref: str) -> _Layout:
    return _LAYOUTS.get(ref, _LAYOUTS[NOTES_REF])


def _blob_data(repo: pygit2.Repository, blob_id: str) -> bytes:
    return cast(pygit2.Blob, repo[blob_id]).data  # notes trees are checked to hold blobs only


def _changes_only_notes(repo: pygit2.Repository, commit: pygit2.Commit) -> bool:
    deltas = repo.diff(commit.parents[0].tree, commit.tree).deltas  # type: ignore[call-overload]  # stubs lack trees
    return all(is_note_path(delta.new_file.path) and is_note_path(delta.old_file.path) for delta in deltas)


_CONTAINMENT_BYTES = 64 * 1024 * 1024  # bytes searched per note for text that is not a receipt


def _is_receipt(entry: bytes) -> bool:
    """A complete receipt: its signature block (or unsigned trailer) ends it. A block cut short
    runs on over whatever follows it, so such an entry is matched as plain text is."""
    end = entry.rstrip(b"\n").rpartition(b"\n")[2]
    if not entry.startswith(MAGIC.encode() + b"\n"):
        return False
    if end == UNSIGNED_TRAILER.encode():
        return True
    # The block must open on a line of its own too: glued to a test line, it opens nothing.
    return end == SIG_END.encode() and b"\n" + SIG_BEGIN.encode() + b"\n" in entry


class _Held:
    """The entries of one note, for asking whether another entry is among them.

    A receipt is held only when exactly the same bytes are an entry here: a receipt
    buried inside other text ("x" + receipt) no longer reads as one. Text that is not
    a receipt has no boundaries of its own (pieces of it side by side split as one), so
    for it, appearing anywhere in the note also counts, within a bounded number of bytes
    searched; past that, an unmatched piece is kept again rather than risk losing it.
    """

    def __init__(self, note: bytes) -> None:
        self.note = note
        self.entries = {entry.strip() for entry in raw_entries(note)}
        self.budget = _CONTAINMENT_BYTES

    def holds(self, entry: bytes) -> bool:
        key = entry.strip()
        if key in self.entries:
            return True
        if _is_receipt(entry) or self.budget < len(self.note):
            return False
        self.budget -= len(self.note)
        return key in self.note

    def add(self, entry: bytes) -> None:
        self.entries.add(entry.strip())


def _notes(repo: pygit2.Repository, tree: pygit2.Tree) -> dict[str, bytes]:
    """Every note in a notes tree, by commit id."""
    return {commit: _blob_data(repo, blob) for commit, (blob, _) in walk_notes_tree(tree, "", "").items()}


def missing_entries(repo: pygit2.Repository, kept: pygit2.Commit, source: pygit2.Commit,
                    ref: str = NOTES_REF) -> dict[str, int]:
    """How many entries of ``source``'s notes each commit would lose if ``kept`` replaced them
    (notes of ``ref``: receipts by default).

    Cheap when the tree diff from ``source`` to ``kept`` only adds notes, the usual case.
    """
    return _missing(repo, kept, source, _layout(ref))


def _missing(repo: pygit2.Repository, kept: pygit2.Commit, source: pygit2.Commit, layout: _Layout) -> dict[str, int]:
    if not any(delta.status_char() in ("D", "M", "R", "T")
               for delta in repo.diff(source.tree, kept.tree).deltas):  # type: ignore[call-overload]
        return {}
    had, has = _notes(repo, source.tree), _notes(repo, kept.tree)
    lost = {commit: layout.lost(note, has.get(commit, b"")) for commit, note in had.items()}
    return {commit: n for commit, n in lost.items() if n}


def _holds_all(repo: pygit2.Repository, theirs: pygit2.Commit, ours: pygit2.Commit, layout: _Layout) -> bool:
    return not _missing(repo, theirs, ours, layout)


_HISTORY_CHECKED = 200  # newest commits taken in whose changes are checked, besides the tip


def _check_notes_history(repo: pygit2.Repository, theirs: pygit2.Commit, ours: pygit2.Commit | None,
                         source_ref: str, untouched: str) -> None:
    """What we would take in must be a notes history: a tree of notes and nothing else.

    The tip's tree, the only one a merge reads, is checked whole, one note per commit id
    (a second note for the same commit, flat beside fan-out, would hide the first from
    every reader that takes one). The newest new commits are checked by what they changed
    against their first parent; a first fetch of a long history stops there, so its cost
    does not grow with the number of receipts.
    """
    if not is_notes_tree(theirs.tree):
        raise SyncError(f"{source_ref} is not a notes history: its tip holds files that are not notes, "
                        f"or two notes for one commit; {untouched}")
    walker = repo.walk(theirs.id)
    if ours is not None:
        walker.hide(ours.id)
    for checked, commit in enumerate(walker):
        if checked >= _HISTORY_CHECKED:
            return
        if commit.parents and not _changes_only_notes(repo, commit):
            raise SyncError(f"{source_ref} is not a notes history: commit {str(commit.id)[:10]} holds "
                            f"files that are not notes; {untouched}")


@dataclass
class PushResult:
    remote: str
    pushed: bool
    attempts: int
    merges: list[MergeResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. the attestations left out, and what to do
    output: str = ""  # git's own output, when a push of branches succeeded

    def describe(self) -> str:
        if not self.pushed:
            return "no local receipts to push"
        return f"receipts pushed to {self.remote}"


def local_notes_refspecs(repo: pygit2.Repository) -> list[str]:
    """``ref:ref`` for each notes ref gitproof syncs that exists here."""
    return [f"{ref}:{ref}" for ref in SYNCED_REFS if NotesStore(repo, ref).tip() is not None]


_STALE_SIGNS = ("non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref", "failed to lock")
_REJECTION = re.compile(r"^\s*!\s+\[(?:remote )?rejected\]\s+\S+\s+->\s+(\S+)\s+\((.*)\)\s*$")


def _rejections(stderr: str) -> dict[str, str]:
    """The refs a push was refused for, each with git's reason; refs held back only because an
    atomic push failed as a whole are not among them."""
    found = {}
    for line in stderr.splitlines():
        match = _REJECTION.match(line)
        if match and match.group(2) != "atomic push failed":
            found[match.group(1)] = match.group(2)
    return found


def _is_stale(reason: str) -> bool:
    return any(sign in reason for sign in _STALE_SIGNS)


class _NotesPush:
    """The notes refs that go with every push to one remote, and what to do when one is refused.

    The receipts always go. The attestations ref goes best-effort: when the remote refuses it
    for a reason a fetch cannot mend (a server hook), or its copy there cannot be merged with
    ours (not a notes history, say a code commit), it is left out of every later try, and
    ``warnings`` says why and what to do, once.
    """

    def __init__(self, repo: pygit2.Repository, remote: str) -> None:
        self.repo, self.remote = repo, remote
        self.left_out: str | None = None

    @property
    def warnings(self) -> list[str]:
        return [self.left_out] if self.left_out else []

    def refspecs(self) -> list[str]:
        if NotesStore(self.repo).tip() is None:
            return []
        skipped = f"{ATTESTATIONS_REF}:" if self.left_out else None
        return [spec for spec in local_notes_refspecs(self.repo) if not (skipped and spec.startswith(skipped))]

    def recover(self, stderr: str, failure: str) -> MergeResult | None:
        """After a refused push: leave the attestations out, or fetch and merge what moved on the
        remote (the merge returned), so the next try can succeed; SyncError (``failure`` and git's
        words) when neither can help."""
        rejected = _rejections(stderr)
        reason = None if self.left_out else rejected.get(ATTESTATIONS_REF)
        if reason is not None and not _is_stale(reason):
            self._leave_out(f"{self.remote} refused it ({reason})", fix=f"ask whoever runs {self.remote} to "
                            f"accept pushes to {ATTESTATIONS_REF}")
            return None
        if not (_only_notes_stale(rejected) if rejected else _rejected_as_stale(stderr)):
            raise SyncError(failure + stderr.strip())
        merged = fetch(self.repo, self.remote)
        if reason is not None:
            self._check_merge(merged.attestations, reason)
        return merged

    def _check_merge(self, merged: MergeResult | None, reason: str) -> None:
        """The attestations were refused as stale and fetched again: leave them out when their
        merge was refused, or brought in nothing that could make the remote take ours."""
        if merged is not None and merged.kind == "refused":
            why = "; ".join(merged.bad_entries)
            self._leave_out(f"its copy there cannot be merged with ours: {why}", fix=self._replace_hint())
        elif merged is None or merged.kind in ("none", "up-to-date"):
            self._leave_out(f"{self.remote} refused it ({reason}) though ours holds all its envelopes",
                            fix=self._replace_hint())

    def _replace_hint(self) -> str:
        return (f"run `git gpu-proof fetch {self.remote}` to see what is wrong with {self.remote}'s copy; if it "
                f"holds no envelopes worth keeping, replace it with this clone's: "
                f"`git push --force {self.remote} {ATTESTATIONS_REF}`")

    def _leave_out(self, why: str, fix: str) -> None:
        self.left_out = (f"{ATTESTATIONS_REF} was left out of the push to {self.remote}: {why}. The receipts "
                         f"were pushed without it, and other clones cannot check this clone's attestations "
                         f"until it goes too. To fix: {fix}, then push again")


def push_notes(repo: pygit2.Repository, remote: str, attempts: int = _PUSH_ATTEMPTS) -> PushResult:
    """Fast-forward the remote's notes refs (receipts, attestations) to ours; on rejection
    fetch, merge, retry. The attestations are left out, with a warning in the result, when
    they are what the remote refuses (see :class:`_NotesPush`)."""
    check_remote_name(remote)
    result = PushResult(remote, False, 0)
    if NotesStore(repo).tip() is None:
        return result
    notes = _NotesPush(repo, remote)
    for attempt in range(1, attempts + 1):
        result.attempts = attempt
        pushed = git(repo, "push", "--quiet", "--no-verify", "--", remote, *notes.refspecs())
        if pushed.returncode == 0:
            result.pushed, result.warnings = True, notes.warnings
            return result
        merged = notes.recover(pushed.stderr, f"cannot push receipts to {remote}: ")
        if merged is not None:
            result.merges.append(merged)
    raise SyncError(f"the receipts on {remote} kept changing; {attempts} attempts failed, try again")


def _rejected_as_stale(stderr: str) -> bool:
    return any(sign in stderr for sign in ("non-fast-forward", "fetch first", "[rejected]",
                                           "cannot lock ref", "failed to update ref"))


def push_with_receipts(repo: pygit2.Repository, remote: str, refspecs: list[str],
                       attempts: int = _PUSH_ATTEMPTS) -> PushResult:
    """Push ``refspecs`` and the notes refs in one atomic push; ``output`` is git's on success.

    The pre-push hook runs as usual and sees the notes ref in the push, so it
    checks the branches without pushing receipts a second time. Servers
    without atomic push get the receipts first, then the branches. The
    attestations are left out, with a warning, when they are what the remote
    refuses (see :class:`_NotesPush`).
    """
    check_remote_name(remote)
    if any(spec.startswith("-") for spec in refspecs):
        raise SyncError(f"refusing refspecs {refspecs!r}: a refspec cannot start with '-'")
    atomic, notes, pushed = True, _NotesPush(repo, remote), PushResult(remote, False, 0)
    for attempt in range(1, attempts + 1):
        pushed.attempts = attempt
        args = ["push", "--atomic"] if atomic else ["push"]
        specs = notes.refspecs()
        if not atomic and specs:
            pushed.warnings += push_notes(repo, remote).warnings
            specs = []
        result = git(repo, *args, "--", remote, *refspecs, *specs, hooks_stand_aside=False)
        if result.returncode == 0:
            pushed.pushed, pushed.output = True, result.stderr.strip()
            pushed.warnings = list(dict.fromkeys(pushed.warnings + notes.warnings))
            return pushed
        if atomic and "atomic" in result.stderr and "support" in result.stderr:
            atomic = False
            continue
        merged = notes.recover(result.stderr, f"push to {remote} failed:\n")
        if merged is not None:
            pushed.merges.append(merged)
    raise SyncError(f"the receipts on {remote} kept changing; {attempts} attempts failed, try again")


def push_refspecs(repo: pygit2.Repository, remote: str, refspecs: list[str]) -> tuple[list[str], PushResult]:
    """Push the branches among ``refspecs`` with the receipts (see :func:`push_with_receipts`);
    when they name only the notes ref, push only the receipts. The branches pushed, and how
    the push went (its ``output`` is empty when only the receipts went)."""
    branches = [spec for spec in refspecs if NOTES_REF not in spec]
    if not branches:
        return branches, push_notes(repo, remote)
    return branches, push_with_receipts(repo, remote, branches)


def _only_notes_stale(rejected: dict[str, str]) -> bool:
    """Only notes refs were refused, because the remote's receipts or attestations moved on.

    In an atomic push every other ref then reads "atomic push failed" (not among ``rejected``);
    a branch refused on its own account is the user's problem, not a race to retry.
    """
    return bool(rejected) and all(ref in SYNCED_REFS and _is_stale(why) for ref, why in rejected.items())
