"""gitproof.verify.verdicts: what a verdict says beyond its state (the receipts' holders and
warnings, the checks' JSON), and Verifier.verify_all's order."""
from __future__ import annotations

from pathlib import Path

import pytest

from gitproof.git import commits_in
from gitproof.receipt import CheckRecord, SignedReceipt
from gitproof.trust import load_trust
from gitproof.verify import (UNCHANGED, UNVALIDATED, VALIDATED, CommitVerdict, Failure, ReceiptVerdict, Verifier,
                             accepted_warnings, check_json)
from gitproof.verify.codes import Code
from tests.factories import make_receipt
from tests.helpers import commit_all, write_files
from tests.receipts import POLICY, Project

SIGNED = SignedReceipt(make_receipt(), b"", "")


def valid(note_commit: str, *warnings: str) -> ReceiptVerdict:
    return ReceiptVerdict(SIGNED, note_commit, [], list(warnings))


def commit(state: str, receipt: ReceiptVerdict | None = None, **shards: CommitVerdict) -> CommitVerdict:
    reasons = [] if state != UNVALIDATED else [Failure(Code.NO_RECEIPT, "no receipt")]
    return CommitVerdict("c" * 40, state, {}, receipt, reasons, dict(shards))


def test_holders_name_the_commit_of_each_scopes_receipt():
    assert commit(UNCHANGED, valid("a" * 40)).holders() == {"": "a" * 40}
    assert commit(UNVALIDATED).holders() == {}
    sharded = commit(UNVALIDATED, valid("b" * 40), io=commit(UNCHANGED, valid("b" * 40)), kernels=commit(UNVALIDATED))
    assert sharded.holders() == {"io": "b" * 40}


def test_accepted_warnings_are_those_of_valid_receipts_each_said_once():
    one = commit(VALIDATED, valid("a" * 40, "skips allowed", "unsigned"))
    two = commit(UNCHANGED, valid("b" * 40, "unsigned", "other"),
                 io=commit(UNCHANGED, valid("b" * 40, "io warning")),
                 kernels=commit(VALIDATED, valid("d" * 40, "io warning", "kernels warning")))
    refused = commit(UNVALIDATED, ReceiptVerdict(SIGNED, "e" * 40, [Failure(Code.TOO_OLD, "old")], ["hidden"]))
    assert one.accepted_warnings() == ["skips allowed", "unsigned"]
    assert two.accepted_warnings() == ["io warning", "kernels warning"]  # sharded: the shards' receipts speak
    assert refused.accepted_warnings() == []
    assert accepted_warnings([one, two, refused, one]) == ["skips allowed", "unsigned", "io warning",
                                                           "kernels warning"]


def test_check_json_is_the_check_records_json():
    check = {"test": "t::a", "name": "n", "outcome": "error", "message": "m", "metadata": {"k": [1]}, "newer": 1}
    assert check_json(check) == CheckRecord.from_dict(check).to_json() == {
        "test": "t::a", "name": "n", "outcome": "error", "message": "m", "max_abs_err": None, "max_rel_err": None,
        "rtol": None, "atol": None, "metadata": {"k": [1]}}


def test_a_receipt_verdicts_json_lists_its_checks_and_keeps_its_gpu_records_as_written():
    gpus = [{"index": 0, "name": "H100", "newer-key": 1}]
    checks = [{"test": "t::a", "name": "n", "ok": True}]
    data = ReceiptVerdict(SignedReceipt(make_receipt(gpus=gpus, checks=checks), b"", ""), "a" * 40, []).to_json()
    assert data["gpus"] == gpus and data["gpu_facts"] is None and data["gpu_use"] == []
    assert data["checks"] == [check_json(checks[0])] and data["checks"][0]["outcome"] == "passed"


@pytest.fixture
def project(repo: Path, keygen) -> Project:
    return Project(repo, keygen("ed25519"))


def test_verify_all_keeps_the_order_given(project):
    project.attach()
    for n in range(3):
        write_files(project.root, {f"docs/{n}.md": "docs\n"})
        commit_all(project.root, f"docs {n}")
    write_files(project.root, {"src/kernels.py": "changed\n"})
    commit_all(project.root, "kernel change")
    verifier = Verifier(project.repo, POLICY, load_trust(project.repo, POLICY))
    commits = commits_in(project.repo, "HEAD", 10)  # newest first
    states = [v.state for v in verifier.verify_all(commits)]
    assert states == [UNVALIDATED, UNCHANGED, UNCHANGED, UNCHANGED, VALIDATED]
    assert [v.commit for v in verifier.verify_all(commits)] == [str(c.id) for c in commits]
