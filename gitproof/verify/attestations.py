"""``verify --attestations``: a receipt that validates a commit must carry a valid DSSE envelope.

For a commit that verifies, each scope (the whole fingerprint, or each shard) needs one
valid receipt for its code whose note commit's attestation note
(gitproof.attestation_notes) holds one envelope that

1. is a DSSE envelope with payloadType ``application/vnd.in-toto+json``;
2. carries a signature that verifies, with key id and key those of the key that signed
   the receipt (read from the receipt's own signature, which gitproof.trust has
   accepted; securesystemslib checks the signature);
3. holds an in-toto Statement v1 with the test-result predicate, and
4. names this receipt: the ``gpu-proof-receipt`` descriptor in its configuration has
   the SHA-256 of the receipt's bytes (and, when it carries them, those bytes).

The receipt the verifier chose is tried first; when it has none, every other valid
receipt for the same code (``Verifier.candidates``) is tried, the nearest first, and the
one that has an envelope becomes the receipt the verdict reports. Otherwise the commit
becomes unvalidated: ``attestation-missing`` when no envelope there is meant for the
chosen receipt (none at all, or only good envelopes of other receipts),
``attestation-invalid`` with what is wrong with the envelopes otherwise.

Everything in the note is untrusted, and its cost is bounded: only lines that start
with "{" can be envelopes (others are passed over unread), at most
MAX_EXAMINED_ENVELOPES of them are examined per note, the first few problems are kept,
and each note is judged once per receipt (memoised by note blob id and receipt
identity). Text that is not JSON, JSON that is not an envelope, bad base64, oversized
lines become reasons, never exceptions. securesystemslib is imported only when an
envelope is read.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pygit2

from gitproof.attestation_notes import (ATTESTATIONS_REF, MAX_ENVELOPE_BYTES, AttestationNoteError,
                                        envelope_candidates, note_of)
from gitproof.intoto import PAYLOAD_TYPE, PREDICATE_TYPE, RECEIPT_DESCRIPTOR, STATEMENT_TYPE, receipt_digest, \
    stored_bytes
from gitproof.receipt import SignedReceipt
from gitproof.text import one_line_safe
from gitproof.trust import receipt_signing_key
from gitproof.trust.keys import SignatureError
from gitproof.verify.codes import Code
from gitproof.verify.verdicts import (ANCESTOR, SELF, UNCHANGED, UNVALIDATED, VALIDATED, CommitVerdict, Failure,
                                      ReceiptVerdict)
from gitproof.verify.verifier import Scope, Verifier

if TYPE_CHECKING:
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer._key import SSlibKey  # where defined: the package re-exports it implicitly

MAX_EXAMINED_ENVELOPES = 64  # lines that could be envelopes, examined per note
_SHOWN = 3  # envelopes whose problem a reason quotes (and the only problems kept)
_MEMO_ENTRIES = 4096  # (note blob, receipt) judgements kept
_NEAREST = {SELF: 0, ANCESTOR: 1}  # then ELSEWHERE


@dataclass(frozen=True)
class Problem:
    """Why one envelope does not attest a receipt."""

    message: str
    other_receipt: bool = False  # a good envelope, of another receipt: not a fault of the note


@dataclass(frozen=True)
class _Judgement:
    """What one note says about one receipt; ``attested`` when an envelope in it attests it."""

    attested: bool
    problems: tuple[Problem, ...] = ()  # the first _SHOWN
    failed: int = 0  # envelopes examined that do not attest it
    all_other_receipts: bool = True  # every one of them is a good envelope of another receipt
    not_examined: int = 0  # lines that could be envelopes, past MAX_EXAMINED_ENVELOPES
    other_text: bool = False  # lines that cannot be envelopes (not starting with "{"), passed over
    key_error: str | None = None  # why the receipt's key cannot check envelopes


_memo: dict[tuple[str, str], _Judgement] = {}


def require_attestations(verifier: Verifier, commit: pygit2.Commit) -> CommitVerdict:
    """The commit's verdict when, for each scope, a valid receipt for its code has a valid
    attestation (that receipt is the one reported); else the verdict made unvalidated, its
    reasons saying which attestation is missing or wrong."""
    verdict = verifier.verify(commit)
    if not verdict.ok:
        return verdict
    if not verdict.shards:
        return _attested_scope(verifier, commit, verifier.scopes[0], verdict)
    shards = {str(scope.shard): _attested_scope(verifier, commit, scope, verdict.shards[str(scope.shard)])
              for scope in verifier.scopes}
    reasons = [Failure(r.code, f"shard {name}: {r.message}") for name, part in shards.items() if not part.ok
               for r in part.reasons]
    if reasons:
        return replace(verdict, state=UNVALIDATED, shards=shards, reasons=reasons)
    return _recombined(verdict, shards)


def _recombined(verdict: CommitVerdict, shards: dict[str, CommitVerdict]) -> CommitVerdict:
    """A sharded verdict whose shards may now report other receipts: its state and receipt again."""
    state = VALIDATED if all(part.state == VALIDATED for part in shards.values()) else UNCHANGED
    signed = [(part.receipt, part.receipt.signed) for part in shards.values() if part.receipt and part.receipt.signed]
    newest = max(signed, key=lambda pair: pair[1].receipt.finished, default=(None, None))[0]
    return replace(verdict, state=state, shards=shards, receipt=newest)


def _attested_scope(verifier: Verifier, commit: pygit2.Commit, scope: Scope, verdict: CommitVerdict) -> CommitVerdict:
    """One scope's verdict, kept, moved to another valid receipt that is attested, or unvalidated."""
    chosen = verdict.receipt
    if chosen is None or chosen.signed is None:
        return verdict  # validated without a receipt: nothing to attest
    failure = attestation_failure(verifier.repo, chosen.signed, chosen.note_commit)
    if failure is None:
        return verdict
    others = _other_valid_receipts(verifier, commit, scope, verdict.trees, chosen)
    for other in others:
        if other.signed is not None and attestation_failure(verifier.repo, other.signed, other.note_commit) is None:
            relation = verifier.relation(other.note_commit, commit)
            state = VALIDATED if relation == SELF else UNCHANGED
            return replace(verdict, state=state, receipt=other, relation=relation)
    if others:
        failure = Failure(failure.code, f"{failure.message}; none of the {len(others)} other valid receipt(s) "
                                        "for this code has one either")
    return replace(verdict, state=UNVALIDATED, reasons=[failure])


def _other_valid_receipts(verifier: Verifier, commit: pygit2.Commit, scope: Scope, trees: dict[str, str | None],
                          chosen: ReceiptVerdict) -> list[ReceiptVerdict]:
    """The valid signed receipts for this scope's code besides ``chosen``: on the commit itself first,
    then on its ancestors, then elsewhere; the newest first within each."""
    seen = {_receipt_at(chosen)}
    others: dict[tuple[str, str], tuple[ReceiptVerdict, SignedReceipt]] = {}
    for candidate in verifier.candidates(commit, scope, trees):
        if candidate.ok and candidate.signed is not None and _receipt_at(candidate) not in seen:
            others.setdefault(_receipt_at(candidate), (candidate, candidate.signed))
    newest_first = sorted(others.values(), key=lambda pair: pair[1].receipt.finished, reverse=True)
    return sorted((verdict for verdict, _ in newest_first),
                  key=lambda verdict: _NEAREST.get(verifier.relation(verdict.note_commit, commit), 2))


def _receipt_at(verdict: ReceiptVerdict) -> tuple[str, str]:
    """A receipt and the commit whose note holds it."""
    return (verdict.signed.identity if verdict.signed else "", verdict.note_commit)


def attestation_failure(repo: pygit2.Repository, signed: SignedReceipt, note_commit: str) -> Failure | None:
    """Why the receipt stored on ``note_commit`` has no valid attestation there; None when it has one."""
    where = f"{note_commit[:10]} ({ATTESTATIONS_REF})"
    if signed.unsigned:
        return Failure(Code.ATTESTATION_MISSING, "an unsigned receipt has no signed attestation")
    try:
        blob = note_of(repo, note_commit)
    except AttestationNoteError as exc:
        return Failure(Code.ATTESTATION_INVALID, str(exc))
    judgement = _judged(blob, signed) if blob is not None else _Judgement(False)
    if judgement.attested:
        return None
    if judgement.key_error is not None:
        return Failure(Code.ATTESTATION_INVALID, f"the receipt's key cannot check attestations: {judgement.key_error}")
    if not judgement.failed and not judgement.other_text:
        return Failure(Code.ATTESTATION_MISSING,
                       f"no in-toto attestation on {where} for the receipt that validates this commit; make "
                       "one with `git gpu-proof run --attest` and push it with the receipts")
    code = Code.ATTESTATION_MISSING if judgement.failed and judgement.all_other_receipts else Code.ATTESTATION_INVALID
    digest = receipt_digest(stored_bytes(signed))
    return Failure(code, f"no valid in-toto attestation on {where} for the receipt (sha256 {digest[:16]}...): "
                         f"{_summary(judgement)}")


def _summary(judgement: _Judgement) -> str:
    """What was wrong, envelope by envelope (the first few), and what was not looked at."""
    parts = []
    if judgement.problems:
        shown = "; ".join(f"envelope {n}: {p.message}" for n, p in enumerate(judgement.problems, 1))
        more = judgement.failed - len(judgement.problems)
        parts.append(shown + (f" (+{more} more)" if more else ""))
    if judgement.not_examined:
        parts.append(f"only the first {MAX_EXAMINED_ENVELOPES} envelopes were examined, "
                     f"{judgement.not_examined} more were not")
    if judgement.other_text:
        parts.append("lines that do not start with '{' are not envelopes (an envelope is one line of JSON) "
                     "and were passed over")
    return "; ".join(parts)


def _judged(blob: pygit2.Blob, signed: SignedReceipt) -> _Judgement:
    """``_judge``, once per note blob and receipt."""
    key = (str(blob.id), signed.identity)
    if key not in _memo:
        if len(_memo) >= _MEMO_ENTRIES:
            _memo.clear()
        _memo[key] = _judge(blob.data, signed)
    return _memo[key]


def _judge(note: bytes, signed: SignedReceipt) -> _Judgement:
    """Examine the note's first envelopes for one that attests ``signed``."""
    candidates = envelope_candidates(note, MAX_EXAMINED_ENVELOPES)
    not_examined = candidates.total - len(candidates.lines)
    if not candidates.lines:
        return _Judgement(False, not_examined=not_examined, other_text=candidates.others)
    try:
        key = _receipt_key(signed)
    except (SignatureError, ValueError) as exc:
        return _Judgement(False, key_error=str(exc))
    digest = receipt_digest(stored_bytes(signed))
    problems: list[Problem] = []
    for line in candidates.lines:
        found = envelope_problem(line, key, signed, digest)
        if found is None:
            return _Judgement(True)
        problems.append(found)
    return _Judgement(False, tuple(problems[:_SHOWN]), len(problems), all(p.other_receipt for p in problems),
                      not_examined, candidates.others)


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
