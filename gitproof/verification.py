"""Deciding whether a commit's GPU code is validated.

A receipt validates commit C when it is well formed, its signature checks
out against the allowed signers, its tests passed, and its fingerprint
trees equal C's trees at the policy's paths. It may sit on C or on any
ancestor reachable through commits with the same trees. Each check is a
small object that says why it failed.
"""
from __future__ import annotations

import os

import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

import pygit2

from gitproof.errors import GitproofError
from gitproof.allowed_signers import (AllowedSigners, AllowedSignersError, RevokedKeys, SignerDecision,
                                      match_pattern_list, verify_signed_payload)
from gitproof.fingerprint import Trees, changed_fingerprint_paths, commit_trees
from gitproof.notes import NotesStore
from gitproof.git import commit_time, lookup
from gitproof.policy import (ModeBinding, Policy, PolicyError, load_policy, node_ids_in, read_node_ids,
                             selects)
from gitproof.receipt import Receipt, SignedReceipt, check_outcome, printable, terminal_safe
from gitproof.signing import NAMESPACE

VALIDATED = "validated"
UNCHANGED = "unchanged"
UNVALIDATED = "unvalidated"
_HISTORY_LIMIT = 500
CLOCK_SKEW = timedelta(minutes=5)
# What must not reach a terminal from a signer's message (it quotes receipt text):
# C0 and C1 controls, DEL, and bidirectional overrides.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _percent_bytes(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group().encode("utf-8"))


class TrustError(GitproofError):
    """The trusted signer configuration is missing or unreadable."""


@dataclass(frozen=True)
class Failure:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# -- trust roots ------------------------------------------------------------------

class SignerSource(Protocol):
    """Where trusted keys come from: decides one signature for one principal."""

    @property
    def warnings(self) -> list[str]: ...

    def describe(self) -> str: ...

    def decide(self, payload: bytes, armored: str, principal: str,
               now: datetime) -> SignerDecision: ...


@dataclass
class AllowedSignersSource:
    """git's mechanism: an allowed_signers file plus an optional revocation list."""

    signers: AllowedSigners
    revoked: RevokedKeys | None = None

    @property
    def warnings(self) -> list[str]:
        """Lines of the trust files that were skipped, as ssh-keygen would skip them."""
        return [f"allowed_signers line skipped: {error}" for error in self.signers.errors]

    def describe(self) -> str:
        return f"{len(self.signers.signers)} signer(s) in {self.signers.source}"

    def decide(self, payload: bytes, armored: str, principal: str, now: datetime) -> SignerDecision:
        return verify_signed_payload(payload, armored, principal, self.signers, self.revoked,
                                     NAMESPACE, now)


class Trust:
    """A signer source, judged at one moment, with verdicts cached per receipt."""

    def __init__(self, source: SignerSource, now: datetime | None = None,
                 allow_unsigned: bool = False) -> None:
        self.source = source
        self.now = now or datetime.now(timezone.utc)
        self.allow_unsigned = allow_unsigned
        self._cache: dict[str, Failure | None] = {}

    @property
    def warnings(self) -> list[str]:
        return self.source.warnings

    def failure(self, signed: SignedReceipt) -> Failure | None:
        key = signed.identity
        if key not in self._cache:
            self._cache[key] = self._check(signed)
        return self._cache[key]

    def _check(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if signed.unsigned:
            if self.allow_unsigned:
                return None
            return Failure("unsigned", "receipt is unsigned (a dry run); "
                                       "accepted only with --allow-unsigned")
        decision = self.source.decide(signed.payload, signed.signature, receipt.signer, self.now)
        if not decision.allowed:  # the reason may quote the receipt's (unauthenticated) principal
            return Failure(decision.code, _CONTROL_CHARS.sub(_percent_bytes, decision.reason))
        if decision.fingerprint and decision.fingerprint != receipt.key_fingerprint:
            return Failure("bad-signature", f"receipt names key {printable(receipt.key_fingerprint)} "
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
    if trust_rev is None and repo.workdir is None:
        trust_rev = "HEAD"  # a bare repository: trust files come from its HEAD, like its policy
    try:
        revoked = _revoked_keys(repo, trust_rev)
        if policy.signer_source == "github":
            from gitproof.github_keys import github_source

            source: SignerSource = github_source(policy, revoked)
        elif trust_rev:
            source = AllowedSignersSource(_trusted_signers(repo, policy, trust_rev), revoked)
        else:
            source = AllowedSignersSource(AllowedSigners.from_file(_signers_path(repo, policy)), revoked)
    except (AllowedSignersError, OSError) as exc:
        raise TrustError(str(exc)) from exc
    return Trust(source, now, policy.allow_unsigned)


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
        state = "is not a regular file" if os.path.lexists(path) else "does not exist"
        raise TrustError(f"allowed signers file {path} (from {origin}) {state}")
    return path


def _revoked_keys(repo: pygit2.Repository, trust_rev: str | None) -> RevokedKeys | None:
    """gpg.ssh.revocationFile; under a trusted revision a relative path is read from it."""
    try:
        configured = repo.config["gpg.ssh.revocationFile"]
    except KeyError:
        return None
    path = Path(configured).expanduser()
    if trust_rev and not path.is_absolute():
        blob = _blob_at(repo, trust_rev, path.as_posix(), "revocation file")
        return RevokedKeys.from_bytes(blob.data, f"{trust_rev}:{path.as_posix()}")
    return RevokedKeys.from_file(_config_path(repo, "gpg.ssh.revocationFile"))


def _blob_at(repo: pygit2.Repository, rev: str, path: str, what: str) -> pygit2.Blob:
    try:
        obj = repo.revparse_single(rev).peel(pygit2.Commit).tree[path]
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise TrustError(f"{what} {path} does not exist at trusted revision {rev}") from exc
    if not isinstance(obj, pygit2.Blob):
        raise TrustError(f"{what} {rev}:{path} is not a file")
    return obj


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
    blob = _blob_at(repo, rev, path, "allowed signers file")
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
            return Failure("tests-failed", f"{len(failing)} test(s) failed: " + _listing(failing, 5))
        if not any(t.outcome == "passed" for t in receipt.tests):
            return Failure("tests-failed", "no test passed (all skipped or xfailed)")
        return Failure("tests-failed", f"pytest exited with status {receipt.exit_status}")


class ChecksPassed:
    """Every ``gpu_proof_check`` in the receipt passed (an older record's ``ok: false`` is failed).

    A test can catch a check's failure and pass: the check line still says so.
    Checks of a test recorded ``xfailed`` are exempt: it was expected to fail.
    Like :class:`TestsPassed`, every check of the receipt counts, whatever the scope.
    """

    SHOWN = 3

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        xfailed = {t.nodeid for t in receipt.tests if t.outcome == "xfailed"}
        unpassed = [c for c in receipt.checks if check_outcome(c) != "passed" and c["test"] not in xfailed]
        if not unpassed:
            return None
        shown = "; ".join(_why_check(c) for c in unpassed[:self.SHOWN])
        more = f" (+{len(unpassed) - self.SHOWN} more)" if len(unpassed) > self.SHOWN else ""
        return Failure("check-failed", f"{len(unpassed)} gpu_proof_check(s) did not pass: {shown}{more}")


def _why_check(check: dict[str, Any]) -> str:
    message = " ".join(str(check.get("message", "")).split())  # an assert_allclose report, on one line
    if len(message) > 200:
        message = message[:200] + "..."
    detail = f": {terminal_safe(message)}" if message else ""  # one line now; % stays as it is
    return f"{printable(check['test'])} check '{printable(check['name'])}' {check_outcome(check)}{detail}"


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
                       "code differs from the receipt's: " + _listing(changed))


@dataclass
class InScope:
    """A shard's receipt counts for that shard only; an unsharded one only without shards."""

    shard: str | None

    def failure(self, signed: SignedReceipt) -> Failure | None:
        theirs = signed.receipt.shard
        if theirs == self.shard:
            return None
        if self.shard is None:
            return Failure("wrong-shard", f"receipt covers shard {theirs!r}, but the policy defines no shards")
        return Failure("wrong-shard", f"receipt covers {f'shard {theirs!r}' if theirs else 'no shard'}, "
                                      f"not shard {self.shard!r}")


@dataclass
class SkipsAllowed:
    """Skipped tests prove nothing: none allowed, any allowed, or exactly a baseline."""

    allow_skipped: bool
    expected: list[str] | None
    partial: bool  # a shard's receipt: baseline entries outside it are not its business

    def failure(self, signed: SignedReceipt) -> Failure | None:
        outcomes = {t.nodeid: t.outcome for t in signed.receipt.tests}
        skipped = sorted(n for n, o in outcomes.items() if o == "skipped")
        if self.allow_skipped:
            return None
        if self.expected is None:
            if not skipped:
                return None
            return Failure("skipped-tests", f"{len(skipped)} selected test(s) skipped: {_listing(skipped)} "
                                            "(list expected skips in expected_skips, or pass --allow-skipped)")
        new = [n for n in skipped if n not in self.expected]
        if new:
            return Failure("unexpected-skip", f"skipped but not in the expected skips: {_listing(new)}")
        stale = [n for n in self.expected
                 if outcomes.get(n, None if self.partial else "missing") not in (None, "skipped")]
        if stale:
            return Failure("stale-skip-baseline", f"expected to skip but did not: {_listing(stale)} "
                                                  "(remove them from the expected skips)")
        return None

    def warning(self, signed: SignedReceipt) -> str | None:
        skipped = [t.nodeid for t in signed.receipt.tests if t.outcome == "skipped"]
        if self.allow_skipped and skipped:
            return f"accepted {len(skipped)} skipped test(s) because skips are allowed: {_listing(skipped)}"
        return None


@dataclass
class RunsRequiredTests:
    """The receipt's test set is exactly the manifest (the part of it in this shard)."""

    required: list[str]

    def failure(self, signed: SignedReceipt) -> Failure | None:
        ran = {t.nodeid for t in signed.receipt.tests}
        wanted = set(self.required)
        missing, extra = sorted(wanted - ran), sorted(ran - wanted)
        if not missing and not extra:
            return None
        parts = []
        if missing:
            parts.append(f"{len(missing)} required test(s) not in the run: {_listing(missing)}")
        if extra:
            parts.append(f"{len(extra)} test(s) not in the required manifest: {_listing(extra)}")
        return Failure("required-tests", "; ".join(parts))


@dataclass
class Fresh:
    """Not too old, not from the future, not from before its commit existed."""

    repo: pygit2.Repository
    now: datetime
    max_age_days: int

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if receipt.finished > self.now + CLOCK_SKEW or receipt.started > self.now + CLOCK_SKEW:
            return Failure("future-receipt", f"receipt is dated {receipt.started.isoformat()}, in the future")
        if self.max_age_days == 0 and receipt.finished.date() != self.now.date():
            return Failure("too-old", f"receipt is from {receipt.finished.date()}; max_age_days = 0 "
                                      "accepts only receipts from today (UTC)")
        age = self.now - receipt.finished
        if self.max_age_days and age > timedelta(days=self.max_age_days):
            return Failure("too-old", f"receipt is {age.days} days old (max_age_days = {self.max_age_days})")
        commit = lookup(self.repo, receipt.commit)
        made = commit_time(commit) if isinstance(commit, pygit2.Commit) else None
        if made is not None:
            if receipt.started < made - CLOCK_SKEW:
                return Failure("before-commit", f"the run started {receipt.started.isoformat()}, before "
                                                f"its commit {receipt.commit[:10]} was made ({made.isoformat()})")
        return None


@dataclass
class SignerNarrowed:
    """The policy may narrow the trusted signers: principal patterns and/or key fingerprints."""

    signers: list[str] | None
    key_fingerprints: list[str] | None

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if self.signers and not match_pattern_list(receipt.signer, ",".join(self.signers)):
            return Failure("signer-not-allowed", f"signer {printable(receipt.signer)!r} is not in the policy's signers")
        if self.key_fingerprints and receipt.key_fingerprint not in self.key_fingerprints:
            return Failure("signer-not-allowed", f"key {printable(receipt.key_fingerprint)} is not in the policy's "
                                                 "key_fingerprints")
        return None


@dataclass
class ModeAllowed:
    """``[tool.gpu_proof.modes.<mode>]``: only the bound signers or keys may claim that mode."""

    modes: dict[str, ModeBinding]

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        binding = self.modes.get(receipt.mode)
        if binding is None:
            return None
        if binding.signers and not match_pattern_list(receipt.signer, ",".join(binding.signers)):
            return Failure("mode-not-allowed", f"signer {printable(receipt.signer)!r} may not claim mode "
                                               f"{receipt.mode} (modes.{receipt.mode}.signers)")
        if binding.key_fingerprints and receipt.key_fingerprint not in binding.key_fingerprints:
            return Failure("mode-not-allowed", f"key {printable(receipt.key_fingerprint)} may not claim mode "
                                               f"{receipt.mode} (modes.{receipt.mode}.key_fingerprints)")
        return None


@dataclass
class RunConditions:
    """Mode, GPU presence and cleanliness the policy demands."""

    require_mode: str | None
    require_gpu: bool
    require_clean: bool

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if self.require_mode and receipt.mode != self.require_mode:
            return Failure("wrong-mode", f"receipt mode is {receipt.mode}; the policy requires {self.require_mode}")
        if self.require_gpu and not receipt.gpus:
            return Failure("no-gpu", "receipt lists no GPU device; the policy requires one")
        if self.require_gpu and all(gpu.get("visible") is False for gpu in receipt.gpus):
            return Failure("no-gpu", "no GPU was visible to the tests (CUDA_VISIBLE_DEVICES="
                                     f"{_visible_setting(receipt)}); the policy requires one")
        if self.require_clean and receipt.dirty_outside:
            return Failure("dirty", "the run had uncommitted changes outside the fingerprint paths; "
                                    "the policy requires a clean checkout")
        return None


def _visible_setting(receipt: Receipt) -> str:
    value = (receipt.gpu_facts or {}).get("cuda_visible_devices")
    return "unset" if value is None else printable(repr(value) if isinstance(value, str) else str(value))


class GpuUsed:
    """``require_gpu_use``: every test that passed shows evidence that it used a GPU.

    The evidence is what the test process observed about itself (framework
    allocation counters, CUDA contexts), signed by the runner: it shows that a
    test touched the GPU, not that its assertions were computed there.
    Unknown evidence does not count as use.
    """

    SHOWN = 5

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        uses = {use["test"]: use for use in receipt.gpu_use}
        if not uses:
            return Failure("gpu-not-used", "receipt records no per-test GPU use (made by a gitproof "
                                           "without GPU-use evidence); the policy requires it")
        if not any(gpu.get("visible") is not False for gpu in receipt.gpus):
            return Failure("gpu-not-used", "the receipt lists no GPU visible to the tests, so no "
                                           "test can have used one")
        missing = [(t.nodeid, uses.get(t.nodeid)) for t in receipt.tests
                   if t.outcome in ("passed", "xpassed") and (uses.get(t.nodeid) or {}).get("used") is not True]
        if not missing:
            return None
        shown = "; ".join(_why_not_used(nodeid, use) for nodeid, use in missing[:self.SHOWN])
        more = f" (+{len(missing) - self.SHOWN} more)" if len(missing) > self.SHOWN else ""
        return Failure("gpu-not-used", f"{len(missing)} passing test(s) show no GPU use: {shown}{more}")


class GpuKernelsRan:
    """``require_gpu_kernels``: every test that passed launched a GPU kernel in its body.

    Stronger than :class:`GpuUsed`: putting data on a GPU and computing on
    the CPU passes that one, not this one. The evidence is CUPTI's record of
    the kernels the GPU ran, as the test process read it (a receipt made
    with ``--gpu-proof-kernels``), signed by the runner: it shows that the
    GPU ran kernels during the test, not which results they produced.
    """

    SHOWN = 5

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if not any(gpu.get("visible") is not False for gpu in receipt.gpus):
            return Failure("gpu-no-kernels", "the receipt lists no GPU visible to the tests, so no "
                                             "test can have launched a kernel")
        uses = {use["test"]: use for use in receipt.gpu_use}
        missing = [(t.nodeid, uses.get(t.nodeid)) for t in receipt.tests
                   if t.outcome in ("passed", "xpassed") and _launches(uses.get(t.nodeid)) < 1]
        if not missing:
            return None
        shown = "; ".join(_why_no_kernels(nodeid, use) for nodeid, use in missing[:self.SHOWN])
        more = f" (+{len(missing) - self.SHOWN} more)" if len(missing) > self.SHOWN else ""
        return Failure("gpu-no-kernels", f"{len(missing)} passing test(s) launched no GPU kernel: "
                                         f"{shown}{more}")


def _launches(use: dict[str, Any] | None) -> int:
    """Kernel launches a record vouches for: none unless traced and consistent (used: true)."""
    kernels = (use or {}).get("kernels")
    if not isinstance(kernels, dict) or not isinstance(kernels.get("tracer"), str) or use.get("used") is not True:
        return 0
    launches = kernels.get("launches")
    return launches if isinstance(launches, int) and not isinstance(launches, bool) else 0


def _why_no_kernels(nodeid: str, use: dict[str, Any] | None) -> str:
    kernels = (use or {}).get("kernels")
    if not isinstance(kernels, dict):
        return f"{printable(nodeid)} (kernels not traced: record with --gpu-proof-kernels)"
    if kernels.get("tracer") is None:
        error = kernels.get("error")
        detail = f": {printable(error)}" if isinstance(error, str) and error else ""
        return f"{printable(nodeid)} (kernels not traced{detail})"
    if kernels.get("launches") and use.get("used") is not True:
        return f"{printable(nodeid)} (kernels recorded, but the record says used: {use.get('used')})"
    copies = (kernels.get("memcpy") or {}).get("count") or 0
    extra = f", {copies} copies" if copies else ""
    return f"{printable(nodeid)} (0 kernels{extra})"


def _why_not_used(nodeid: str, use: dict[str, Any] | None) -> str:
    if use is None:
        return f"{printable(nodeid)} (no gpu-use record)"
    state = "unknown" if use.get("used") is None else "not used"
    evidence = use.get("evidence")
    detail = f": {printable(evidence)}" if isinstance(evidence, str) and evidence else ""
    return f"{printable(nodeid)} ({state}{detail})"


def _listing(items: list[str], limit: int = 10) -> str:
    """A short list for a message; receipt text is escaped, since it is unauthenticated."""
    shown = ", ".join(printable(item) for item in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


# -- verdicts -------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptVerdict:
    signed: SignedReceipt | None
    note_commit: str
    failures: list[Failure]
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"note_commit": self.note_commit, "valid": self.ok,
                                "failures": [f.to_json() for f in self.failures],
                                "warnings": list(self.warnings)}
        if self.signed:
            r = self.signed.receipt
            data.update(signer=r.signer, key=r.key_fingerprint, verdict=r.verdict,
                        counts=r.counts, mode=r.mode, started=r.started.isoformat(),
                        finished=r.finished.isoformat(), commit=r.commit, trees=r.trees,
                        gpus=r.gpus, gpu_facts=r.gpu_facts, gpu_use=r.gpu_use,
                        checks=[check_json(c) for c in r.checks],
                        shard=r.shard, unsigned=self.signed.unsigned)
        return data


def check_json(check: dict[str, Any]) -> dict[str, Any]:
    """One check record with every field present: an older record gets its outcome from ``ok``,
    and what it lacks is null (``message`` empty, ``metadata`` {})."""
    return {"test": check["test"], "name": check["name"], "outcome": check_outcome(check),
            "message": check.get("message", ""), "max_abs_err": check.get("max_abs_err"),
            "max_rel_err": check.get("max_rel_err"), "rtol": check.get("rtol"), "atol": check.get("atol"),
            "metadata": check.get("metadata", {})}


@dataclass
class CommitVerdict:
    commit: str
    state: str
    trees: Trees
    receipt: ReceiptVerdict | None = None
    reasons: list[Failure] = field(default_factory=list)
    shards: dict[str, "CommitVerdict"] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in (VALIDATED, UNCHANGED)

    def to_json(self) -> dict[str, Any]:
        data = {"commit": self.commit, "state": self.state, "valid": self.ok,
                "trees": self.trees,
                "receipt": self.receipt.to_json() if self.receipt else None,
                "reasons": [r.to_json() for r in self.reasons]}
        if self.shards:
            data["shards"] = {name: v.to_json() for name, v in self.shards.items()}
        return data


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

    def __init__(self, repo: pygit2.Repository, policy: Policy, trust: "Trust | NoTrust",
                 notes: NotesStore | None = None, required_tests: list[str] | None = None) -> None:
        self.repo = repo
        self.policy = policy
        self.trust = trust
        self.notes = notes or NotesStore(repo)
        self.required_tests = required_tests
        self.now = getattr(trust, "now", None) or datetime.now(timezone.utc)
        self.scopes = _scopes(policy)
        self.all_paths = sorted({p for scope in self.scopes for p in scope.paths})
        self._memo: dict[tuple[str, str | None], CommitVerdict] = {}

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
                                               [Failure(entry.code, entry.error or "unreadable")]))
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
            self.trust, InScope(scope.shard), TestsPassed(), ChecksPassed(),
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
        warnings = [w for w in (getattr(c, "warning", _no_warning)(signed) for c in checks) if w]
        if signed.unsigned and not failures:
            warnings.append("UNSIGNED receipt accepted (--allow-unsigned): nobody vouches for this run")
        return ReceiptVerdict(signed, location, failures, warnings)

    def verify(self, commit: pygit2.Commit) -> CommitVerdict:
        """Validated when every scope (the whole fingerprint, or each required shard) is."""
        if self.scopes[0].shard is None:
            return self._verify_scope(commit, self.scopes[0])
        parts = {scope.shard: self._verify_scope(commit, scope) for scope in self.scopes}
        return _combine(str(commit.id), self.trees_of(commit), parts)

    def _verify_scope(self, commit: pygit2.Commit, scope: Scope) -> CommitVerdict:
        key = (str(commit.id), scope.shard)
        if key not in self._memo:
            self._memo[key] = self._search(commit, scope)
        return self._memo[key]

    def _search(self, commit: pygit2.Commit, scope: Scope) -> CommitVerdict:
        """Search the commit and its same-tree ancestors, nearest first, for a valid receipt."""
        trees = self.trees_of(commit, scope)
        reasons: list[Failure] = []
        seen = {commit.id}
        queue = deque([commit])
        while queue:
            current = queue.popleft()
            known = self._memo.get((str(current.id), scope.shard)) if current.id != commit.id else None
            if known is not None:
                if known.ok:
                    return CommitVerdict(str(commit.id), UNCHANGED, trees, known.receipt)
                reasons += [r for r in known.reasons if r not in reasons]
                continue  # its own same-tree ancestors were searched already
            for verdict in self._scoped_receipts(current, trees, scope):
                if verdict.ok:
                    state = VALIDATED if current.id == commit.id else UNCHANGED
                    return CommitVerdict(str(commit.id), state, trees, verdict)
                reasons += [_located(f, current) for f in verdict.failures]
            for parent in current.parents:
                if parent.id not in seen and self.trees_of(parent, scope) == trees:
                    seen.add(parent.id)
                    queue.append(parent)
        if not reasons:
            reasons = [self._history_reason(commit, trees, scope)]
        return CommitVerdict(str(commit.id), UNVALIDATED, trees, None, reasons)

    def _scoped_receipts(self, commit: pygit2.Commit, trees: Trees, scope: Scope) -> list[ReceiptVerdict]:
        verdicts = []
        for entry in self.notes.entries(str(commit.id)):
            if entry.signed is None:
                verdicts.append(ReceiptVerdict(None, str(commit.id),
                                               [Failure(entry.code, entry.error or "unreadable")]))
            elif entry.signed.receipt.shard == scope.shard:
                verdicts.append(self.judge(entry.signed, trees, str(commit.id), scope))
        return verdicts

    def _history_reason(self, commit: pygit2.Commit, trees: Trees, scope: Scope) -> Failure:
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
            for verdict in self._scoped_receipts(ancestor, self.trees_of(ancestor, scope), scope):
                if verdict.ok:
                    recorded = verdict.signed.receipt.trees
                    theirs = {p: recorded.get(p) for p in scope.paths}
                    changed = changed_fingerprint_paths(self.repo, theirs, trees)
                    return Failure("fingerprint-changed",
                                   f"GPU code changed since the receipt on {str(ancestor.id)[:10]}: "
                                   + _listing(changed))
        return Failure("no-receipt", "no receipt" + self._shallow_hint())

    def _shallow_hint(self) -> str:
        if not self.repo.is_shallow:
            return ""
        return (" (this clone is shallow: a receipt on an older commit with the same GPU code "
                "would not be found; fetch the full history, e.g. git fetch --unshallow)")


def _no_warning(signed: SignedReceipt) -> None:
    return None


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
    newest = max((v.receipt for v in named.values() if v.receipt and v.receipt.signed),
                 key=lambda r: r.signed.receipt.finished, default=None)
    return CommitVerdict(commit, state, trees, newest, reasons, named)


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
    required = _required_tests(repo, policy, trust_rev) if policy.required_tests else None
    return Verifier(repo, policy, trust, required_tests=required)


def _required_tests(repo: pygit2.Repository, policy: Policy, trust_rev: str | None) -> list[str]:
    """The required-tests manifest, read from the same place as the policy."""
    path = policy.required_tests
    if trust_rev or repo.workdir is None:
        try:
            blob = _blob_at(repo, trust_rev or "HEAD", path, "required_tests manifest")
        except TrustError as exc:
            raise PolicyError(str(exc)) from exc
        return node_ids_in(blob.data.decode("utf-8", errors="replace"))
    manifest = Path(repo.workdir) / path
    if not manifest.is_file():
        raise PolicyError(f"required_tests manifest {manifest} does not exist")
    return read_node_ids(manifest)
