"""After ``git gpu-proof run``: would the receipt it just recorded validate?

``run`` notes what HEAD's note and the pending receipts hold before the
tests, and afterwards judges only the receipts the run added, with the same
verifier ``git gpu-proof verify`` uses (the working tree's policy and trust
roots). A receipt on HEAD is judged as ``verify`` would judge it there. A
pending receipt (the working tree differed from HEAD) has no commit to be
judged against yet: it is judged by every other rule, against the code it
recorded, and the report says it is pending.

An unsigned dry run is judged by every rule except the signature itself
(codes ``unsigned`` and ``no-trust``), so a dry run tells whether a signed
run would satisfy the policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pygit2

from gitproof.notes import NotesStore
from gitproof.pending import PendingStore
from gitproof.policy import PolicyError
from gitproof.receipt import SignedReceipt
from gitproof.verify import Code, Failure, Verifier, open_verifier

UNSIGNED_ONLY = (Code.UNSIGNED, Code.NO_TRUST)  # what an unsigned dry run is not judged by


@dataclass(frozen=True)
class Before:
    """What was there before the run: HEAD, its receipts, the pending refs."""

    head: str
    on_head: frozenset[str]
    pending: frozenset[str]


@dataclass
class Judged:
    """One receipt the run added, and what the policy says about it."""

    where: str  # "HEAD <short id>" or "pending <short id>"
    pending: bool
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def before_run(repo: pygit2.Repository) -> Before:
    head = str(repo.head.target)
    return Before(head, frozenset(_identities(repo, head)),
                  frozenset(p.ref for p in PendingStore(repo).list()))


def judge_new_receipts(repo: pygit2.Repository, before: Before, unsigned: bool) -> list[Judged]:
    """The receipts the run added (none when it recorded nothing), each judged."""
    fresh_notes = [e.signed for e in NotesStore(repo).entries(before.head)
                   if e.signed is not None and e.signed.identity not in before.on_head]
    fresh_pending = [p for p in PendingStore(repo).list() if p.ref not in before.pending]
    if not fresh_notes and not fresh_pending:
        return []
    try:
        verifier = open_verifier(repo, require_trust=False)
    except PolicyError as exc:
        return [Judged("policy", False, [Failure(Code.POLICY, str(exc))])]
    judged = [_on_head(verifier, repo, before.head, signed) for signed in fresh_notes]
    judged += [_pending(verifier, p.ref, p.signed) for p in fresh_pending]
    if unsigned:
        for item in judged:
            item.failures = [f for f in item.failures if f.code not in UNSIGNED_ONLY]
    return judged


def _on_head(verifier: Verifier, repo: pygit2.Repository, head: str, signed: SignedReceipt) -> Judged:
    commit = repo[head].peel(pygit2.Commit)
    scope = verifier.scope_for(signed)
    verdict = verifier.judge(signed, verifier.trees_of(commit, scope), head, scope)
    return Judged(f"HEAD {head[:10]}", False, list(verdict.failures), list(verdict.warnings))


def _pending(verifier: Verifier, ref: str, signed: SignedReceipt) -> Judged:
    scope = verifier.scope_for(signed)
    recorded = {path: signed.receipt.trees.get(path) for path in scope.paths}
    verdict = verifier.judge(signed, recorded, ref, scope)
    return Judged(f"pending {ref.rsplit('/', 1)[-1][:10]}", True, list(verdict.failures),
                  list(verdict.warnings))


def _identities(repo: pygit2.Repository, commit: str) -> list[str]:
    return [e.signed.identity for e in NotesStore(repo).entries(commit) if e.signed is not None]
