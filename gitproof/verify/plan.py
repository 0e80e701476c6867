"""The plan for a commit: which shards' receipts still hold, and which must run again."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pygit2

from gitproof.policy import load_policy
from gitproof.verify.verdicts import UNCHANGED, CommitVerdict
from gitproof.verify.verifier import Verifier, open_verifier

WHOLE = "all"  # the one pseudo-shard of a policy without shards


@dataclass(frozen=True)
class Step:
    """One shard's line in the plan."""

    name: str
    sharded: bool  # False: the pseudo-shard "all" of a policy without shards
    required: bool
    paths: list[str]
    verdict: CommitVerdict

    @property
    def command(self) -> str | None:
        if self.verdict.ok:
            return None
        return f"git gpu-proof run --shard {self.name}" if self.sharded else "git gpu-proof run"

    @property
    def carried(self) -> bool:
        """Valid through a receipt on an ancestor whose trees at these paths are the same."""
        return self.verdict.ok and self.verdict.state == UNCHANGED

    def to_json(self) -> dict[str, Any]:
        v = self.verdict
        return {"name": self.name, "required": self.required, "paths": self.paths,
                "state": v.state, "valid": v.ok, "carried": self.carried, "trees": v.trees,
                "receipt": v.receipt.to_json() if v.ok and v.receipt else None,
                "reasons": [r.to_json() for r in v.reasons], "command": self.command}


def make_plan(repo: pygit2.Repository, commit: pygit2.Commit) -> tuple[list[Step], Verifier]:
    """Every shard judged on ``commit``, optional ones included; returns (steps, verifier)."""
    policy = load_policy(repo)
    required = {s.name for s in policy.shards_to_check()}
    # Judge the optional shards too (they are reported, never counted).
    verifier = open_verifier(repo, replace(policy, required_shards=None))
    verdict = verifier.verify(commit)
    if not policy.shards:
        return [Step(WHOLE, False, True, list(policy.fingerprint_paths), verdict)], verifier
    return [Step(name, True, name in required, list(shard.paths), verdict.shards[name])
            for name, shard in policy.shards.items()], verifier


def must_rerun(steps: list[Step]) -> list[str]:
    """The required shards that must run again."""
    return [s.name for s in steps if s.required and not s.verdict.ok]
