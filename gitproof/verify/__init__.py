"""Whether a commit's GPU code is validated. This package never touches keys: whether a
signature counts is asked of gitproof.trust.

* ``codes``: the failure codes (a documented JSON API);
* ``checks`` and ``gpu_checks``: the policy's rules, one small class per check;
* ``verdicts``: failures, receipt and commit verdicts, and their JSON;
* ``verifier``: the `Verifier` (scopes, receipts found by their trees) and ``open_verifier``;
* ``plan``: which shards must run again; ``worktree``: is the working tree validated.
"""
from __future__ import annotations

from gitproof.verify.codes import Code
from gitproof.verify.verdicts import (ANCESTOR, ELSEWHERE, SELF, UNCHANGED, UNVALIDATED, VALIDATED, CommitVerdict,
                                      Failure, ReceiptVerdict, accepted_warnings, check_json)
from gitproof.verify.verifier import Scope, Verifier, effective_policy, open_verifier

__all__ = [
    "ANCESTOR", "ELSEWHERE", "SELF",
    "UNCHANGED", "UNVALIDATED", "VALIDATED", "Code", "CommitVerdict", "Failure", "ReceiptVerdict", "Scope",
    "Verifier", "accepted_warnings", "check_json", "effective_policy", "open_verifier",
]
