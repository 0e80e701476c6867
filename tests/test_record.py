"""record: prepare (everything that can refuse, before any test) and finish (sign and store).

Called directly, as the plugin calls them, in real repositories with real keys.
"""
from __future__ import annotations

import os
from pathlib import Path

import pygit2
import pytest

from gitproof import record
from gitproof.notes import NotesStore
from gitproof.policy import PolicyError
from gitproof.pending import PendingStore
from gitproof.receipt import MAX_NOTE_BYTES, TestResult
from gitproof.record import RecordError, RecordOptions, finish, prepare
from tests.helpers import commit_all, git, write_files

PASSED = [TestResult("tests/test_kernels.py::test_add", "passed", 0.01)]


@pytest.fixture
def signed_repo(repo: Path, keygen) -> Path:
    key = keygen("ed25519")
    git(repo, "config", "user.signingKey", str(key.private))
    return repo


def test_prepare_then_finish_stores_a_signed_note_on_head(signed_repo):
    rec = prepare(signed_repo, RecordOptions())
    assert rec.mode == "local" and rec.principal == "runner@example.com" and rec.paths == ["src", "tests"]
    outcome = finish(rec, PASSED, 0, ["--gpu-proof"])
    assert outcome.stored_as == "note" and outcome.added and outcome.location == rec.head
    [entry] = NotesStore(pygit2.Repository(str(signed_repo))).entries(rec.head)
    assert entry.signed is not None and entry.signed.receipt.verdict == "passed"


def test_uncommitted_code_makes_a_pending_receipt(signed_repo):
    rec = prepare(signed_repo, RecordOptions())
    write_files(signed_repo, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    rec = prepare(signed_repo, RecordOptions())
    outcome = finish(rec, PASSED, 0, [])
    assert outcome.stored_as == "pending"
    assert [p.ref for p in PendingStore(pygit2.Repository(str(signed_repo))).list()] == [outcome.location]


def test_code_changed_during_the_run_is_refused_naming_the_files(signed_repo):
    rec = prepare(signed_repo, RecordOptions())
    write_files(signed_repo, {"tests/output.json": "{}"})
    with pytest.raises(RecordError, match="tests/output.json"):
        finish(rec, PASSED, 0, [])
    assert NotesStore(pygit2.Repository(str(signed_repo))).entries(rec.head) == []


def test_a_receipt_that_would_overflow_the_note_is_refused(signed_repo):
    repo = pygit2.Repository(str(signed_repo))
    author = pygit2.Signature("t", "t@example.com")
    filler = "# filler\n" * ((MAX_NOTE_BYTES - 1024) // 9)
    repo.create_note(filler, author, author, str(repo.head.target), "refs/notes/gpu-proof")
    rec = prepare(signed_repo, RecordOptions())
    with pytest.raises(RecordError, match="byte limit"):
        finish(rec, PASSED, 0, [])


@pytest.mark.parametrize("options, setup, message", [
    (RecordOptions(mode="remote"), None, "unknown mode"),
    (RecordOptions(unsigned=True, key="k"), None, "takes no signing key"),
    (RecordOptions(key="a", key_env="B"), None, "pass only one"),
    (RecordOptions(shard="gpu"), None, "defines no shards"),
    (RecordOptions(), '[tool.gpu_proof.shards.a]\npaths = ["src"]\n', "run one with --shard NAME"),
    (RecordOptions(require_gpu=True), None, "no GPU is visible"),
    (RecordOptions(fingerprint_paths=["../up"]), None, "inside the repository"),
    (RecordOptions(), '[tool.gpu_proof]\nfingerprint_paths = ["nowhere"]\n', "none of the fingerprint paths exist"),
])
def test_prepare_refuses_before_any_test(signed_repo, options, setup, message):
    if setup:
        write_files(signed_repo, {"pyproject.toml": setup})
        commit_all(signed_repo, "policy")
    with pytest.raises((RecordError, PolicyError), match=message):
        prepare(signed_repo, options)


def test_prepare_refuses_outside_a_repository_and_without_commits(tmp_path):
    with pytest.raises(RecordError, match="not inside a git repository"):
        prepare(tmp_path, RecordOptions())
    git(tmp_path, "init", "-q")
    with pytest.raises(RecordError, match="no commits yet"):
        prepare(tmp_path, RecordOptions())


def test_pytest_gpu_proof_settings_are_the_defaults_under_the_options(signed_repo, keygen):
    other = keygen("ed25519", name="other")
    os.replace(other.private, signed_repo / ".git" / "peer-key")
    write_files(signed_repo, {"pyproject.toml": (
        '[tool.gpu_proof]\nfingerprint_paths = ["src", "tests"]\nkey_path = ".git/peer-key"\n'
        'github_username = "alice"\nmode = "ci-gpu"\n')})
    commit_all(signed_repo, "peer settings")
    rec = prepare(signed_repo / "src", RecordOptions())  # key_path is relative to the repository root
    assert (rec.principal, rec.mode, rec.key_fingerprint) == ("alice", "ci-gpu", other.fingerprint)
    flagged = prepare(signed_repo, RecordOptions(principal="bob", mode="local"))
    assert (flagged.principal, flagged.mode) == ("bob", "local")


def test_notes_warn_about_missing_paths_and_paths_verify_will_not_accept(signed_repo):
    git(signed_repo, "rm", "-q", "-r", "src")
    commit_all(signed_repo, "no src")
    assert any("'src' does not exist" in n for n in prepare(signed_repo, RecordOptions()).notes)
    narrowed = prepare(signed_repo, RecordOptions(fingerprint_paths=["tests"]))
    assert any("paths-not-covered" in n for n in narrowed.notes)


@pytest.mark.parametrize("selectors, nodeid, holds", [
    (["tests/gpu"], "tests", True), (["tests/gpu"], "tests/gpu/test_a.py", True),
    (["tests/gpu/test_a.py::test_x"], "tests/gpu/test_a.py", True), (["tests/gpu"], "tests/cpu", False),
    ([], "anything", True),
])
def test_may_hold(selectors, nodeid, holds):
    assert record.may_hold(selectors, nodeid) is holds
