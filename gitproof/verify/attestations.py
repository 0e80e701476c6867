"""``verify --attestations``: the receipt that validates a commit must carry a valid DSSE envelope.

For a commit that verifies, take the receipt that validated it (each shard's, when
sharded) and the commit its note is on. The attestation note on that commit
(gitproof.attestation_notes) must hold one envelope that

1. is a DSSE envelope with payloadType ``application/vnd.in-toto+json``;
2. carries a signature that verifies, with key id and key those of the key that signed
   the receipt (read from the receipt's own signature, which gitproof.trust has
   accepted; securesystemslib checks the signature);
3. holds an in-toto Statement v1 with the test-result predicate, and
4. names this receipt: the ``gpu-proof-receipt`` descriptor in its configuration has
   the SHA-256 of the receipt's bytes (and, when it carries them, those bytes).

Otherwise the commit becomes unvalidated: ``attestation-missing`` when no envelope there
is meant for this receipt (none at all, or only good envelopes of other receipts),
``attestation-invalid`` with what is wrong with each envelope otherwise. Everything
in the note is untrusted: text that is not JSON, JSON that is not an envelope, bad
base64, oversized lines become reasons, never exceptions. securesystemslib is imported
only when an envelope is read.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pygit2

from gitproof.attestation_notes import (ATTESTATIONS_REF, MAX_ENVELOPE_BYTES, AttestationNoteError, envelope_lines,
                                        read_note)
from gitproof.intoto import PAYLOAD_TYPE, PREDICATE_TYPE, RECEIPT_DESCRIPTOR, STATEMENT_TYPE, receipt_digest, \
    stored_bytes
from gitproof.receipt import SignedReceipt
from gitproof.text import one_line_safe
from gitproof.trust import receipt_signing_key
from gitproof.trust.keys import SignatureError
from gitproof.verify.codes import Code
from gitproof.verify.verdicts import UNVALIDATED, CommitVerdict, Failure

if TYPE_CHECKING:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer._key import SSlibKey  # where defined: the package re-exports it implicitly

_SHOWN = 3  # envelopes whose problem a reason quotes


@dataclass(frozen=True)
class Problem:
    """Why one envelope does not attest a receipt."""

    message: str
    other_receipt: bool = False  # a good envelope, of another receipt: not a fault of the note


def require_attestations(repo: pygit2.Repository, verdict: CommitVerdict) -> CommitVerdict:
    """``verdict`` itself when every receipt that validates it has a valid attestation; else the
    verdict made unvalidated, its reasons saying which attestation is missing or wrong."""
    if not verdict.ok:
        return verdict
    if not verdict.shards:
        failure = _scope_failure(repo, verdict)
        return verdict if failure is None else replace(verdict, state=UNVALIDATED, reasons=[failure])
    shards, reasons = dict(verdict.shards), []
    for name, part in verdict.shards.items():
        shards[name] = require_attestations(repo, part)
        if not shards[name].ok:
            reasons += [Failure(r.code, f"shard {name}: {r.message}") for r in shards[name].reasons]
    return verdict if not reasons else replace(verdict, state=UNVALIDATED, shards=shards, reasons=reasons)


def _scope_failure(repo: pygit2.Repository, verdict: CommitVerdict) -> Failure | None:
    receipt = verdict.receipt
    if receipt is None or receipt.signed is None:
        return None  # validated without a receipt: nothing to attest
    return attestation_failure(repo, receipt.signed, receipt.note_commit)


def attestation_failure(repo: pygit2.Repository, signed: SignedReceipt, note_commit: str) -> Failure | None:
    """Why the receipt stored on ``note_commit`` has no valid attestation there; None when it has one."""
    where = f"{note_commit[:10]} ({ATTESTATIONS_REF})"
    if signed.unsigned:
        return Failure(Code.ATTESTATION_MISSING, "an unsigned receipt has no signed attestation")
    try:
        lines = envelope_lines(read_note(repo, note_commit) or b"")
    except AttestationNoteError as exc:
        return Failure(Code.ATTESTATION_INVALID, str(exc))
    if not lines:
        return Failure(Code.ATTESTATION_MISSING,
                       f"no in-toto attestation on {where} for the receipt that validates this commit; make "
                       "one with `git gpu-proof run --attest` and push it with the receipts")
    try:
        key = _receipt_key(signed)
    except (SignatureError, ValueError) as exc:
        return Failure(Code.ATTESTATION_INVALID, f"the receipt's key cannot check attestations: {exc}")
    digest = receipt_digest(stored_bytes(signed))
    problems = []
    for line in lines:
        problem = envelope_problem(line, key, signed, digest)
        if problem is None:
            return None
        problems.append(problem)
    shown = "; ".join(f"envelope {n}: {p.message}" for n, p in enumerate(problems[:_SHOWN], 1))
    more = f" (+{len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    code = Code.ATTESTATION_MISSING if all(p.other_receipt for p in problems) else Code.ATTESTATION_INVALID
    return Failure(code, f"no valid in-toto attestation on {where} for the receipt (sha256 {digest[:16]}...): "
                         f"{shown}{more}")


def _receipt_key(signed: SignedReceipt) -> SSlibKey:
    from securesystemslib.signer._key import SSlibKey  # where defined: the package re-exports it implicitly

    return SSlibKey.from_crypto(receipt_signing_key(signed), keyid=signed.receipt.key_fingerprint)


def envelope_problem(line: bytes, key: SSlibKey, signed: SignedReceipt, digest: str) -> Problem | None:
    """What is wrong with one envelope line as an attestation of ``signed``; None when nothing."""
    if len(line) > MAX_ENVELOPE_BYTES:
        return Problem(f"{len(line)} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit; not read")
    envelope = _envelope(line)
    if isinstance(envelope, str):
        return Problem(envelope)
    if envelope.payload_type != PAYLOAD_TYPE:
        return Problem(f"its payloadType is {_quoted(envelope.payload_type)}, not {PAYLOAD_TYPE}")
    wrong = _signature_problem(envelope, key)
    return Problem(wrong) if wrong else _statement_problem(envelope.payload, signed, digest)


def _envelope(line: bytes) -> Envelope | str:
    """The envelope, or what keeps the line from being one."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import Error

    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return "not JSON"
    if not _envelope_shaped(data):
        return "not a DSSE envelope (an object with payload, payloadType and signatures of keyid and sig)"
    try:
        return Envelope.from_dict(data)
    except (ValueError, KeyError, TypeError, Error) as exc:  # binascii.Error is a ValueError
        return f"not a DSSE envelope: {type(exc).__name__} ({_quoted(str(exc))})"


def _envelope_shaped(data: Any) -> bool:
    signatures = data.get("signatures") if isinstance(data, dict) else None
    return (isinstance(data, dict) and isinstance(data.get("payload"), str)
            and isinstance(data.get("payloadType"), str) and isinstance(signatures, list)
            and all(isinstance(s, dict) and isinstance(s.get("keyid"), str) and isinstance(s.get("sig"), str)
                    for s in signatures))


def _signature_problem(envelope: Envelope, key: SSlibKey) -> str | None:
    from securesystemslib.exceptions import Error

    if key.keyid not in envelope.signatures:
        signers = ", ".join(_quoted(keyid) for keyid in list(envelope.signatures)[:3]) or "nobody"
        return f"not signed by the receipt's key {key.keyid} (signed by {signers})"
    try:
        envelope.verify([key], 1)
    except (Error, ValueError):
        return f"the signature by {key.keyid} does not verify: the envelope was changed after it was signed"
    return None


def _statement_problem(payload: bytes, signed: SignedReceipt, digest: str) -> Problem | None:
    """What keeps a payload signed by the right key from attesting this receipt."""
    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError):
        return Problem("its payload is not JSON")
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        return Problem(f"its payload is not an in-toto Statement v1 ({STATEMENT_TYPE})")
    if statement.get("predicateType") != PREDICATE_TYPE:
        return Problem(f"its predicateType is {_quoted(statement.get('predicateType'))}, not {PREDICATE_TYPE}")
    named = _receipt_descriptors(statement.get("predicate"))
    if not named:
        return Problem(f"its predicate names no {RECEIPT_DESCRIPTOR} in configuration")
    mine = [d for d in named if d["digest"]["sha256"] == digest]
    if not mine:
        return Problem(f"it attests another receipt (sha256 {_quoted(named[0]['digest']['sha256'][:16])}...)",
                       other_receipt=True)
    if not any(_content_matches(d, stored_bytes(signed)) for d in mine):
        return Problem(f"its {RECEIPT_DESCRIPTOR} content is not the receipt its digest names")
    return None


def _receipt_descriptors(predicate: Any) -> list[dict[str, Any]]:
    configuration = predicate.get("configuration") if isinstance(predicate, dict) else None
    if not isinstance(configuration, list):
        return []
    return [d for d in configuration if isinstance(d, dict) and d.get("name") == RECEIPT_DESCRIPTOR
            and isinstance(d.get("digest"), dict) and isinstance(d["digest"].get("sha256"), str)]


def _content_matches(descriptor: dict[str, Any], data: bytes) -> bool:
    content = descriptor.get("content")
    if content is None:
        return True
    if not isinstance(content, str):
        return False
    try:
        return base64.b64decode(content, validate=True) == data
    except (binascii.Error, ValueError):
        return False


def _quoted(value: Any) -> str:
    """Untrusted text from an envelope, short and safe for a terminal."""
    if value is None:
        return "missing"
    if not isinstance(value, str):
        return f"not a string ({type(value).__name__})"
    return repr(one_line_safe(value[:80]) + ("..." if len(value) > 80 else ""))
