"""Deciding whether a commit's GPU code is validated.

A receipt validates commit C when it is well formed, its signature checks
out against the allowed signers, its tests passed, and its fingerprint
trees equal C's trees at the policy's paths. It may sit on C or on any
ancestor reachable through commits with the same trees. Each check is a
small object that says why it failed.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pygit2

from gitproof.allowed_signers import AllowedSigners, AllowedSignersError, RevokedKeys, verify_signed_payload
from gitproof.fingerprint import Trees, changed_fingerprint_paths, commit_trees
from gitproof.notes import NotesStore
from gitproof.policy import Policy, load_policy
from gitproof.receipt import SignedReceipt

NAMESPACE = "gpu-proof"
VALIDATED = "validated"
UNCHANGED = "unchanged"
UNVALIDATED = "unvalidated"
_HISTORY_LIMIT = 500


class TrustError(Exception):
    """The trusted signer configuration is missing or unreadable."""


@dataclass(frozen=True)
class Failure:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# -- trust roots ------------------------------------------------------------------

class Trust:
    """Allowed signers plus revocations, with verdicts cached per receipt."""

    def __init__(self, signers: AllowedSigners, revoked: RevokedKeys | None,
                 now: datetime | None = None) -> None:
        self.signers = signers
        self.revoked = revoked
        self.now = now or datetime.now(timezone.utc)
        self._cache: dict[str, Failure | None] = {}

    @property
    def warnings(self) -> list[str]:
        """Lines of the trust files that were skipped, as ssh-keygen would skip them."""
        return [f"allowed_signers line skipped: {error}" for error in self.signers.errors]

    def failure(self, signed: SignedReceipt) -> Failure | None:
        key = signed.identity
        if key not in self._cache:
            self._cache[key] = self._check(signed)
        return self._cache[key]

    def _check(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        decision = verify_signed_payload(signed.payload, signed.signature, receipt.signer,
                                         self.signers, self.revoked, NAMESPACE, self.now)
        if not decision.allowed:
            return Failure(decision.code, decision.reason)
        if decision.fingerprint and decision.fingerprint != receipt.key_fingerprint:
            return Failure("bad-signature", f"receipt names key {receipt.key_fingerprint} "
                                            f"but was signed by {decision.fingerprint}")
        return None


def _config_path(repo: pygit2.Repository, name: str) -> Path | None:
    try:
        value = repo.config[name]
    except KeyError:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and repo.workdir:
        path = Path(repo.workdir) / path
    return path


def load_trust(repo: pygit2.Repository, policy: Policy, now: datetime | None = None,
               trust_rev: str | None = None) -> Trust:
    """Trust roots from [tool.gpu_proof] allowed_signers or gpg.ssh.allowedSignersFile.

    With ``trust_rev`` the policy's allowed_signers file is read from that
    revision's objects, not from the working tree, so the code under review
    cannot add its own key.
    """
    try:
        if trust_rev:
            signers = _trusted_signers(repo, policy, trust_rev)
        else:
            signers = AllowedSigners.from_file(_signers_path(repo, policy))
        revocation = _config_path(repo, "gpg.ssh.revocationFile")
        revoked = RevokedKeys.from_file(revocation) if revocation else None
    except (AllowedSignersError, OSError) as exc:
        raise TrustError(str(exc)) from exc
    return Trust(signers, revoked, now)


def _signers_path(repo: pygit2.Repository, policy: Policy) -> Path:
    if policy.allowed_signers:
        path = Path(repo.workdir or repo.path) / policy.allowed_signers
        origin = f"[tool.gpu_proof] allowed_signers ({policy.allowed_signers})"
    else:
        path = _config_path(repo, "gpg.ssh.allowedSignersFile")
        origin = "git config gpg.ssh.allowedSignersFile"
    if path is None:
        raise TrustError("no allowed signers configured: set [tool.gpu_proof] allowed_signers "
                         "in pyproject.toml (e.g. \".gpu-proof/allowed_signers\") or "
                         "git config gpg.ssh.allowedSignersFile")
    if not path.is_file():
        raise TrustError(f"allowed signers file {path} (from {origin}) does not exist")
    return path


def _trusted_signers(repo: pygit2.Repository, policy: Policy, rev: str) -> AllowedSigners:
    """Nothing from the working tree: the policy's file, or a relative
    gpg.ssh.allowedSignersFile, is read from ``rev``; only an absolute
    configured path (the CI machine's own file) is read from disk."""
    if policy.allowed_signers:
        return _signers_at(repo, rev, policy.allowed_signers)
    try:
        configured = repo.config["gpg.ssh.allowedSignersFile"]
    except KeyError:
        raise TrustError(f"no allowed signers configured at {rev}: set [tool.gpu_proof] "
                         "allowed_signers there, or git config gpg.ssh.allowedSignersFile "
                         "to an absolute path") from None
    path = Path(configured).expanduser()
    if path.is_absolute():
        return AllowedSigners.from_file(_signers_path(repo, policy))
    return _signers_at(repo, rev, path.as_posix())


def _signers_at(repo: pygit2.Repository, rev: str, path: str) -> AllowedSigners:
    try:
        commit = repo.revparse_single(rev).peel(pygit2.Commit)
        blob = commit.tree[path]
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise TrustError(f"allowed signers file {path} does not exist at trusted revision {rev}") from exc
    if not isinstance(blob, pygit2.Blob):
        raise TrustError(f"{rev}:{path} is not a file")
    return AllowedSigners.from_text(blob.data.decode("utf-8", errors="surrogateescape"), f"{rev}:{path}")


# -- receipt checks -----------------------------------------------------------------

class ReceiptCheck(Protocol):
    def failure(self, signed: SignedReceipt) -> Failure | None: ...


class TestsPassed:
    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if receipt.verdict == "passed":
            return None
        failing = [t.nodeid for t in receipt.tests if t.failing]
        if failing:
            return Failure("tests-failed", f"{len(failing)} test(s) failed: " + ", ".join(failing[:5]))
        if not any(t.outcome == "passed" for t in receipt.tests):
            return Failure("tests-failed", "no test passed (all skipped or xfailed)")
        return Failure("tests-failed", f"pytest exited with status {receipt.exit_status}")


@dataclass
class CoversTrees:
    """The receipt describes exactly this code at every fingerprint path."""

    repo: pygit2.Repository
    paths: list[str]
    trees: Trees

    def failure(self, signed: SignedReceipt) -> Failure | None:
        recorded = signed.receipt.trees
        missing = [p for p in self.paths if p not in recorded]
        if missing:
            return Failure("paths-not-covered",
                           "receipt does not fingerprint " + ", ".join(missing))
        theirs = {p: recorded[p] for p in self.paths}
        if theirs == self.trees:
            return None
        changed = changed_fingerprint_paths(self.repo, theirs, self.trees)
        return Failure("fingerprint-changed",
                       "code differs from the receipt's: " + ", ".join(changed[:10])
                       + (f" (+{len(changed) - 10} more)" if len(changed) > 10 else ""))


# -- verdicts -------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptVerdict:
    signed: SignedReceipt | None
    note_commit: str
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"note_commit": self.note_commit, "valid": self.ok,
                                "failures": [f.to_json() for f in self.failures]}
        if self.signed:
            r = self.signed.receipt
            data.update(signer=r.signer, key=r.key_fingerprint, verdict=r.verdict,
                        counts=r.counts, mode=r.mode, started=r.started.isoformat(),
                        finished=r.finished.isoformat(), commit=r.commit, trees=r.trees,
                        gpus=r.gpus)
        return data


@dataclass
class CommitVerdict:
    commit: str
    state: str
    trees: Trees
    receipt: ReceiptVerdict | None = None
    reasons: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state in (VALIDATED, UNCHANGED)

    def to_json(self) -> dict[str, Any]:
        return {"commit": self.commit, "state": self.state, "valid": self.ok,
                "trees": self.trees,
                "receipt": self.receipt.to_json() if self.receipt else None,
                "reasons": [r.to_json() for r in self.reasons]}


class Verifier:
    """Verifies commits against one policy and one set of trust roots."""

    def __init__(self, repo: pygit2.Repository, policy: Policy, trust: "Trust | NoTrust",
                 notes: NotesStore | None = None) -> None:
        self.repo = repo
        self.policy = policy
        self.trust = trust
        self.notes = notes or NotesStore(repo)
        self._memo: dict[str, CommitVerdict] = {}

    def trees_of(self, commit: pygit2.Commit) -> Trees:
        return commit_trees(self.repo, commit, self.policy.fingerprint_paths)

    def receipts_on(self, commit: pygit2.Commit, trees: Trees | None = None) -> list[ReceiptVerdict]:
        """Every receipt in the commit's note, judged against ``trees``."""
        trees = trees if trees is not None else self.trees_of(commit)
        verdicts = []
        for entry in self.notes.entries(str(commit.id)):
            if entry.signed is None:
                verdicts.append(ReceiptVerdict(None, str(commit.id),
                                               [Failure("malformed", entry.error or "unreadable")]))
            else:
                verdicts.append(self.judge(entry.signed, trees, str(commit.id)))
        return verdicts

    def judge(self, signed: SignedReceipt, trees: Trees, location: str) -> ReceiptVerdict:
        """One receipt against one code state: signature, outcome, fingerprint."""
        checks: list[ReceiptCheck] = [self.trust, TestsPassed(),
                                      CoversTrees(self.repo, self.policy.fingerprint_paths, trees)]
        failures = [f for f in (c.failure(signed) for c in checks) if f]
        return ReceiptVerdict(signed, location, failures)

    def verify(self, commit: pygit2.Commit) -> CommitVerdict:
        key = str(commit.id)
        if key not in self._memo:
            self._memo[key] = self._verify(commit)
        return self._memo[key]

    def _verify(self, commit: pygit2.Commit) -> CommitVerdict:
        """Search the commit and its same-tree ancestors, nearest first, for a valid receipt."""
        trees = self.trees_of(commit)
        reasons: list[Failure] = []
        seen = {commit.id}
        queue = deque([commit])
        while queue:
            current = queue.popleft()
            known = self._memo.get(str(current.id)) if current.id != commit.id else None
            if known is not None:
                if known.ok:
                    return CommitVerdict(str(commit.id), UNCHANGED, trees, known.receipt)
                reasons += [r for r in known.reasons if r not in reasons]
                continue  # its own same-tree ancestors were searched already
            for verdict in self.receipts_on(current, trees):
                if verdict.ok:
                    state = VALIDATED if current.id == commit.id else UNCHANGED
                    return CommitVerdict(str(commit.id), state, trees, verdict)
                reasons += [_located(f, current) for f in verdict.failures]
            for parent in current.parents:
                if parent.id not in seen and self.trees_of(parent) == trees:
                    seen.add(parent.id)
                    queue.append(parent)
        if not reasons:
            reasons = [self._history_reason(commit, trees)]
        return CommitVerdict(str(commit.id), UNVALIDATED, trees, None, reasons)

    def _history_reason(self, commit: pygit2.Commit, trees: Trees) -> Failure:
        """Explain a missing receipt: name the nearest earlier one, if any."""
        annotated = self.notes.annotated_commits()
        if not annotated:
            return Failure("no-receipt", "no receipt" + self._shallow_hint())
        walker = self.repo.walk(commit.id, pygit2.enums.SortMode.TOPOLOGICAL)
        for count, ancestor in enumerate(walker):
            if count >= _HISTORY_LIMIT:
                break
            if str(ancestor.id) not in annotated:
                continue
            for verdict in self.receipts_on(ancestor, self.trees_of(ancestor)):
                if verdict.ok:
                    recorded = verdict.signed.receipt.trees
                    theirs = {p: recorded.get(p) for p in self.policy.fingerprint_paths}
                    changed = changed_fingerprint_paths(self.repo, theirs, trees)
                    short = str(ancestor.id)[:10]
                    return Failure("fingerprint-changed",
                                   f"GPU code changed since the receipt on {short}: "
                                   + ", ".join(changed[:10])
                                   + (f" (+{len(changed) - 10} more)" if len(changed) > 10 else ""))
        return Failure("no-receipt", "no receipt" + self._shallow_hint())

    def _shallow_hint(self) -> str:
        if not self.repo.is_shallow:
            return ""
        return (" (this clone is shallow: a receipt on an older commit with the same GPU code "
                "would not be found; fetch the full history, e.g. git fetch --unshallow)")


def _located(failure: Failure, commit: pygit2.Commit) -> Failure:
    return Failure(failure.code, f"receipt on {str(commit.id)[:10]}: {failure.message}")


class NoTrust:
    """Stands in for trust roots that could not be loaded: every signature fails, saying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.warnings = [f"receipts not verified: {reason}"]

    def failure(self, signed: SignedReceipt) -> Failure | None:
        return Failure("no-trust", f"signature not checked: {self.reason}")


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
        trust: Trust | NoTrust = load_trust(repo, policy, now, trust_rev)
    except TrustError as exc:
        if require_trust:
            raise
        trust = NoTrust(str(exc))
    return Verifier(repo, policy, trust)
