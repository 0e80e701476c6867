"""Deciding whether a commit's GPU code is validated.

A receipt validates commit C when it is well formed, its signature checks
out against the trust roots (gitproof.trust), and it passes every check of
the policy (gitproof.verify.checks), its fingerprint trees equal to C's at
the policy's paths. Where the receipt's note is attached does not matter: a
receipt vouches for code, so it may sit on C, on an ancestor, or on a commit C
was squashed, rebased or cherry-picked from. The `Verifier` finds candidates
through gitproof.tree_index and judges each in full, per scope (the whole
fingerprint, or each shard), preferring C's own receipt, then an ancestor's.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pygit2

from gitproof.fingerprint import Trees, changed_fingerprint_paths, commit_trees
from gitproof.notes import NotesStore
from gitproof.tree_index import TreeIndex
from gitproof.policy import Policy, PolicyError, load_policy, node_ids_in, read_node_ids, read_policy_file, selects
from gitproof.receipt import SignedReceipt
from gitproof.trust import RefuseAll, Trust, TrustError, load_trust
from gitproof.trust.locate import blob_at
from gitproof.verify.checks import (ChecksPassed, CoversTrees, Fresh, InScope, ModeAllowed, ReceiptCheck,
                                    RunConditions, RunsRequiredTests, SignatureTrusted, SignerNarrowed,
                                    SkipsAllowed, TestsPassed, listing)
from gitproof.verify.codes import Code
from gitproof.verify.gpu_checks import GpuKernelsRan, GpuUsed
from gitproof.verify.verdicts import (ANCESTOR, ELSEWHERE, SELF, UNCHANGED, UNVALIDATED, VALIDATED, CommitVerdict,
                                      Failure, ReceiptVerdict)

_HISTORY_LIMIT = 500
# Bounds on the work hostile notes can cause: notes found through the tree index that are judged
# for one code state, receipts judged per such note, and reasons reported for one commit.
MAX_HOLDERS = 128
MAX_PER_HOLDER = 16
MAX_REASONS = 20

TreesKey = tuple[tuple[str, str], ...]  # a code state as a dictionary key: sorted (path, tree id)


def effective_policy(repo: pygit2.Repository, trust_ref: str | None, policy_file: Path | None,
                     flags: dict[str, Any]) -> Policy:
    """Defaults < [tool.gpu_proof] (working tree or trust ref) < --policy FILE < flags."""
    policy = load_policy(repo, trust_ref)
    if policy_file is not None:
        policy = policy.overridden(read_policy_file(policy_file), str(policy_file))
    return policy.overridden(flags, "command line")


@dataclass(frozen=True)
class Scope:
    """What one receipt must cover: the whole fingerprint, or one shard of it."""

    shard: str | None
    paths: tuple[str, ...]
    tests: tuple[str, ...] = ()

    def selects(self, nodeid: str) -> bool:
        """Is this test part of the scope?"""
        return selects(self.tests, nodeid)


class Verifier:
    """Verifies commits against one policy and one set of trust roots."""

    def __init__(self, repo: pygit2.Repository, policy: Policy, trust: Trust,
                 notes: NotesStore | None = None, required_tests: list[str] | None = None) -> None:
        self.repo = repo
        self.policy = policy
        self.trust = trust
        self.notes = notes or NotesStore(repo)
        self.required_tests = required_tests
        self.now = trust.now
        self.scopes = _scopes(policy)
        self.all_paths = sorted({p for scope in self.scopes for p in scope.paths})
        self._memo: dict[tuple[str, str | None], CommitVerdict] = {}
        self._not_examined: dict[tuple[str, str | None], int] = {}
        self._judgements: dict[tuple[str, str | None, TreesKey], ReceiptVerdict] = {}
        # Per code state, while the notes tip stays: a long log meets each code state many times.
        self._notes_tip: pygit2.Oid | None = None
        self._holders: dict[tuple[str | None, TreesKey], list[str]] = {}
        self._claiming: dict[tuple[str, str | None, TreesKey], list[ReceiptVerdict]] = {}
        self.tree_index = TreeIndex(self.notes, [(scope.shard, scope.paths) for scope in self.scopes])

    def trees_of(self, commit: pygit2.Commit, scope: Scope | None = None) -> Trees:
        """The commit's trees at one scope's paths, or at every path the policy fingerprints."""
        return commit_trees(self.repo, commit, list(scope.paths) if scope else self.all_paths)

    def scope_for(self, signed: SignedReceipt) -> Scope:
        for scope in self.scopes:
            if scope.shard == signed.receipt.shard:
                return scope
        return self.scopes[0]

    def receipts_on(self, commit: pygit2.Commit) -> list[ReceiptVerdict]:
        """Every receipt in the commit's note, each judged for its own scope on this commit."""
        verdicts = []
        for entry in self.notes.entries(str(commit.id)):
            if entry.signed is None:
                verdicts.append(ReceiptVerdict(None, str(commit.id),
                                               [Failure(Code(entry.code), entry.error or "unreadable")]))
                continue
            scope = self.scope_for(entry.signed)
            verdicts.append(self.judge(entry.signed, self.trees_of(commit, scope), str(commit.id), scope))
        return verdicts

    def checks(self, scope: Scope, trees: Trees) -> list[ReceiptCheck]:
        policy = self.policy
        required = self.required_tests
        if required is not None and scope.shard is not None:
            required = [n for n in required if scope.selects(n)]
        checks: list[ReceiptCheck] = [
            SignatureTrusted(self.trust), InScope(scope.shard), TestsPassed(), ChecksPassed(),
            SkipsAllowed(policy.allow_skipped, policy.expected_skips, scope.shard is not None),
            Fresh(self.repo, self.now, policy.max_age_days),
            SignerNarrowed(policy.signers, policy.key_fingerprints), ModeAllowed(policy.modes),
            RunConditions(policy.require_mode, policy.require_gpu, policy.require_clean),
        ]
        if policy.require_gpu_use:
            checks.append(GpuUsed())
        if policy.require_gpu_kernels:
            checks.append(GpuKernelsRan())
        if required is not None:
            checks.append(RunsRequiredTests(required))
        checks.append(CoversTrees(self.repo, list(scope.paths), trees))
        return checks

    def judge(self, signed: SignedReceipt, trees: Trees, location: str,
              scope: Scope | None = None) -> ReceiptVerdict:
        """One receipt against one code state and every rule of the policy."""
        checks = self.checks(scope or self.scopes[0], trees)
        failures: list[Failure] = []
        for failure in (c.failure(signed) for c in checks):
            if failure and failure not in failures:
                failures.append(failure)
        warnings = [w for w in (c.warning(signed) for c in checks) if w]
        if signed.unsigned and not failures:
            warnings.append("UNSIGNED receipt accepted (--allow-unsigned): nobody vouches for this run")
        return ReceiptVerdict(signed, location, failures, warnings)

    def verify(self, commit: pygit2.Commit) -> CommitVerdict:
        """Validated when every scope (the whole fingerprint, or each required shard) is."""
        if self.scopes[0].shard is None:
            return self._verify_scope(commit, self.scopes[0])
        parts = {scope.shard: self._verify_scope(commit, scope) for scope in self.scopes}
        return _combine(str(commit.id), self.trees_of(commit), parts)

    def verify_all(self, commits: Sequence[pygit2.Commit]) -> list[CommitVerdict]:
        """Each commit's verdict, in the order given (newest first, as git log lists them)."""
        verdicts = {c.id: self.verify(c) for c in reversed(commits)}
        return [verdicts[c.id] for c in commits]

    def _verify_scope(self, commit: pygit2.Commit, scope: Scope) -> CommitVerdict:
        key = (str(commit.id), scope.shard)
        if key not in self._memo:
            self._memo[key] = self._search(commit, scope)
        return self._memo[key]

    def _search(self, commit: pygit2.Commit, scope: Scope) -> CommitVerdict:
        """The best valid receipt for the commit's trees: on the commit itself, then on an
        ancestor, then anywhere else in the notes (a squash, rebase or cherry-pick)."""
        trees = self.trees_of(commit, scope)
        inherited = self._inherited(commit, scope, trees)
        if inherited is not None:
            return inherited
        candidates = self.candidates(commit, scope, trees)
        valid = [v for v in candidates if v.ok]
        if valid:
            best, relation = self._nearest(commit, valid)
            state = VALIDATED if relation == SELF else UNCHANGED
            return CommitVerdict(str(commit.id), state, trees, best, relation=relation)
        reasons = _reasons(candidates, self._not_examined.get((str(commit.id), scope.shard), 0))
        if not reasons:
            reasons = [self._history_reason(commit, trees, scope)]
        return CommitVerdict(str(commit.id), UNVALIDATED, trees, None, reasons)

    def _inherited(self, commit: pygit2.Commit, scope: Scope, trees: Trees) -> CommitVerdict | None:
        """The parent's verdict, already found, for a commit with no note of its own, one parent and
        the parent's code: the common case of a long log judged oldest first, at the cost of a lookup.

        It is the verdict a search would give. The parent was validated by the newest valid receipt
        on its ancestors (relation ANCESTOR: none of its own was valid), and this commit's ancestors
        are the parent's plus the parent itself, so the newest valid receipt on them is the same.
        A parent validated by its own receipt (SELF) is not followed: an ancestor's newer receipt
        would come first here. Nor is a merge: its other parent's ancestors may hold a newer one.
        """
        if len(commit.parent_ids) != 1 or self.notes.blob_id(str(commit.id)) is not None:
            return None
        known = self._memo.get((str(commit.parent_ids[0]), scope.shard))
        if (known is not None and known.ok and known.receipt is not None and known.trees == trees
                and known.relation == ANCESTOR):
            return CommitVerdict(str(commit.id), UNCHANGED, trees, known.receipt, relation=ANCESTOR)
        return None

    def candidates(self, commit: pygit2.Commit, scope: Scope, trees: Trees | None = None) -> list[ReceiptVerdict]:
        """Every receipt that could validate the commit for this scope, each judged: the receipts on
        the commit itself (whatever trees they claim), and those anywhere in the notes that claim
        the commit's trees (found through the tree index, then read and judged in full)."""
        trees = self.trees_of(commit, scope) if trees is None else trees
        own = str(commit.id)
        state = _trees_key(trees)
        self._forget_if_notes_moved()
        verdicts = self._scoped_receipts(own, trees, scope, claiming_only=False, state=state)
        holders = [h for h in self._holders_of(scope, trees, state) if h != own]
        for holder in holders[:MAX_HOLDERS]:
            key = (holder, scope.shard, state)
            if key not in self._claiming:
                self._claiming[key] = self._scoped_receipts(holder, trees, scope, claiming_only=True,
                                                            state=state)
            verdicts += self._claiming[key]
        self._not_examined[(own, scope.shard)] = max(0, len(holders) - MAX_HOLDERS)
        return verdicts

    def _holders_of(self, scope: Scope, trees: Trees, state: TreesKey) -> list[str]:
        """The index's holders for this code state, commits this clone has first."""
        key = (scope.shard, state)
        if key not in self._holders:
            holders = self.tree_index.holders(scope.shard, scope.paths, trees)
            holders.sort(key=lambda holder: holder not in self.repo)
            self._holders[key] = holders
        return self._holders[key]

    def _forget_if_notes_moved(self) -> None:
        tip = self.notes.tip()
        tip_id = tip.id if tip is not None else None
        if tip_id != self._notes_tip:
            self._notes_tip = tip_id
            self._holders.clear()
            self._claiming.clear()

    def _nearest(self, commit: pygit2.Commit, valid: list[ReceiptVerdict]) -> tuple[ReceiptVerdict, str]:
        """The commit's own receipt, else an ancestor's, else the newest; each with its relation."""
        own = [v for v in valid if v.note_commit == str(commit.id)]
        if own:
            return own[0], SELF
        newest_first = sorted(valid, key=_finished, reverse=True)
        for verdict in newest_first:
            if self.relation(verdict.note_commit, commit) == ANCESTOR:
                return verdict, ANCESTOR
        return newest_first[0], ELSEWHERE

    def relation(self, holder: str, commit: pygit2.Commit) -> str:
        """Where a note on ``holder`` sits relative to ``commit``: SELF, ANCESTOR or ELSEWHERE."""
        if holder == str(commit.id):
            return SELF
        if self._parent_found(holder, commit) or self._is_ancestor(holder, commit):
            return ANCESTOR
        return ELSEWHERE

    def _parent_found(self, holder: str, commit: pygit2.Commit) -> bool:
        """A parent already judged through a receipt on itself or on its ancestor ``holder``: the
        cheap answer while a log is judged oldest first, without a walk of the commit graph."""
        for parent in commit.parents:
            for scope in self.scopes:
                known = self._memo.get((str(parent.id), scope.shard))
                if (known and known.receipt and known.receipt.note_commit == holder
                        and known.relation in (SELF, ANCESTOR)):
                    return True
        return False

    def _is_ancestor(self, holder: str, commit: pygit2.Commit) -> bool:
        try:
            return bool(self.repo.descendant_of(commit.id, holder))
        except (KeyError, ValueError, pygit2.GitError):
            return False  # the note sits on a commit this clone does not have

    def _scoped_receipts(self, holder: str, trees: Trees, scope: Scope, claiming_only: bool,
                         state: TreesKey | None = None) -> list[ReceiptVerdict]:
        """The receipts in one commit's note for this scope, judged; ``claiming_only``: just those
        that claim these trees (a note found through the index may hold receipts for other code)."""
        verdicts: list[ReceiptVerdict] = []
        unreadable = 0
        for entry in self.notes.entries(holder):
            if claiming_only and len(verdicts) >= MAX_PER_HOLDER:
                break  # a note found through the index holds a few receipts for this code, not thousands
            if entry.signed is None:
                unreadable += 1
                if not claiming_only or unreadable == 1:
                    verdicts.append(ReceiptVerdict(None, holder, [Failure(Code(entry.code),
                                                                          entry.error or "unreadable")]))
            elif entry.signed.receipt.shard != scope.shard:
                continue
            elif not claiming_only or _claims(entry.signed, scope, trees):
                verdicts.append(self._judged(entry.signed, trees, holder, scope, state))
        return verdicts

    def _judged(self, signed: SignedReceipt, trees: Trees, holder: str, scope: Scope,
                state: TreesKey | None = None) -> ReceiptVerdict:
        """``judge``, once per receipt, scope and code state: a receipt found for many commits
        with the same trees (a long log) has its signature checked once."""
        key = (signed.identity, scope.shard, _trees_key(trees) if state is None else state)
        if key not in self._judgements:
            self._judgements[key] = self.judge(signed, trees, holder, scope)
        verdict = self._judgements[key]
        return verdict if verdict.note_commit == holder else replace(verdict, note_commit=holder)

    def _history_reason(self, commit: pygit2.Commit, trees: Trees, scope: Scope) -> Failure:
        """Explain a missing receipt: name the nearest validated ancestor, if any, and what changed."""
        if not self.notes.annotated_commits():
            return Failure(Code.NO_RECEIPT, "no receipt" + self._shallow_hint())
        walker = self.repo.walk(commit.id, pygit2.enums.SortMode.TOPOLOGICAL)
        for count, ancestor in enumerate(walker):
            if count >= _HISTORY_LIMIT:
                break
            if ancestor.id == commit.id:
                continue
            valid = next((v for v in self.candidates(ancestor, scope) if v.ok and v.signed is not None), None)
            if valid is None or valid.signed is None:
                continue
            recorded = valid.signed.receipt.trees
            changed = changed_fingerprint_paths(self.repo, {p: recorded.get(p) for p in scope.paths}, trees)
            where = str(ancestor.id)[:10]
            holder = valid.note_commit[:10]
            since = (f"the receipt on {holder}" if self.relation(valid.note_commit, ancestor) != ELSEWHERE
                     else f"{where} (validated by the receipt on {holder})")
            return Failure(Code.FINGERPRINT_CHANGED, f"GPU code changed since {since}: " + listing(changed))
        return Failure(Code.NO_RECEIPT, "no receipt" + self._shallow_hint())

    def _shallow_hint(self) -> str:
        if not self.repo.is_shallow:
            return ""
        return (" (this clone is shallow: receipts are still found by their trees, but the last validated "
                "commit before this one may be missing, so what changed since cannot be said; "
                "for that, fetch the full history: git fetch --unshallow)")


def _trees_key(trees: Trees) -> TreesKey:
    return tuple(sorted((p, t or "") for p, t in trees.items()))


def _scopes(policy: Policy) -> list[Scope]:
    shards = policy.shards_to_check()
    if not shards:
        return [Scope(None, tuple(policy.fingerprint_paths))]
    return [Scope(s.name, tuple(s.paths), tuple(s.tests)) for s in shards]


def _combine(commit: str, trees: Trees, parts: dict[str | None, CommitVerdict]) -> CommitVerdict:
    """A sharded commit: validated only when every required shard is."""
    named = {str(name): verdict for name, verdict in parts.items()}
    reasons = [Failure(r.code, f"shard {name}: {r.message}")
               for name, verdict in named.items() if not verdict.ok for r in verdict.reasons]
    if reasons:
        state = UNVALIDATED
    elif all(v.state == VALIDATED for v in named.values()):
        state = VALIDATED
    else:
        state = UNCHANGED
    signed = [(v.receipt, v.receipt.signed) for v in named.values() if v.receipt and v.receipt.signed]
    newest = max(signed, key=lambda pair: pair[1].receipt.finished, default=(None, None))[0]
    return CommitVerdict(commit, state, trees, newest, reasons, named)


def _reasons(candidates: list[ReceiptVerdict], not_examined: int) -> list[Failure]:
    """Why none of the candidates counts: each reason once, at most MAX_REASONS of them."""
    unique = dict.fromkeys(_located(f, v.note_commit) for v in candidates for f in v.failures)
    reasons = list(unique)[:MAX_REASONS]
    left = len(unique) - len(reasons)
    notes = [f"{left} more reason(s) not shown"] if left else []
    if not_examined:
        notes.append(f"{not_examined} more note(s) claiming this code were not examined "
                     f"(the first {MAX_HOLDERS} were, commits in this clone first)")
    if reasons and notes:
        last = reasons[-1]
        reasons[-1] = Failure(last.code, f"{last.message} ({'; '.join(notes)})")
    return reasons


def _located(failure: Failure, holder: str) -> Failure:
    return Failure(failure.code, f"receipt on {holder[:10]}: {failure.message}")


def _claims(signed: SignedReceipt, scope: Scope, trees: Trees) -> bool:
    recorded = signed.receipt.trees
    return all(p in recorded and recorded[p] == trees.get(p) for p in scope.paths)


def _finished(verdict: ReceiptVerdict) -> datetime:
    return verdict.signed.receipt.finished if verdict.signed else datetime.min.replace(tzinfo=timezone.utc)


def open_verifier(repo: pygit2.Repository, policy: Policy | None = None,
                  require_trust: bool = True, now: datetime | None = None,
                  trust_rev: str | None = None) -> Verifier:
    """A verifier for the repository's policy and configured trust roots.

    ``trust_rev`` reads both the policy and the allowed_signers file from that
    revision (e.g. ``origin/main``) instead of the working tree. With
    ``require_trust=False`` missing trust roots do not stop the caller; every
    receipt is then reported as unverified.
    """
    policy = policy or load_policy(repo, trust_rev)
    try:
        trust = load_trust(repo, policy, now, trust_rev)
    except TrustError as exc:
        if require_trust:
            raise
        trust = Trust(RefuseAll(str(exc)))
    required = _required_tests(repo, policy.required_tests, trust_rev) if policy.required_tests else None
    return Verifier(repo, policy, trust, required_tests=required)


def _required_tests(repo: pygit2.Repository, path: str, trust_rev: str | None) -> list[str]:
    """The required-tests manifest, read from the same place as the policy."""
    workdir = repo.workdir
    if trust_rev or workdir is None:
        try:
            blob = blob_at(repo, trust_rev or "HEAD", path, "required_tests manifest")
        except TrustError as exc:
            raise PolicyError(str(exc)) from exc
        return node_ids_in(blob.data.decode("utf-8", errors="replace"))
    manifest = Path(workdir) / path
    if not manifest.is_file():
        raise PolicyError(f"required_tests manifest {manifest} does not exist")
    return read_node_ids(manifest)
