"""What verification concludes, and its JSON: a failure, a receipt's verdict, a commit's verdict."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gitproof.fingerprint import Trees
from gitproof.receipt import CheckRecord, SignedReceipt
from gitproof.verify.codes import Code

VALIDATED = "validated"
UNCHANGED = "unchanged"
UNVALIDATED = "unvalidated"

# Where the receipt that validates a commit was made, relative to the commit.
SELF = "this commit"
ANCESTOR = "ancestor"  # an earlier commit with the same GPU code
ELSEWHERE = "same code"  # a commit that is not an ancestor: a squash, rebase or cherry-pick of it


@dataclass(frozen=True)
class Failure:
    """Why a receipt does not count (or why none was found): a code and a message."""

    code: Code
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}


def check_json(check: dict[str, Any]) -> dict[str, Any]:
    """One check record with every field present: an older record gets its outcome from ``ok``,
    and what it lacks is null (``message`` empty, ``metadata`` {}). See CheckRecord.to_json."""
    return CheckRecord.from_dict(check).to_json()


@dataclass(frozen=True)
class ReceiptVerdict:
    """One receipt judged against one code state: valid when nothing failed."""

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
                        checks=[c.to_json() for c in r.check_records],
                        shard=r.shard, unsigned=self.signed.unsigned)
        return data


@dataclass
class CommitVerdict:
    """A commit: validated (a receipt on it), unchanged (a valid receipt for the same GPU code made
    on another commit: an ancestor, or a commit it was squashed, rebased or cherry-picked from), or
    unvalidated, with the reasons; a sharded commit has one verdict per shard. ``relation`` says
    where the validating receipt was made (SELF, ANCESTOR, ELSEWHERE)."""

    commit: str
    state: str
    trees: Trees
    receipt: ReceiptVerdict | None = None
    reasons: list[Failure] = field(default_factory=list)
    shards: dict[str, CommitVerdict] = field(default_factory=dict)
    relation: str | None = None

    @property
    def ok(self) -> bool:
        return self.state in (VALIDATED, UNCHANGED)

    def validated_by(self) -> dict[str, Any] | None:
        """Which receipt validates the commit and where it was made; None when none does."""
        if not self.ok or self.receipt is None or self.receipt.signed is None:
            return None
        r = self.receipt.signed.receipt
        return {"note_commit": self.receipt.note_commit, "made_on": r.commit, "relation": self.relation,
                "signer": r.signer, "key": r.key_fingerprint, "finished": r.finished.isoformat()}

    def holders(self) -> dict[str, str]:
        """Which commit holds the receipt that validates each scope: ``{"": commit}`` unsharded,
        ``{shard: commit}`` for each shard that has one; empty when none does."""
        if not self.shards:
            return {"": self.receipt.note_commit} if self.receipt else {}
        return {name: part.receipt.note_commit for name, part in self.shards.items() if part.receipt}

    def accepted_warnings(self) -> list[str]:
        """The warnings of the receipts that validate it (each shard's, when sharded), each once."""
        parts = self.shards.values() if self.shards else [self]
        seen: list[str] = []
        for part in parts:
            if part.ok and part.receipt:
                seen += [w for w in part.receipt.warnings if w not in seen]
        return seen

    def to_json(self) -> dict[str, Any]:
        data = {"commit": self.commit, "state": self.state, "valid": self.ok,
                "trees": self.trees,
                "receipt": self.receipt.to_json() if self.receipt else None,
                "validated_by": None if self.shards else self.validated_by(),
                "reasons": [r.to_json() for r in self.reasons]}
        if self.shards:
            data["shards"] = {name: v.to_json() for name, v in self.shards.items()}
        return data


def accepted_warnings(verdicts: Iterable[CommitVerdict]) -> list[str]:
    """The warnings of the receipts that validated any of these commits, each said once."""
    seen: list[str] = []
    for verdict in verdicts:
        seen += [w for w in verdict.accepted_warnings() if w not in seen]
    return seen
