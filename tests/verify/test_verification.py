"""Validity by content: real repositories, real keys, real signatures."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from gitproof.policy import Policy
from gitproof.receipt import TestResult
from gitproof.trust import TrustError, load_trust
from gitproof.verify import ANCESTOR, UNCHANGED, UNVALIDATED, VALIDATED, Verifier, open_verifier
from tests.receipts import POLICY, Project
from tests.helpers import commit_all, git, write_files

@pytest.fixture
def project(repo: Path, keygen) -> Project:
    return Project(repo, keygen("ed25519"))


def test_valid_receipt_validates_its_commit(project):
    project.attach()
    verdict = project.verify()
    assert verdict.state == VALIDATED and verdict.ok
    assert verdict.receipt.signed.receipt.signer == "alice@example.com"


def test_no_receipt_is_unvalidated(project):
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    assert [r.code for r in verdict.reasons] == ["no-receipt"]


def test_docs_only_commit_stays_validated(project):
    validated = project.attach()
    write_files(project.root, {"README.md": "more docs\n"})
    commit_all(project.root, "docs")
    verdict = project.verify()
    assert verdict.state == UNCHANGED and verdict.receipt.signed == validated


def test_change_under_fingerprint_paths_unvalidates_and_names_the_file(project):
    project.attach()
    write_files(project.root, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    commit_all(project.root, "kernel change")
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    [reason] = verdict.reasons
    assert reason.code == "fingerprint-changed" and "src/kernels.py" in reason.message


def test_change_then_revert_is_validated_again_by_content(project):
    project.attach()
    original = (project.root / "src" / "kernels.py").read_text()
    write_files(project.root, {"src/kernels.py": "broken\n"})
    commit_all(project.root, "break")
    assert not project.verify().ok
    write_files(project.root, {"src/kernels.py": original})
    commit_all(project.root, "revert")
    # The receipt is found by its trees, though a changed commit lies between it and the revert.
    verdict = project.verify()
    assert verdict.state == UNCHANGED and verdict.relation == ANCESTOR
    holder = git(project.root, "rev-parse", "HEAD~2")
    assert verdict.receipt is not None and verdict.receipt.note_commit == holder
    # A receipt on the reverted commit itself is preferred.
    project.attach("HEAD", project.signed("HEAD~2"))
    assert project.verify().state == VALIDATED


def test_receipt_copied_to_different_code_never_validates_it(project):
    signed = project.attach()
    write_files(project.root, {"tests/test_more.py": "def test_x(): pass\n"})
    commit_all(project.root, "more tests")
    project.attach("HEAD", signed)
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    assert any(r.code == "fingerprint-changed" and "tests/test_more.py" in r.message for r in verdict.reasons)


def test_failed_run_is_recorded_but_never_validates(project):
    project.attach(tests=[TestResult("tests/t.py::a", "passed", 0.1), TestResult("tests/t.py::b", "failed", 0.2)])
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    assert any(r.code == "tests-failed" and "tests/t.py::b" in r.message for r in verdict.reasons)


def test_all_skipped_run_proves_nothing(project):
    project.attach(tests=[TestResult("tests/t.py::a", "skipped", 0.0)])
    reasons = {r.code: r.message for r in project.verify().reasons}
    assert "no test passed" in reasons["tests-failed"] and "skipped" in reasons["skipped-tests"]


def test_signer_not_in_allowed_signers(project, keygen):
    stranger = keygen("ed25519", "stranger")
    project.attach(key=stranger)
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    assert [r.code for r in verdict.reasons] == ["signer-not-allowed"]


def test_garbage_signature_is_a_bad_signature(project):
    good = project.signed()
    broken = type(good)(good.receipt, good.payload,
                        "-----BEGIN SSH SIGNATURE-----\nnot base64 at all!\n-----END SSH SIGNATURE-----\n")
    project.attach(signed=broken)
    assert [r.code for r in project.verify().reasons] == ["bad-signature"]


def test_expired_key_is_not_allowed_and_says_why(repo, keygen):
    project = Project(repo, keygen("ed25519"), options='namespaces="gpu-proof",valid-before="20200101Z" ')
    project.attach()
    [reason] = project.verify().reasons
    assert reason.code == "signer-not-allowed" and "expired" in reason.message


def test_principal_must_match_the_key(project):
    project.attach(signer="mallory@example.com")
    verdict = project.verify()
    assert [r.code for r in verdict.reasons] == ["signer-not-allowed"]


def test_key_fingerprint_in_receipt_must_be_the_signing_key(project, keygen):
    other = keygen("ed25519", "other")
    project.trust_key(other, "alice@example.com")
    project.attach(key=other, key_fingerprint=project.key.fingerprint)
    verdict = project.verify()
    assert [r.code for r in verdict.reasons] == ["bad-signature"]
    assert "was signed by" in verdict.reasons[0].message


def test_every_byte_of_the_receipt_is_protected(project):
    signed = project.attach()
    commit = str(project.repo.head.target)
    text = signed.text.encode()
    positions = sorted(set(range(0, len(text), max(1, len(text) // 60))) | {len(text) - 40})
    for position in positions:
        if text[position:position + 1] in (b"\n",):
            continue
        tampered = bytearray(text)
        tampered[position] = ord("X") if tampered[position] != ord("X") else ord("Y")
        git(project.root, "notes", "--ref=gpu-proof", "add", "-f", "-F", "-", commit,
            input=tampered.decode("utf-8", errors="replace"))
        assert not project.verify().ok, f"tampering at byte {position} went unnoticed"


def test_garbage_note_entries_are_reported_and_good_receipts_still_count(project):
    good = project.signed()
    commit = str(project.repo.head.target)
    git(project.root, "notes", "--ref=gpu-proof", "add", "-F", "-", commit,
        input="total garbage\n\n" + good.text)
    verifier = open_verifier(project.repo, POLICY)
    verdicts = verifier.receipts_on(project.repo.head.peel())
    assert [v.ok for v in verdicts] == [False, True]
    assert verdicts[0].failures[0].code == "malformed"
    assert project.verify().ok


def test_merge_commit_with_unchanged_gpu_paths_is_validated_through_its_parent(project):
    project.attach()
    git(project.root, "checkout", "-q", "-b", "side")
    write_files(project.root, {"docs.md": "side docs\n"})
    commit_all(project.root, "side docs")
    git(project.root, "checkout", "-q", "main")
    write_files(project.root, {"CHANGELOG": "x\n"})
    commit_all(project.root, "changelog")
    git(project.root, "merge", "-q", "--no-edit", "side")
    assert project.verify().state == UNCHANGED


def test_policy_paths_decide_what_counts(project):
    project.attach()
    write_files(project.root, {"tests/test_new.py": "def test_y(): pass\n"})
    commit_all(project.root, "tests only")
    assert not project.verify().ok
    src_only = replace(POLICY, fingerprint_paths=["src"])
    assert project.verify(policy=src_only).state == UNCHANGED


def test_missing_allowed_signers_is_a_configuration_error(repo: Path):
    r = pygit2.Repository(str(repo))
    with pytest.raises(TrustError, match="allowed_signers"):
        load_trust(r, Policy())
    with pytest.raises(TrustError, match="does not exist"):
        load_trust(r, Policy(allowed_signers="nope/allowed_signers"))


def test_git_config_allowed_signers_and_missing_revocation_file(project):
    git(project.root, "config", "gpg.ssh.allowedSignersFile", str(project.root / ".gpu-proof" / "allowed_signers"))
    project.attach()
    assert project.verify(policy=Policy()).ok
    git(project.root, "config", "gpg.ssh.revocationFile", str(project.root / "missing.krl"))
    with pytest.raises(TrustError, match="missing.krl"):
        project.verify(policy=Policy())


def test_revoked_key_no_longer_validates(project):
    project.attach()
    revoked = project.root / "revoked_keys"
    revoked.write_text(project.key.public_line + "\n")
    git(project.root, "config", "gpg.ssh.revocationFile", str(revoked))
    verdict = project.verify()
    assert verdict.state == UNVALIDATED and "revoked" in verdict.reasons[0].message
    assert verdict.reasons[0].code == "key-revoked"


def test_trust_ref_reads_a_relative_configured_signers_file_from_the_trusted_revision(project, keygen):
    """With --trust-ref nothing comes from the working tree, a relative git-config path included."""
    git(project.root, "config", "gpg.ssh.allowedSignersFile", ".gpu-proof/allowed_signers")
    commit_all(project.root, "trusted signers")
    project.attach()
    intruder = keygen("ed25519", "intruder")
    project.trust_key(intruder, "alice@example.com")  # only in the working tree
    project.attach(key=intruder)
    no_policy = Policy()
    trusted = Verifier(project.repo, no_policy, load_trust(project.repo, no_policy, trust_rev="HEAD"))
    verdicts = trusted.receipts_on(project.repo.head.peel())
    assert [v.ok for v in verdicts] == [True, False]
    assert verdicts[1].failures[0].code == "signer-not-allowed"


def test_shallow_clone_says_why_a_receipt_may_be_missing(project, tmp_path):
    project.attach()
    write_files(project.root, {"README.md": "docs\n"})
    commit_all(project.root, "docs")
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{project.root}", str(shallow))
    (shallow / ".gpu-proof").mkdir(exist_ok=True)
    (shallow / ".gpu-proof" / "allowed_signers").write_text(
        (project.root / ".gpu-proof" / "allowed_signers").read_text())
    repo = pygit2.Repository(str(shallow))
    verdict = Verifier(repo, POLICY, load_trust(repo, POLICY)).verify(repo.head.peel())
    assert not verdict.ok and "shallow" in verdict.reasons[0].message


def test_trust_ref_reads_a_relative_revocation_file_from_the_trusted_revision(project):
    project.attach()
    revoked = project.root / ".gpu-proof" / "revoked"
    revoked.write_text(project.key.public_line + "\n")
    commit_all(project.root, "revoke")
    git(project.root, "config", "gpg.ssh.revocationFile", ".gpu-proof/revoked")
    revoked.write_text("")  # the working tree under review tries to un-revoke
    verifier = open_verifier(project.repo, POLICY, trust_rev="HEAD")
    verdict = verifier.verify(project.repo.head.peel())
    assert verdict.reasons[0].code == "key-revoked"


def test_bare_repository_reads_its_trust_roots_from_head(project, tmp_path):
    write_files(project.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    commit_all(project.root, "policy")
    project.attach()
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(project.root), str(bare))
    git(project.root, "push", "-q", str(bare), "refs/notes/gpu-proof")
    repo = pygit2.Repository(str(bare))
    assert open_verifier(repo).verify(repo.head.peel()).ok


def test_control_characters_from_a_receipt_are_escaped_in_messages(project):
    from gitproof.cli.describe import receipt_block

    project.attach(signer="\x1b]0;pwned\x07", tests=[TestResult("tests/t.py::\x1b[2Jx", "failed", 0.1)])
    verdicts = open_verifier(project.repo, POLICY).receipts_on(project.repo.head.peel())
    text = "\n".join(receipt_block(verdicts[0], 1)) + " ".join(f.message for f in verdicts[0].failures)
    assert "\x1b]0;pwned" not in text and "\x07" not in text and "\x1b[2J" not in text
    assert "%1B]0;pwned%07" in text and "%1B[2Jx" in text


def _history(root: Path) -> list[pygit2.Commit]:
    repo = pygit2.Repository(str(root))
    return list(repo.walk(repo.head.target, pygit2.enums.SortMode.TOPOLOGICAL))


def _named(verdicts) -> list[tuple[str, str | None, str | None]]:
    return [(v.state, v.relation, v.receipt.signed.identity if v.receipt and v.receipt.signed else None)
            for v in verdicts]


def test_a_log_names_the_receipt_a_single_verify_names(project):
    """verify_all reuses parents' verdicts; each must be what a fresh verify of the commit says,
    down to the receipt named: here an ancestor's receipt made after the parent's own."""
    project.attach()  # A: the kernel as it is
    write_files(project.root, {"README.md": "p\n"})
    commit_all(project.root, "P: docs")
    project.attach()  # P's own receipt
    time.sleep(1.1)
    project.attach(rev="HEAD~1")  # A again, later: the newest receipt for this code
    for n in range(3):
        write_files(project.root, {"README.md": f"c{n}\n"})
        commit_all(project.root, f"C{n}: docs")
    git(project.root, "switch", "-q", "-c", "side", "HEAD~2")
    write_files(project.root, {"NOTES.md": "side\n"})
    commit_all(project.root, "side: docs")
    git(project.root, "switch", "-q", "-")
    git(project.root, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    commits = _history(project.root)
    fresh = lambda: Verifier(project.repo, POLICY, load_trust(project.repo, POLICY))  # noqa: E731
    logged = fresh().verify_all(commits)
    single = [fresh().verify(c) for c in commits]
    assert _named(logged) == _named(single)
    assert {v.state for v in logged} == {VALIDATED, UNCHANGED}
