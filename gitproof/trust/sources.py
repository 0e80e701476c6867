"""Where trusted keys come from, and the `Trust` that judges receipts' signatures with them.

A `SignerSource` decides one signature for one principal. There are three:

* `AllowedSignersSource`: git's mechanism, an allowed_signers file and an optional
  revocation list (`verify_signed_payload` is its whole decision);
* `GitHubSource` (gitproof.trust.github): the keys a GitHub server publishes for
  the signer's username;
* `RefuseAll`: stands in for trust roots that could not be loaded, refusing every receipt.

Which source a repository uses, and where its files are read, is gitproof.trust.locate's job.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from gitproof.receipt import SignedReceipt
from gitproof.text import one_line_safe, printable
from gitproof.trust.allowed_signers import AllowedSigners, SignerDecision
from gitproof.trust.keys import SignatureError, UnsupportedKeyType
from gitproof.trust.revocation import RevokedKeys
from gitproof.trust.sshsig import NAMESPACE, SshSignature, parse_signature, verify_signature, verify_with_ssh_keygen

class SignerSource(Protocol):
    """Where trusted keys come from: decides one signature for one principal."""

    @property
    def warnings(self) -> list[str]: ...

    def describe(self) -> str: ...

    def decide(self, payload: bytes, armored: str, principal: str,
               now: datetime) -> SignerDecision: ...


# -- allowed_signers ------------------------------------------------------------------

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


def verify_signed_payload(payload: bytes, armored: str, principal: str, signers: AllowedSigners,
                          revoked: RevokedKeys | None = None, namespace: str = "gpu-proof",
                          now: datetime | None = None) -> SignerDecision:
    """Parse, verify, check revocation and trust; never raises on bad input."""
    try:
        sig = parse_signature(armored)
    except SignatureError as exc:
        return SignerDecision(False, str(exc), "", "bad-signature")
    fingerprint = sig.fingerprint
    if revoked is not None and revoked.is_krl:
        return _ssh_keygen_decision(payload, sig, principal, signers, revoked, namespace, now)
    try:
        verify_signature(sig, payload, namespace)
    except UnsupportedKeyType:
        return _ssh_keygen_decision(payload, sig, principal, signers, revoked, namespace, now)
    except SignatureError as exc:
        return SignerDecision(False, str(exc), fingerprint, "bad-signature")
    revocation = revoked.revocation_reason(sig) if revoked is not None else None
    if revocation is not None:
        return SignerDecision(False, revocation, fingerprint, "key-revoked")
    return signers.check(sig, principal, namespace, now)


def _ssh_keygen_decision(payload: bytes, sig: SshSignature, principal: str, signers: AllowedSigners,
                         revoked: RevokedKeys | None, namespace: str,
                         now: datetime | None) -> SignerDecision:
    with tempfile.TemporaryDirectory(prefix="gitproof-allowed-") as tmp:
        allowed_path = Path(tmp) / "allowed_signers"
        allowed_path.write_text(signers.text, encoding="utf-8", errors="surrogateescape")
        revocation_path = None
        if revoked is not None:
            revocation_path = revoked.path or Path(tmp) / "revoked"
            if revoked.path is None:
                revocation_path.write_text(revoked.text())
        ok, output = verify_with_ssh_keygen(payload, sig.armored, principal, allowed_path, namespace,
                                            revocation_path, verify_time=now)
    lines = [line for line in output.splitlines() if line.strip()]
    summary = lines[-1] if ok and lines else "; ".join(lines) or "no output"
    prefix = "verified by ssh-keygen" if ok else "ssh-keygen rejected the signature"
    return SignerDecision(ok, f"{prefix}: {summary}", sig.fingerprint, _ssh_keygen_code(ok, output))


def _ssh_keygen_code(ok: bool, output: str) -> str:
    if ok:
        return "ok"
    lowered = output.lower()
    if "revoked" in lowered:
        return "key-revoked"
    if "verification failed" in lowered or "incorrect signature" in lowered or "couldn't verify" in lowered:
        return "bad-signature"
    return "signer-not-allowed"


# -- no trust roots -------------------------------------------------------------------

class RefuseAll:
    """Stands in for trust roots that could not be loaded: every receipt, signed or not, is
    refused (code ``no-trust``), saying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def refusal(self) -> str:
        return f"signature not checked: {self.reason}"

    @property
    def warnings(self) -> list[str]:
        return [f"receipts not verified: {self.reason}"]

    def describe(self) -> str:
        return f"no trusted signers ({self.reason})"

    def decide(self, payload: bytes, armored: str, principal: str, now: datetime) -> SignerDecision:
        return SignerDecision(False, self.refusal, "", "no-trust")


# -- judging receipts -----------------------------------------------------------------

@dataclass(frozen=True)
class Refusal:
    """Why a receipt's signature does not count: a failure code, and a message safe to print."""

    code: str
    message: str


class Trust:
    """A signer source, judged at one moment, with refusals cached per receipt."""

    def __init__(self, source: SignerSource, now: datetime | None = None,
                 allow_unsigned: bool = False) -> None:
        self.source = source
        self.now = now or datetime.now(timezone.utc)
        self.allow_unsigned = allow_unsigned
        self._cache: dict[str, Refusal | None] = {}

    @property
    def warnings(self) -> list[str]:
        return self.source.warnings

    def refusal(self, signed: SignedReceipt) -> Refusal | None:
        """Why the receipt's signature does not count here, or None when it does."""
        key = signed.identity
        if key not in self._cache:
            self._cache[key] = self._check(signed)
        return self._cache[key]

    def _check(self, signed: SignedReceipt) -> Refusal | None:
        receipt = signed.receipt
        if isinstance(self.source, RefuseAll):  # nothing can be checked, so nothing counts
            return Refusal("no-trust", self.source.refusal)
        if signed.unsigned:
            if self.allow_unsigned:
                return None
            return Refusal("unsigned", "receipt is unsigned (a dry run); accepted only with --allow-unsigned")
        decision = self.source.decide(signed.payload, signed.signature, receipt.signer, self.now)
        if not decision.allowed:  # the reason may quote the receipt's (unauthenticated) principal
            return Refusal(decision.code, one_line_safe(decision.reason))
        if decision.fingerprint and decision.fingerprint != receipt.key_fingerprint:
            return Refusal("bad-signature", f"receipt names key {printable(receipt.key_fingerprint)} "
                                            f"but was signed by {decision.fingerprint}")
        return None
