"""The policy's rules, one small class per check of one receipt.

Each check's ``failure`` says why the receipt fails it (or None); ``warning``
says what it accepted that the reader should know. The `Verifier` runs every
check on every receipt, so a rejected receipt lists every reason at once. The
checks of the GPU evidence are in gitproof.verify.gpu_checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter

import pygit2

from gitproof.fingerprint import Trees, changed_fingerprint_paths
from gitproof.git import commit_time, lookup
from gitproof.policy import ModeBinding
from gitproof.receipt import CheckRecord, Receipt, SignedReceipt
from gitproof.text import printable, terminal_safe
from gitproof.trust import Trust, match_pattern_list
from gitproof.verify.codes import Code
from gitproof.verify.verdicts import Failure

CLOCK_SKEW = timedelta(minutes=5)
_outcome_of = attrgetter("outcome")


class ReceiptCheck:
    """One rule for one receipt."""

    def failure(self, signed: SignedReceipt) -> Failure | None:
        """Why the receipt fails this check, or None."""
        raise NotImplementedError

    def warning(self, signed: SignedReceipt) -> str | None:
        """What the check accepted that deserves a warning, or None."""
        return None


@dataclass
class SignatureTrusted(ReceiptCheck):
    """Signed by a key the trust roots admit for the receipt's signer (decided by gitproof.trust)."""

    trust: Trust

    def failure(self, signed: SignedReceipt) -> Failure | None:
        refusal = self.trust.refusal(signed)
        return None if refusal is None else Failure(Code(refusal.code), refusal.message)


class TestsPassed(ReceiptCheck):
    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if receipt.verdict == "passed":
            return None
        failing = [t.nodeid for t in receipt.tests if t.failing]
        if failing:
            return Failure(Code.TESTS_FAILED, f"{len(failing)} test(s) failed: " + listing(failing, 5))
        if not any(t.outcome == "passed" for t in receipt.tests):
            return Failure(Code.TESTS_FAILED, "no test passed (all skipped or xfailed)")
        return Failure(Code.TESTS_FAILED, f"pytest exited with status {receipt.exit_status}")


class ChecksPassed(ReceiptCheck):
    """Every ``gpu_proof_check`` in the receipt passed (an older record's ``ok: false`` is failed).

    A test can catch a check's failure and pass: the check line still says so.
    Checks of a test recorded ``xfailed`` are exempt: it was expected to fail.
    Like :class:`TestsPassed`, every check of the receipt counts, whatever the scope.
    """

    SHOWN = 3

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if not receipt.checks:
            return None
        xfailed = {t.nodeid for t in receipt.tests if t.outcome == "xfailed"}
        unpassed = [c for c in receipt.check_records if not c.passed and c.test not in xfailed]
        if not unpassed:
            return None
        shown = "; ".join(_why_check(c) for c in unpassed[:self.SHOWN])
        more = f" (+{len(unpassed) - self.SHOWN} more)" if len(unpassed) > self.SHOWN else ""
        return Failure(Code.CHECK_FAILED, f"{len(unpassed)} gpu_proof_check(s) did not pass: {shown}{more}")


def _why_check(check: CheckRecord) -> str:
    message = " ".join(check.message.split())  # an assert_allclose report, on one line
    if len(message) > 200:
        message = message[:200] + "..."
    detail = f": {terminal_safe(message)}" if message else ""  # one line now; % stays as it is
    return f"{printable(check.test)} check '{printable(check.name)}' {check.outcome}{detail}"


@dataclass
class CoversTrees(ReceiptCheck):
    """The receipt describes exactly this code at every fingerprint path."""

    repo: pygit2.Repository
    paths: list[str]
    trees: Trees

    def failure(self, signed: SignedReceipt) -> Failure | None:
        recorded = signed.receipt.trees
        missing = [p for p in self.paths if p not in recorded]
        if missing:
            return Failure(Code.PATHS_NOT_COVERED,
                           "receipt does not fingerprint " + ", ".join(missing))
        theirs = {p: recorded[p] for p in self.paths}
        if theirs == self.trees:
            return None
        changed = changed_fingerprint_paths(self.repo, theirs, self.trees)
        return Failure(Code.FINGERPRINT_CHANGED,
                       "code differs from the receipt's: " + listing(changed))


@dataclass
class InScope(ReceiptCheck):
    """A shard's receipt counts for that shard only; an unsharded one only without shards."""

    shard: str | None

    def failure(self, signed: SignedReceipt) -> Failure | None:
        theirs = signed.receipt.shard
        if theirs == self.shard:
            return None
        if self.shard is None:
            return Failure(Code.WRONG_SHARD, f"receipt covers shard {theirs!r}, but the policy defines no shards")
        return Failure(Code.WRONG_SHARD, f"receipt covers {f'shard {theirs!r}' if theirs else 'no shard'}, "
                                         f"not shard {self.shard!r}")


@dataclass
class SkipsAllowed(ReceiptCheck):
    """Skipped tests prove nothing: none allowed, any allowed, or exactly a baseline."""

    allow_skipped: bool
    expected: list[str] | None
    partial: bool  # a shard's receipt: baseline entries outside it are not its business

    def failure(self, signed: SignedReceipt) -> Failure | None:
        tests = signed.receipt.tests
        if self.allow_skipped or (self.expected is None and "skipped" not in map(_outcome_of, tests)):
            return None
        outcomes = {t.nodeid: t.outcome for t in tests}
        skipped = sorted(n for n, o in outcomes.items() if o == "skipped")
        if self.expected is None:
            if not skipped:
                return None
            return Failure(Code.SKIPPED_TESTS, f"{len(skipped)} selected test(s) skipped: {listing(skipped)} "
                                               "(list expected skips in expected_skips, or pass --allow-skipped)")
        new = [n for n in skipped if n not in self.expected]
        if new:
            return Failure(Code.UNEXPECTED_SKIP, f"skipped but not in the expected skips: {listing(new)}")
        stale = [n for n in self.expected
                 if outcomes.get(n, None if self.partial else "missing") not in (None, "skipped")]
        if stale:
            return Failure(Code.STALE_SKIP_BASELINE, f"expected to skip but did not: {listing(stale)} "
                                                     "(remove them from the expected skips)")
        return None

    def warning(self, signed: SignedReceipt) -> str | None:
        if not self.allow_skipped:
            return None
        skipped = [t.nodeid for t in signed.receipt.tests if t.outcome == "skipped"]
        if skipped:
            return f"accepted {len(skipped)} skipped test(s) because skips are allowed: {listing(skipped)}"
        return None


@dataclass
class RunsRequiredTests(ReceiptCheck):
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
            parts.append(f"{len(missing)} required test(s) not in the run: {listing(missing)}")
        if extra:
            parts.append(f"{len(extra)} test(s) not in the required manifest: {listing(extra)}")
        return Failure(Code.REQUIRED_TESTS, "; ".join(parts))


@dataclass
class Fresh(ReceiptCheck):
    """Not too old, not from the future, not from before its commit existed."""

    repo: pygit2.Repository
    now: datetime
    max_age_days: int

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if receipt.finished > self.now + CLOCK_SKEW or receipt.started > self.now + CLOCK_SKEW:
            return Failure(Code.FUTURE_RECEIPT, f"receipt is dated {receipt.started.isoformat()}, in the future")
        if self.max_age_days == 0 and receipt.finished.date() != self.now.date():
            return Failure(Code.TOO_OLD, f"receipt is from {receipt.finished.date()}; max_age_days = 0 "
                                         "accepts only receipts from today (UTC)")
        age = self.now - receipt.finished
        if self.max_age_days and age > timedelta(days=self.max_age_days):
            return Failure(Code.TOO_OLD, f"receipt is {age.days} days old (max_age_days = {self.max_age_days})")
        commit = lookup(self.repo, receipt.commit)
        made = commit_time(commit) if isinstance(commit, pygit2.Commit) else None
        if made is not None:
            if receipt.started < made - CLOCK_SKEW:
                return Failure(Code.BEFORE_COMMIT, f"the run started {receipt.started.isoformat()}, before "
                                                   f"its commit {receipt.commit[:10]} was made ({made.isoformat()})")
        return None


@dataclass
class SignerNarrowed(ReceiptCheck):
    """The policy may narrow the trusted signers: principal patterns and/or key fingerprints."""

    signers: list[str] | None
    key_fingerprints: list[str] | None

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if self.signers and not match_pattern_list(receipt.signer, ",".join(self.signers)):
            return Failure(Code.SIGNER_NOT_ALLOWED,
                           f"signer {printable(receipt.signer)!r} is not in the policy's signers")
        if self.key_fingerprints and receipt.key_fingerprint not in self.key_fingerprints:
            return Failure(Code.SIGNER_NOT_ALLOWED, f"key {printable(receipt.key_fingerprint)} is not in the policy's "
                                                    "key_fingerprints")
        return None


@dataclass
class ModeAllowed(ReceiptCheck):
    """``[tool.gpu_proof.modes.<mode>]``: only the bound signers or keys may claim that mode."""

    modes: dict[str, ModeBinding]

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        binding = self.modes.get(receipt.mode)
        if binding is None:
            return None
        if binding.signers and not match_pattern_list(receipt.signer, ",".join(binding.signers)):
            return Failure(Code.MODE_NOT_ALLOWED, f"signer {printable(receipt.signer)!r} may not claim mode "
                                                  f"{receipt.mode} (modes.{receipt.mode}.signers)")
        if binding.key_fingerprints and receipt.key_fingerprint not in binding.key_fingerprints:
            return Failure(Code.MODE_NOT_ALLOWED, f"key {printable(receipt.key_fingerprint)} may not claim mode "
                                                  f"{receipt.mode} (modes.{receipt.mode}.key_fingerprints)")
        return None


@dataclass
class RunConditions(ReceiptCheck):
    """Mode, GPU presence and cleanliness the policy demands."""

    require_mode: str | None
    require_gpu: bool
    require_clean: bool

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if self.require_mode and receipt.mode != self.require_mode:
            return Failure(Code.WRONG_MODE, f"receipt mode is {receipt.mode}; the policy requires {self.require_mode}")
        if self.require_gpu and not receipt.gpus:
            return Failure(Code.NO_GPU, "receipt lists no GPU device; the policy requires one")
        if self.require_gpu and all(device.visible is False for device in receipt.device_records):
            return Failure(Code.NO_GPU, "no GPU was visible to the tests (CUDA_VISIBLE_DEVICES="
                                        f"{_visible_setting(receipt)}); the policy requires one")
        if self.require_clean and receipt.dirty_outside:
            return Failure(Code.DIRTY, "the run had uncommitted changes outside the fingerprint paths; "
                                       "the policy requires a clean checkout")
        return None


def _visible_setting(receipt: Receipt) -> str:
    facts = receipt.facts_record
    value = facts.cuda_visible_devices if facts is not None else None
    return "unset" if value is None else printable(repr(value))


def listing(items: list[str], limit: int = 10) -> str:
    """A short list for a message; receipt text is escaped, since it is unauthenticated."""
    shown = ", ".join(printable(item) for item in items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")
