"""in-toto statements of receipts, read back with the in-toto-attestation bindings, not only our own reading."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from gitproof import intoto
from gitproof.receipt import SIG_BEGIN, SignedReceipt, TestResult, serialize_payload
from tests.factories import make_receipt
from tests.helpers import git, write_files
from tests.receipts import sign_receipt

COMMIT = "c" * 40
FAKE_SIGNATURE = f"{SIG_BEGIN}\nAAAA\n-----END SSH SIGNATURE-----\n"


def signed_of(**overrides) -> SignedReceipt:
    receipt = make_receipt(**overrides)
    return SignedReceipt(receipt, serialize_payload(receipt), FAKE_SIGNATURE)


def statement_of(signed: SignedReceipt, commits: list[str] | None = None, **kwargs) -> dict:
    return intoto.statement(signed, intoto.stored_bytes(signed), [COMMIT] if commits is None else commits, **kwargs)


def parsed(statement: dict) -> tuple[Statement, test_result_pb2.TestResult]:
    """The statement as the bindings read it (validated), and its predicate as a TestResult."""
    proto = json_format.Parse(json.dumps(statement), statement_pb2.Statement())
    wrapped = Statement.copy_from_pb(proto)
    wrapped.validate()
    predicate = json_format.ParseDict(json_format.MessageToDict(proto.predicate), test_result_pb2.TestResult())
    return wrapped, predicate


def test_a_statement_passes_the_in_toto_bindings():
    signed = signed_of()
    statement = statement_of(signed, url="https://ci.example.com/job/7")
    wrapped, predicate = parsed(statement)
    assert wrapped.pb.type == "https://in-toto.io/Statement/v1" == statement["_type"]
    assert wrapped.pb.predicate_type == "https://in-toto.io/attestation/test-result/v0.1"
    assert predicate.result == "PASSED" and predicate.url == "https://ci.example.com/job/7"
    assert list(predicate.passed_tests) == ["tests/test_k.py::test_a", "tests/test_k.py::test_b[x]"]
    assert list(predicate.warned_tests) == [] and list(predicate.failed_tests) == []
    receipt, gpu = predicate.configuration
    assert receipt.name == "gpu-proof-receipt" and receipt.media_type == "text/plain"
    assert receipt.content == intoto.stored_bytes(signed)
    assert receipt.digest["sha256"] == intoto.receipt_digest(intoto.stored_bytes(signed))
    assert gpu.name == "gpu 0: NVIDIA H100 80GB HBM3"
    assert statement["predicate"]["configuration"][1]["annotations"]["memory_mib"] == 81559  # not 81559.0


def test_subjects_are_the_commits_and_the_recorded_trees():
    sha256_id = "d" * 64
    signed = signed_of(trees={"src": "1" * 40, "docs": None, "kernel.cu": "2" * 40})
    statement = statement_of(signed, [COMMIT, sha256_id, COMMIT], blob_paths={"kernel.cu"})
    subjects = [(s["name"], s["digest"]) for s in statement["subject"]]
    assert subjects == [(COMMIT, {"gitCommit": COMMIT}), (sha256_id, {"gitCommit": sha256_id}),
                        ("src", {"gitTree": "1" * 40}), ("kernel.cu", {"gitBlob": "2" * 40})]
    parsed(statement)


def test_a_pending_receipt_has_only_its_trees_as_subjects():
    statement = statement_of(signed_of(), commits=[])
    assert [s["digest"] for s in statement["subject"]] == [{"gitTree": "1" * 40}, {"gitTree": "2" * 40}]
    parsed(statement)


@pytest.mark.parametrize("commits, trees, message", [
    (["not-a-commit"], {"src": "1" * 40}, "not a git commit id"),
    (["C" * 40], {"src": "1" * 40}, "not a git commit id"),
    ([], {"src": None}, "needs a subject"),
])
def test_a_statement_without_a_valid_subject_is_refused(commits, trees, message):
    with pytest.raises(ValueError, match=message):
        statement_of(signed_of(trees=trees), commits)


def run_of(*outcomes: str) -> list[TestResult]:
    return [TestResult(f"tests/test_k.py::test_{i}", outcome, 0.1) for i, outcome in enumerate(outcomes)]


CHECK = {"test": "tests/test_k.py::test_0", "name": "gemm", "outcome": "failed", "ok": False,
         "rtol": 1e-05, "atol": 1e-08}


@pytest.mark.parametrize("overrides, result", [
    ({"tests": run_of("passed", "passed")}, "PASSED"),
    ({"tests": run_of("passed", "skipped")}, "WARNED"),
    ({"tests": run_of("passed", "xfailed")}, "WARNED"),
    ({"tests": run_of("passed", "xpassed")}, "WARNED"),
    ({"tests": run_of("passed"), "dirty_outside": True}, "WARNED"),
    ({"tests": run_of("passed", "failed")}, "FAILED"),
    ({"tests": run_of("passed", "error")}, "FAILED"),
    ({"tests": run_of("skipped")}, "FAILED"),  # nothing passed: the receipt's verdict is failed
    ({"tests": run_of("passed"), "exit_status": 1}, "FAILED"),
    ({"tests": run_of("passed"), "checks": [CHECK]}, "FAILED"),
    ({"tests": run_of("xfailed", "passed"), "checks": [CHECK]}, "WARNED"),  # an xfailed test's check may fail
])
def test_result_follows_the_documented_rule(overrides, result):
    signed = signed_of(**overrides)
    assert intoto.result_of(signed.receipt) == result
    assert parsed(statement_of(signed))[1].result == result


def test_tests_are_listed_by_result_and_a_failed_check_fails_its_test():
    signed = signed_of(tests=run_of("passed", "skipped", "error", "passed"),
                       checks=[{**CHECK, "test": "tests/test_k.py::test_3"}])
    predicate = parsed(statement_of(signed))[1]
    assert list(predicate.passed_tests) == ["tests/test_k.py::test_0"]
    assert list(predicate.warned_tests) == ["tests/test_k.py::test_1"]
    assert list(predicate.failed_tests) == ["tests/test_k.py::test_2", "tests/test_k.py::test_3"]


def test_the_receipt_in_the_statement_verifies_with_stock_ssh_keygen(repo, keygen, tmp_path):
    key = keygen("ed25519")
    signed = sign_receipt(pygit2.Repository(str(repo)), key, principal="alice@example.com")
    statement = statement_of(signed)
    [descriptor] = [d for d in statement["predicate"]["configuration"] if d["name"] == "gpu-proof-receipt"]
    content = base64.b64decode(descriptor["content"])
    payload, _, signature = content.partition(SIG_BEGIN.encode())
    (tmp_path / "receipt.sig").write_bytes(SIG_BEGIN.encode() + signature)
    (tmp_path / "allowed").write_text(f"alice@example.com {key.public_line}\n")
    check = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I",
                            "alice@example.com", "-n", "gpu-proof", "-s", str(tmp_path / "receipt.sig")],
                           input=payload, capture_output=True)
    assert check.returncode == 0, check.stderr
    assert b'Good "gpu-proof" signature' in check.stdout


def test_file_paths_names_the_fingerprint_paths_that_are_files(repo):
    write_files(repo, {"kernel.cu": "__global__ void k() {}\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "kernel")
    tree = pygit2.Repository(str(repo)).revparse_single("HEAD").peel(pygit2.Commit).tree
    trees = {"src": str(tree["src"].id), "kernel.cu": str(tree["kernel.cu"].id), "gone": None,
             "elsewhere": "9" * 40}
    assert intoto.file_paths(pygit2.Repository(str(repo)), trees) == {"kernel.cu"}


def test_the_hook_path_never_loads_protobuf_or_securesystemslib():
    code = ("import sys, gitproof.cli.hook, gitproof.intoto, gitproof.attestation_notes, gitproof.sync, "
            "gitproof.pending, gitproof.record, gitproof.verify.attestations\n"
            "loaded = [m for m in ('google.protobuf', 'in_toto_attestation', 'securesystemslib') if m in sys.modules]\n"
            "print(loaded)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert out.stdout.strip() == "[]"


def test_gpu_entries_keep_the_known_plain_fields_only():
    gpu = {"index": 1, "name": "H200", "memory_mib": 143771, "visible": True, "mig": None,
           "future": {"nested": [1, 2]}, "uuid": ["not", "a", "string"]}
    [_, entry] = statement_of(signed_of(gpus=[gpu]))["predicate"]["configuration"]
    assert entry == {"name": "gpu 1: H200", "annotations": {"index": 1, "name": "H200", "memory_mib": 143771,
                                                             "visible": True, "mig": None}}


def test_only_commits_with_the_receipt_s_trees_are_tested_commits(repo, keygen):
    key = keygen("ed25519")
    pygit = pygit2.Repository(str(repo))
    made_on = git(repo, "rev-parse", "HEAD")
    write_files(repo, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    git(repo, "commit", "-qam", "swap")
    changed = git(repo, "rev-parse", "HEAD")
    write_files(repo, {"README.md": "docs\n"})
    git(repo, "commit", "-qam", "docs")
    docs = git(repo, "rev-parse", "HEAD")
    signed = sign_receipt(pygit, key, "HEAD", commit=made_on)  # made on the base, with the swap uncommitted
    found = intoto.tested_commits(pygit, signed.receipt, [made_on, changed, docs, "f" * 40, "HEAD", made_on])
    assert found == [changed, docs]
    assert intoto.tested_commits(pygit, signed.receipt, [git(repo, "rev-parse", "HEAD^{tree}")]) == []


def test_an_envelope_made_with_the_repository_names_only_tested_commits(repo, keygen):
    from gitproof.signing.attest import attestation
    from tests.attestations import signer_of

    key = keygen("ed25519")
    pygit = pygit2.Repository(str(repo))
    made_on = git(repo, "rev-parse", "HEAD")
    write_files(repo, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    signed = sign_receipt(pygit, key, "HEAD", commit=made_on,
                          trees={"src": "1" * 40, "tests": git(repo, "rev-parse", "HEAD:tests")})
    line = attestation(signed, signer_of(key), [made_on], repo=pygit)
    statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
    assert [s["digest"] for s in statement["subject"] if "gitCommit" in s["digest"]] == []
    annotations = statement["predicate"]["configuration"][0]["annotations"]
    assert annotations["commit"] == made_on
