"""What verification concludes, and its JSON: a failure, a receipt's verdict, a commit's verdict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitproof.fingerprint import Trees
from gitproof.receipt import SignedReceipt, check_outcome
from gitproof.verify.codes import Code

VALIDATED = "validated"
UNCHANGED = "unchanged"
UNVALIDATED = "unvalidated"


@dataclass(frozen=True)
class Failure:
    """Why a receipt does not count (or why none was found): a code and a message."""

    code: Code
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}


def check_json(check: dict[str, Any]) -> dict[str, Any]:
    """One check record with every field present: an older record gets its outcome from ``ok``,
    and what it lacks is null (``message`` empty, ``metadata`` {})."""
    return {"test": check["test"], "name": check["name"], "outcome": check_outcome(check),
            "message": check.get("message", ""), "max_abs_err": check.get("max_abs_err"),
            "max_rel_err": check.get("max_rel_err"), "rtol": check.get("rtol"), "atol": check.get("atol"),
            "metadata": check.get("metadata", {})}


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
                        checks=[check_json(c) for c in r.checks],
                        shard=r.shard, unsigned=self.signed.unsigned)
        return data


@dataclass
class CommitVerdict:
    """A commit: validated (a receipt on it), unchanged (a receipt on a same-code ancestor),
    or unvalidated, with the reasons; a sharded commit has one verdict per shard."""

    commit: str
    state: str
    trees: Trees
    receipt: ReceiptVerdict | None = None
    reasons: list[Failure] = field(default_factory=list)
    shards: dict[str, CommitVerdict] = field(default_factory=dict)

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
