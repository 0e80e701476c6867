"""Hostile receipt content and policy values get a verdict or one clear line, never a traceback.

Anyone can put any note on any commit, so every id and number in a receipt is untrusted;
these are the cases an attacker-minded review reproduced as crashes.
"""
from __future__ import annotations

import pygit2
import pytest

from gitproof.git import commit_time, lookup
from tests.helpers import commit_all, git, write_files
from tests.receipts import Project
from tests.remotes import gp


@pytest.fixture
def project(repo, keygen) -> Project:
    project = Project(repo, keygen("ed25519"))
    write_files(repo, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    commit_all(repo, "policy")
    return project


def run_all(root) -> list:
    return [gp(root, *command) for command in (("verify",), ("show",), ("log", "-n", "5"), ("status",))]


@pytest.mark.parametrize("overrides", [
    {"commit": "3" * 64},                                   # a SHA-256 id in a SHA-1 repository
    {"commit": "3" * 40},                                   # names nothing
    {"trees": {"src": "1" * 64, "tests": "2" * 64}},
    {"trees": {"src": "1" * 40, "tests": "2" * 40}},
])
def test_ids_of_the_wrong_width_or_naming_nothing_get_a_verdict(project, overrides):
    project.attach(**overrides)
    for result in run_all(project.root):
        assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr


def test_a_commit_whose_time_is_out_of_range_is_no_crash(project):
    repo = project.repo
    head = repo.head.peel(pygit2.Commit)
    raw = (f"tree {head.tree.id}\nparent {head.id}\n"
           "author Far <far@example.com> 999999999999999 +0000\n"
           "committer Far <far@example.com> 999999999999999 +0000\n\nfrom the far future\n")
    odd = repo.odb.write(pygit2.enums.ObjectType.COMMIT, raw.encode())
    assert repo[odd].commit_time == 999999999999999 and commit_time(repo[odd]) is None
    project.attach(commit=str(odd))
    for result in run_all(project.root):
        assert "Traceback" not in result.stderr and result.returncode in (0, 1), result.stderr


def test_lookup_answers_none_for_anything_that_is_not_an_object(project):
    repo = project.repo
    assert lookup(repo, "z" * 40) is None and lookup(repo, "1" * 64) is None and lookup(repo, "") is None
    assert lookup(repo, str(repo.head.target)) is not None


@pytest.mark.parametrize("flag, value", [("--max-age-days", "99999999999999"), ("--max-age-days", "36501")])
def test_huge_max_age_is_a_clear_usage_error(project, flag, value):
    project.attach()
    result = gp(project.root, "verify", flag, value)
    assert result.returncode == 2 and "max_age_days must be at most 36500" in result.stderr


def test_huge_max_age_in_the_policy_is_a_clear_error(project):
    write_files(project.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
                                                 "max_age_days = 10000000000\n"})
    result = gp(project.root, "verify")
    assert result.returncode == 2 and "max_age_days must be at most 36500" in result.stderr


SNEAKY = "fix \x1b]8;;http://evil\x07link\x1b[2J \u202eevil\u2028next \x85line"


def test_commit_subjects_and_paths_are_escaped_on_the_terminal(project):
    write_files(project.root, {f"src/{SNEAKY.replace(chr(0x1b), 'E').replace(chr(7), 'B')}.py": "x = 1\n"})
    commit_all(project.root, SNEAKY)
    outputs = [gp(project.root, "verify").stdout, gp(project.root, "log", "-n", "2").stdout]
    assert gp(project.root, "install").returncode == 0
    head = str(project.repo.revparse_single("HEAD").id)
    hook = gp(project.root, "hook", "pre-push", "origin", "url",
              input=f"refs/heads/main {head} refs/heads/main {'0' * 40}\n")
    outputs.append(hook.stderr)
    for output in outputs:
        assert not any(c in output for c in ("\x1b", "\x07", "\u202e", "\u2028", "\x85")), repr(output)
    assert "fix %1B]8;;http://evil%07link" in outputs[0]
    assert "%E2%80%AEevil" in hook.stderr, hook.stderr  # the bidi override, made visible


def test_a_note_over_the_size_limit_is_refused_unread(project, tmp_path):
    import json

    from gitproof import notes, receipt

    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"x\n" * (receipt.MAX_NOTE_BYTES // 2 + 1))
    git(project.root, "notes", "--ref=gpu-proof", "add", "-F", str(junk), "HEAD")
    result = gp(project.root, "verify", "--json")
    assert result.returncode == 1, result.stderr
    [reason] = json.loads(result.stdout)["results"][0]["reasons"]
    assert reason["code"] == "note-too-large" and "over the 33554432-byte limit" in reason["message"]
    assert "over the 33554432-byte limit; not read" in gp(project.root, "show").stdout
    project.attach()  # a receipt can still be recorded on that commit, appended unread
    assert notes.NotesStore(project.repo).blob_size(
        notes.NotesStore(project.repo).index()[str(project.repo.head.target)][0]) > receipt.MAX_NOTE_BYTES


def test_a_pending_ref_that_points_at_a_tree_is_passed_over(project):
    tree = git(project.root, "rev-parse", "HEAD^{tree}")
    git(project.root, "update-ref", "refs/gpu-proof/pending/" + "a" * 40, tree)
    for command in (("status",), ("verify",), ("hook", "post-commit")):
        result = gp(project.root, *command)
        assert "Traceback" not in result.stderr and result.returncode in (0, 1), (command, result.stderr)


def test_a_directory_name_that_is_not_utf8_under_the_fingerprint_paths(project):
    import os

    odd = project.root / "tests" / os.fsdecode(b"caf\xe9")
    odd.mkdir()
    (odd / "test_x.py").write_text("def test_x():\n    pass\n")
    commit_all(project.root, "a Latin-1 directory name")
    for command in (("status",), ("verify",), ("show",), ("log",), ("run", "--unsigned")):
        result = gp(project.root, *command)
        assert "Traceback" not in result.stderr and result.returncode in (0, 1), (command, result.stderr)


@pytest.mark.parametrize("mangle, accepted", [
    (lambda line: b"caf\xe9@example.com " + line.split(b" ", 1)[1] + line, True),   # another line, not UTF-8
    (lambda line: line.replace(b'namespaces="gpu-proof"', b'namespaces="gpu-\xff"'), False),
])
def test_allowed_signers_bytes_that_are_not_utf8_are_judged_as_ssh_keygen_judges_them(project, tmp_path,
                                                                                      mangle, accepted):
    import subprocess

    signed = project.attach()
    signers = project.root / ".gpu-proof" / "allowed_signers"
    signers.write_bytes(mangle(signers.read_bytes()))
    ours = gp(project.root, "verify")
    assert "Traceback" not in ours.stderr and ours.returncode == (0 if accepted else 1), ours.stderr
    (tmp_path / "sig").write_text(signed.signature)
    stock = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", "alice@example.com",
                            "-n", "gpu-proof", "-s", str(tmp_path / "sig")], input=signed.payload,
                           capture_output=True)
    assert (stock.returncode == 0) == accepted
    listed = gp(project.root, "signers", "list")
    assert listed.returncode == 0 and ("%E9" in listed.stdout or "%FF" in listed.stdout)


def test_a_principal_with_a_nul_never_reaches_ssh_keygen_as_someone_else(repo, keygen):
    dsa = Project(repo, keygen("dsa"))  # DSA: verified by ssh-keygen, not in process
    write_files(repo, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    commit_all(repo, "policy")
    dsa.attach(signer="alice@example.com\x00mallory")
    result = gp(repo, "verify", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    import json
    [reason] = json.loads(result.stdout)["results"][0]["reasons"]
    assert "contains a NUL character; refused" in reason["message"], reason


def test_a_binary_krl_read_from_the_trusted_revision_is_used_not_misread(project, tmp_path):
    import subprocess

    krl = project.root / ".gpu-proof" / "revoked.krl"
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(krl), str(project.key.public)], check=True,
                   capture_output=True)
    commit_all(project.root, "revoke alice's key")
    project.attach()
    assert gp(project.root, "verify", "--trust-ref", "HEAD").returncode == 0  # no revocation list yet
    git(project.root, "config", "gpg.ssh.revocationFile", ".gpu-proof/revoked.krl")
    result = gp(project.root, "verify", "--trust-ref", "HEAD")  # the KRL, from HEAD's objects
    assert result.returncode == 1, result.stdout + result.stderr  # refused by ssh-keygen's KRL check
    assert "Traceback" not in result.stderr and "not a public key" not in result.stdout + result.stderr


def test_show_raw_prints_the_note_byte_for_byte(project, tmp_path):
    import subprocess

    from tests.remotes import tool_env

    junk = tmp_path / "note.bin"
    junk.write_bytes(b"caf\xe9 \x00\xff not a receipt\n")
    git(project.root, "notes", "--ref=gpu-proof", "add", "-F", str(junk), "HEAD")
    raw = subprocess.run(["git", "gpu-proof", "show", "--raw"], cwd=project.root, env=tool_env(),
                         capture_output=True)
    assert raw.returncode == 0 and raw.stdout == junk.read_bytes()


def test_a_hostile_path_in_the_policy_is_shown_escaped_in_errors(project):
    evil = ".gpu-proof/\x1b]0;owned\x07signers\u202e"
    write_files(project.root, {"pyproject.toml": f'[tool.gpu_proof]\nallowed_signers = "{evil}"\n'.replace(
        "\x1b", "\\u001b").replace("\x07", "\\u0007")})
    for command in (("verify",), ("show",), ("log",)):
        result = gp(project.root, *command)
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr and "\u202e" not in result.stderr
        assert "%1B]0;owned%07signers%E2%80%AE" in result.stderr, result.stderr
