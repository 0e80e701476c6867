"""The audit trail: was each commit validated, and by whom, in answers that do not flip later.

``verify`` is a merge gate: it judges receipts by today's rules. An audit asks about
history, so two of those rules give way (docs/security-model.md, "The audit trail"):

* the age rule (``max_age_days``) is off: a receipt does not stop proving its run by ageing;
* a receipt whose only failure today is that its signer is no longer in allowed_signers
  (key rotation) is ``was-valid`` when the allowed_signers file on the trust branch admitted
  it twice: as the file stood when the receipt was made, and as it stood just before the audited
  commit landed (the first parent of the oldest first-parent commit that contains it). Both are
  read from the first-parent history of the trust revision (``--trust-ref``, default HEAD),
  never from the commit under audit or any other branch. A commit not on that history never
  landed there, so it is never ``was-valid``.

Git keeps no record of which commits were ever the branch's tip: under fast-forward or rebase
merges a pull request's own commits are first-parent commits too, and can vouch for each other
(the docs say what remains and what guards against it).

Revocation always wins: a receipt signed with a key revoked now is ``revoked``, never
``valid`` or ``was-valid``. Everything else that fails is ``never-valid``, with the reasons.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pygit2

from gitproof.files import MAX_TRUST_FILE
from gitproof.git import commit_time, find_commit
from gitproof.policy import Policy, load_policy
from gitproof.receipt import SignedReceipt
from gitproof.trust import AllowedSigners, AllowedSignersSource, Trust, TrustError
from gitproof.trust.locate import blob_at
from gitproof.verify.checks import SignatureTrusted
from gitproof.verify.codes import Code
from gitproof.verify.verdicts import ANCESTOR, ELSEWHERE, SELF, CommitVerdict, Failure, ReceiptVerdict
from gitproof.verify.verifier import Scope, Verifier, open_verifier

VALID = "valid"
WAS_VALID = "was-valid"
REVOKED = "revoked"
NEVER_VALID = "never-valid"
STATUSES = (VALID, WAS_VALID, REVOKED, NEVER_VALID)

NO_AGE_LIMIT = 36_500  # the largest max_age_days a policy accepts (a century): the age rule, in effect off
TRUST_HISTORY_LIMIT = 10_000  # first-parent commits of the trust branch searched for a receipt's time


def audit_policy(policy: Policy) -> Policy:
    """The policy with its age rule off: age is a merge-gate rule, not a rule about history."""
    return policy.overridden({"max_age_days": NO_AGE_LIMIT}, "the audit (no age rule)")


# -- what the audit says ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """A receipt in brief: who signed it, on what, what it found, and where it was made."""

    note_commit: str
    relation: str | None
    made_on: str
    signer: str
    key: str
    gpus: tuple[str, ...]
    counts: dict[str, int]
    mode: str
    dirty: bool
    finished: datetime
    shard: str | None

    @classmethod
    def of(cls, verdict: ReceiptVerdict, relation: str | None) -> RunSummary | None:
        if verdict.signed is None:
            return None
        r = verdict.signed.receipt
        return cls(verdict.note_commit, relation, r.commit, r.signer, r.key_fingerprint,
                   tuple(device.name for device in r.device_records), r.counts, r.mode, r.dirty_outside,
                   r.finished, r.shard)

    def to_json(self) -> dict[str, Any]:
        return {"note_commit": self.note_commit, "relation": self.relation, "made_on": self.made_on,
                "signer": self.signer, "key": self.key, "gpus": list(self.gpus), "counts": dict(self.counts),
                "mode": self.mode, "dirty": self.dirty, "finished": self.finished.isoformat(), "shard": self.shard}


def validating_runs(verdict: CommitVerdict) -> list[RunSummary]:
    """The receipts that validate a commit, one per scope (the whole fingerprint, or each shard)."""
    parts = list(verdict.shards.values()) if verdict.shards else [verdict]
    runs = [RunSummary.of(part.receipt, part.relation) for part in parts if part.ok and part.receipt]
    return [run for run in runs if run is not None]


@dataclass(frozen=True)
class ScopeAudit:
    """One scope of one commit: its status, the receipt behind it (valid, was-valid, revoked),
    for was-valid the trust-branch commits that admitted the signer when the receipt was made
    (``trusted_at``) and where the commit landed (``landed_at``, whose first parent admitted it),
    and the reasons it is not valid now."""

    shard: str | None
    status: str
    receipt: ReceiptVerdict | None = None
    relation: str | None = None
    trusted_at: str | None = None
    reasons: tuple[Failure, ...] = ()
    landed_at: str | None = None

    @property
    def run(self) -> RunSummary | None:
        return RunSummary.of(self.receipt, self.relation) if self.receipt else None

    def to_json(self) -> dict[str, Any]:
        run = self.run
        return {"shard": self.shard, "status": self.status, "signer": run.signer if run else None,
                "key": run.key if run else None, "trusted_at": self.trusted_at, "landed_at": self.landed_at,
                "receipt": run.to_json() if run else None, "reasons": [r.to_json() for r in self.reasons]}


@dataclass(frozen=True)
class CommitAudit:
    """A commit's audit: valid or was-valid only when every scope is."""

    commit: str
    scopes: tuple[ScopeAudit, ...] = field(default_factory=tuple)

    @property
    def status(self) -> str:
        statuses = {scope.status for scope in self.scopes}
        if statuses == {VALID}:
            return VALID
        if statuses <= {VALID, WAS_VALID}:
            return WAS_VALID
        return REVOKED if REVOKED in statuses else NEVER_VALID

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "status": self.status, "scopes": [s.to_json() for s in self.scopes]}


# -- the allowed_signers file as it stood -------------------------------------------------------


@dataclass(frozen=True)
class WhenMade:
    """The trust-branch commit in force when a receipt was made, and why its allowed_signers
    did not admit the receipt's signer then (None: it did)."""

    trust_commit: str | None
    refusal: str | None


@dataclass(frozen=True)
class Landing:
    """Where a commit landed on the trust branch: the oldest first-parent commit that contains it,
    and the commit whose allowed_signers the merge gate judged it by (the landing commit's first
    parent; the landing commit itself when it is the branch's first). ``refusal``: why neither is known."""

    commit: str | None
    base: str | None
    moment: datetime | None = None
    refusal: str | None = None


class TrustHistory:
    """The committed allowed_signers file along the first-parent history of the trust revision.

    The file in force at moment T is the one in the newest first-parent commit whose committer
    time is at or before T. Revocation is always today's list: a key revoked now stays revoked.
    """

    def __init__(self, repo: pygit2.Repository, tip: pygit2.Commit, path: str, today: AllowedSignersSource,
                 limit: int = TRUST_HISTORY_LIMIT) -> None:
        self.repo, self.tip, self.path, self.today, self.limit = repo, tip, path, today, limit
        self._line: list[tuple[str, datetime | None]] | None = None
        self._positions: dict[str, int] = {}
        self._reaches_root = False
        self._sources: dict[str, AllowedSignersSource | str] = {}
        self._landings: dict[str, Landing] = {}

    def when_made(self, verdict: ReceiptVerdict) -> WhenMade:
        assert verdict.signed is not None, "only a parsed receipt has a time"
        finished = verdict.signed.receipt.finished
        at = self.commit_at(finished)
        if at is None:
            return WhenMade(None, f"no commit of the trust branch (searched {self.limit}) is as old as "
                                  f"the receipt ({finished.isoformat()})")
        return WhenMade(at, self._refusal_at(at, finished, verdict.signed))

    def when_landed(self, commit_id: str, verdict: ReceiptVerdict) -> Landing:
        """Where ``commit_id`` landed, with ``refusal`` set when the allowed_signers file the merge
        gate used then (judged at the landing commit's time) did not admit the receipt's signer."""
        assert verdict.signed is not None, "only a parsed receipt has a signer"
        landing = self.landing(commit_id)
        if landing.base is None:
            return landing
        refusal = self._refusal_at(landing.base, landing.moment or verdict.signed.receipt.finished, verdict.signed)
        return landing if refusal is None else Landing(landing.commit, landing.base, landing.moment, refusal)

    def commit_at(self, moment: datetime) -> str | None:
        """The newest first-parent commit made at or before ``moment``, or None."""
        return next((commit for commit, made in self._first_parents() if made is not None and made <= moment),
                    None)

    def landing(self, commit_id: str) -> Landing:
        """Where ``commit_id`` landed on the trust branch (cached per commit)."""
        if commit_id not in self._landings:
            self._landings[commit_id] = self._find_landing(commit_id)
        return self._landings[commit_id]

    def _find_landing(self, commit_id: str) -> Landing:
        line = self._first_parents()
        try:
            oldest = self._positions.get(commit_id)  # a commit on the line landed as itself
            if oldest is None:
                oldest = _oldest_containing([commit for commit, _ in line], commit_id, self.repo)
        except (KeyError, ValueError, pygit2.GitError) as exc:
            return Landing(None, None, refusal=f"where {commit_id[:10]} landed is not known: {exc}")
        if oldest is None:
            return Landing(None, None, refusal=f"{commit_id[:10]} is not on the first-parent history of the "
                                               f"trust revision ({str(self.tip.id)[:10]}): it never landed there")
        landed, moment = line[oldest]
        if oldest + 1 < len(line):
            return Landing(landed, line[oldest + 1][0], moment)
        if self._reaches_root:  # nothing came before the branch's first commit
            return Landing(landed, landed, moment)
        return Landing(None, None, refusal=f"{commit_id[:10]} landed before the {len(line)} trust-branch "
                                           f"commits searched (limit or shallow clone)")

    def _first_parents(self) -> list[tuple[str, datetime | None]]:
        if self._line is None:
            self._line, self._reaches_root = _first_parent_line(self.repo, self.tip, self.limit)
            self._positions = {commit: index for index, (commit, _) in enumerate(self._line)}
        return self._line

    def _refusal_at(self, commit_id: str, moment: datetime, signed: SignedReceipt) -> str | None:
        """Why the allowed_signers file at ``commit_id``, judged at ``moment``, does not admit the
        receipt's signature (revocation as today); None when it does."""
        source = self._source_at(commit_id)
        if isinstance(source, str):
            return source
        refusal = Trust(source, moment).refusal(signed)
        return None if refusal is None else f"{refusal.message} (allowed_signers at {commit_id[:10]})"

    def _source_at(self, commit_id: str) -> AllowedSignersSource | str:
        """The allowed_signers file at a commit, parsed once per blob; a string says why there is none."""
        try:
            blob = blob_at(self.repo, commit_id, self.path, "allowed signers file")
        except TrustError as exc:
            return str(exc)
        key = str(blob.id)
        if key not in self._sources:
            self._sources[key] = self._parse(blob, commit_id)
        return self._sources[key]

    def _parse(self, blob: pygit2.Blob, commit_id: str) -> AllowedSignersSource | str:
        if blob.size > MAX_TRUST_FILE:
            return f"allowed signers file {commit_id[:10]}:{self.path} is over {MAX_TRUST_FILE} bytes"
        text = blob.data.decode("utf-8", errors="surrogateescape")
        signers = AllowedSigners.from_text(text, f"{commit_id[:10]}:{self.path}")
        return AllowedSignersSource(signers, self.today.revoked)


def _first_parent_line(repo: pygit2.Repository, tip: pygit2.Commit,
                       limit: int) -> tuple[list[tuple[str, datetime | None]], bool]:
    """The first-parent commits from ``tip``, newest first, at most ``limit``, with their committer
    times; and whether the line ends at the branch's first commit rather than at the limit, a
    missing parent or a shallow clone's edge (where a commit looks parentless but is not)."""
    line: list[tuple[str, datetime | None]] = []
    commit = tip
    while len(line) < limit:
        line.append((str(commit.id), commit_time(commit)))
        if not commit.parent_ids:
            return line, not repo.is_shallow
        try:
            commit = commit.parents[0]
        except (KeyError, IndexError, pygit2.GitError):
            return line, False
    return line, False


def _oldest_containing(line: list[str], commit_id: str, repo: pygit2.Repository) -> int | None:
    """The index in ``line`` (first parents, newest first) of the oldest commit that is
    ``commit_id`` or descends from it; None when even the newest does not. A commit contains
    whatever its first parent contains, so the containing commits are a prefix of the line."""
    def contains(index: int) -> bool:
        return line[index] == commit_id or bool(repo.descendant_of(line[index], commit_id))

    if not line or not contains(0):
        return None
    low, high = 0, len(line)  # contains(low); nothing at or past high is known to
    while high - low > 1:
        middle = (low + high) // 2
        if contains(middle):
            low = middle
        else:
            high = middle
    return low


# -- the auditor ------------------------------------------------------------------------------


class Auditor:
    """Audits commits with a verifier whose policy has no age rule (see ``open_auditor``)."""

    def __init__(self, verifier: Verifier, history: TrustHistory | None) -> None:
        self.verifier = verifier
        self.repo = verifier.repo
        self.history = history  # None: no committed allowed_signers, so nothing can be was-valid

    def audit(self, commit: pygit2.Commit) -> CommitAudit:
        return self.audit_verdict(commit, self.verifier.verify(commit))

    def audit_all(self, commits: Sequence[pygit2.Commit]) -> list[CommitAudit]:
        verdicts = self.verifier.verify_all(commits)
        return [self.audit_verdict(c, v) for c, v in zip(commits, verdicts, strict=True)]

    def audit_verdict(self, commit: pygit2.Commit, verdict: CommitVerdict) -> CommitAudit:
        """The audit of a commit, given the audit verifier's verdict on it."""
        scopes = tuple(self._scope(commit, scope, verdict.shards[scope.shard] if scope.shard else verdict)
                       for scope in self.verifier.scopes)
        return CommitAudit(str(commit.id), scopes)

    def _scope(self, commit: pygit2.Commit, scope: Scope, part: CommitVerdict) -> ScopeAudit:
        if part.ok:
            return ScopeAudit(scope.shard, VALID, part.receipt, part.relation)
        reasons = list(part.reasons)
        candidates = self._nearest_first(commit, self.verifier.candidates(commit, scope))
        for verdict, relation in candidates:
            if self._only_failure(verdict) == Code.SIGNER_NOT_ALLOWED and self.history is not None:
                judged = self._was_valid(self.history, commit, scope, verdict, relation)
                if isinstance(judged, ScopeAudit):
                    return judged
                reasons.append(judged)
        for verdict, relation in candidates:
            if self._only_failure(verdict) == Code.KEY_REVOKED:
                return ScopeAudit(scope.shard, REVOKED, verdict, relation, reasons=tuple(verdict.failures))
        return ScopeAudit(scope.shard, NEVER_VALID, reasons=tuple(reasons))

    @staticmethod
    def _was_valid(history: TrustHistory, commit: pygit2.Commit, scope: Scope, verdict: ReceiptVerdict,
                   relation: str) -> ScopeAudit | Failure:
        """The was-valid audit of a receipt refused today only for its signer, or why it is not:
        the trust branch must have admitted the signer when the receipt was made and when the
        commit landed."""
        where = f"receipt on {verdict.note_commit[:10]}"
        made = history.when_made(verdict)
        if made.refusal is not None:
            return Failure(Code.SIGNER_NOT_ALLOWED, f"{where}: not trusted when made either: {made.refusal}")
        landed = history.when_landed(str(commit.id), verdict)
        if landed.refusal is not None:
            return Failure(Code.SIGNER_NOT_ALLOWED, f"{where}: not trusted when {str(commit.id)[:10]} landed "
                                                    f"on the trust branch: {landed.refusal}")
        return ScopeAudit(scope.shard, WAS_VALID, verdict, relation, made.trust_commit, tuple(verdict.failures),
                          landed.commit)

    def _only_failure(self, verdict: ReceiptVerdict) -> Code | None:
        """The code of the signature check's failure when it is the receipt's only failure: the
        receipt would count but for whom the trust roots admit now. None otherwise."""
        if verdict.signed is None:
            return None
        failure = SignatureTrusted(self.verifier.trust).failure(verdict.signed)
        return failure.code if failure is not None and verdict.failures == [failure] else None

    def _nearest_first(self, commit: pygit2.Commit,
                       verdicts: list[ReceiptVerdict]) -> list[tuple[ReceiptVerdict, str]]:
        """Parsed receipts with where each was made: the commit's own, then ancestors', then others';
        newest first within each."""
        placed = [(v, self.verifier.relation(v.note_commit, commit)) for v in verdicts if v.signed is not None]
        rank = {SELF: 0, ANCESTOR: 1, ELSEWHERE: 2}
        return sorted(placed, key=lambda pair: (rank[pair[1]], -_timestamp(pair[0])))


def _timestamp(verdict: ReceiptVerdict) -> float:
    return verdict.signed.receipt.finished.timestamp() if verdict.signed else 0.0


def open_auditor(repo: pygit2.Repository, trust_rev: str | None = None) -> Auditor:
    """An auditor for the repository's policy (age rule off) and trust roots, read from the
    working tree or from ``trust_rev``; the history of allowed_signers is that of ``trust_rev``
    (default HEAD)."""
    policy = audit_policy(load_policy(repo, trust_rev))
    verifier = open_verifier(repo, policy, trust_rev=trust_rev)
    return Auditor(verifier, _history(repo, verifier, trust_rev or "HEAD"))


def _history(repo: pygit2.Repository, verifier: Verifier, tip_rev: str) -> TrustHistory | None:
    """Only a committed allowed_signers file ([tool.gpu_proof] allowed_signers) has a history."""
    source = verifier.trust.source
    policy = verifier.policy
    if policy.signer_source != "allowed_signers" or not policy.allowed_signers:
        return None
    if not isinstance(source, AllowedSignersSource):
        return None
    tip = find_commit(repo, tip_rev)
    if tip is None:
        raise TrustError(f"trust revision {tip_rev} names no commit")
    return TrustHistory(repo, tip, policy.allowed_signers, source)
