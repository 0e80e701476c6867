"""Is the working tree's GPU code validated (``git gpu-proof status``)?

It is when it has HEAD's code and HEAD is validated, or, when it differs from
HEAD, when a pending receipt (a run on the uncommitted code) matches it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pygit2

from gitproof.fingerprint import WorktreeState, worktree_state
from gitproof.receipt import SignedReceipt
from gitproof.verify.verdicts import CommitVerdict, ReceiptVerdict
from gitproof.verify.verifier import Verifier


@dataclass(frozen=True)
class WorktreeVerdict:
    """The working tree's fingerprint, HEAD's verdict, and each pending receipt's (by its ref)."""

    state: WorktreeState
    head: CommitVerdict
    pending: list[tuple[str, ReceiptVerdict]]

    @property
    def validated(self) -> bool:
        if self.state.matches_head:
            return self.head.ok
        return any(verdict.ok for _, verdict in self.pending)


def judge_worktree(repo: pygit2.Repository, verifier: Verifier,
                   pending: Iterable[tuple[str, SignedReceipt]]) -> WorktreeVerdict:
    """HEAD judged as ``verify`` would, and each pending receipt against the working tree's code."""
    state = worktree_state(repo, verifier.all_paths)
    head = verifier.verify(repo.head.peel(pygit2.Commit))
    judged = []
    for ref, signed in pending:
        scope = verifier.scope_for(signed)
        trees = {p: state.trees[p] for p in scope.paths}
        judged.append((ref, verifier.judge(signed, trees, ref, scope)))
    return WorktreeVerdict(state, head, judged)
