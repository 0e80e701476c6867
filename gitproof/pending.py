"""Pending receipts: runs made on uncommitted content, waiting for their commit.

A pending receipt is a blob referenced by ``refs/gpu-proof/pending/<blob id>``:
refs survive restarts and keep the blob safe from gc, and they live outside
refs/heads and refs/notes so an ordinary push never sends them. When a commit
records exactly the content a pending receipt describes (same trees at the
fingerprint paths), the receipt is attached to that commit as a note and the
pending ref is dropped. Nothing is re-run and nothing is re-signed.
"""
from __future__ import annotations

from dataclasses import dataclass

import pygit2

from gitproof import attestation_notes
from gitproof.fingerprint import commit_trees
from gitproof.git import lookup
from gitproof.notes import NotesStore
from gitproof.policy import Policy
from gitproof.receipt import MAX_NOTE_BYTES, SignedReceipt, note_entries

PENDING_PREFIX = "refs/gpu-proof/pending/"


@dataclass(frozen=True)
class PendingReceipt:
    ref: str
    signed: SignedReceipt


class PendingStore:
    """Receipts whose code is not committed yet, one ref per receipt blob."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo

    def add(self, signed: SignedReceipt) -> str:
        blob = self.repo.create_blob(signed.text.encode("utf-8"))
        ref = f"{PENDING_PREFIX}{blob}"
        if ref not in self.repo.references:
            self.repo.references.create(ref, blob)
        return ref

    def list(self) -> list[PendingReceipt]:
        pending = []
        for ref in self.repo.references:
            if not ref.startswith(PENDING_PREFIX):
                continue
            blob = lookup(self.repo, str(self.repo.references[ref].target))
            if not isinstance(blob, pygit2.Blob) or blob.size > MAX_NOTE_BYTES:
                continue  # not something gitproof wrote there: a pending receipt is one blob
            for entry in note_entries(blob.data):
                if entry.signed:
                    pending.append(PendingReceipt(ref, entry.signed))
        return pending

    def remove(self, ref: str) -> None:
        self.repo.references.delete(ref)


@dataclass(frozen=True)
class Attached:
    commit: str
    ref: str
    signed: SignedReceipt


def attach_pending(repo: pygit2.Repository, policy: Policy,
                   commits: list[pygit2.Commit]) -> list[Attached]:
    """Attach each pending receipt to the first of ``commits`` that records its content.

    Content means the trees at the receipt's own scope: its shard's paths, or
    the policy's fingerprint paths.
    """
    pending = PendingStore(repo)
    waiting = pending.list()
    if not waiting or not commits:
        return []
    notes = NotesStore(repo)
    attached = []
    for item in waiting:
        shard = policy.shards.get(item.signed.receipt.shard or "")
        paths = shard.paths if shard else policy.fingerprint_paths
        recorded = {p: item.signed.receipt.trees.get(p, "missing") for p in paths}
        for commit in commits:
            if commit_trees(repo, commit, paths) == recorded:
                notes.add(str(commit.id), item.signed)
                attestation_notes.attach_pending(repo, item.ref, str(commit.id))  # its envelope, if any
                pending.remove(item.ref)
                attached.append(Attached(str(commit.id), item.ref, item.signed))
                break
    return attached
