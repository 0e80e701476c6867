"""`git gpu-proof signers add|list`, run as git runs it, against a real key server on 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from tests.helpers import Key, commit_all, git, write_files
from tests.receipts import attach_receipt, sign_receipt
from tests.keyserver import KeyServer

BIN = str(Path(sys.executable).parent)
SIGNERS = ".gpu-proof/allowed_signers"



pytestmark = pytest.mark.usefixtures("private_cache")  # ports are reused: no shared key cache

def gp(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def project(repo: Path, server: KeyServer) -> Path:
    write_files(repo, {"pyproject.toml": f'[tool.gpu_proof]\nallowed_signers = "{SIGNERS}"\n'
                                         f'github_url = "{server.url}"\n'})
    commit_all(repo, "policy")
    return repo


def key_part(key: Key) -> str:
    return " ".join(key.public_line.split()[:2])


def ssh_keygen_verifies(signers_file: Path, principal: str, payload: bytes, signature: str,
                        tmp: Path) -> subprocess.CompletedProcess:
    sig = tmp / "receipt.sig"
    sig.write_text(signature)
    return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers_file), "-I", principal,
                           "-n", "gpu-proof", "-s", str(sig)], input=payload, capture_output=True)


@pytest.mark.parametrize("args", [["signers", "--help"], ["signers", "add", "--help"],
                                  ["signers", "list", "--help"]])
def test_help(tmp_path, args):
    result = gp(tmp_path, *args)
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_add_from_github_writes_lines_that_ssh_keygen_accepts(project, server, keygen, tmp_path):
    alice, alice_rsa = keygen("ed25519", "alice"), keygen("rsa", "alice-rsa")
    server.publish("alice", alice, alice_rsa)
    result = gp(project, "signers", "add", "--github", "alice")
    assert result.returncode == 0, result.stderr
    assert "2 key(s) of alice added" in result.stdout and "0 already present" in result.stdout
    assert alice.fingerprint in result.stdout
    assert server.requests == ["/alice.keys"]
    signers = project / SIGNERS
    assert signers.read_text() == "".join(f'alice namespaces="gpu-proof" {key_part(k)}\n'
                                          for k in (alice, alice_rsa))

    signed = sign_receipt(pygit2.Repository(str(project)), alice, principal="alice")
    check = ssh_keygen_verifies(signers, "alice", signed.payload, signed.signature, tmp_path)
    assert check.returncode == 0, check.stderr
    assert ssh_keygen_verifies(signers, "bob", signed.payload, signed.signature, tmp_path).returncode != 0

    attach_receipt(project, alice, principal="alice")
    verify = gp(project, "verify")
    assert verify.returncode == 0 and "validated" in verify.stdout


def test_second_add_is_idempotent_and_adds_only_new_keys(project, server, keygen):
    first, second = keygen("ed25519", "first"), keygen("ed25519", "second")
    server.publish("alice", first)
    assert gp(project, "signers", "add", "--github", "alice").returncode == 0
    before = (project / SIGNERS).read_bytes()
    again = gp(project, "signers", "add", "--github", "alice", "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["added"] == [] and [k["fingerprint"] for k in data["already_present"]] == [first.fingerprint]
    assert (project / SIGNERS).read_bytes() == before

    server.publish("alice", first, second)
    third = json.loads(gp(project, "signers", "add", "--github", "alice", "--json").stdout)
    assert [k["fingerprint"] for k in third["added"]] == [second.fingerprint]
    assert third["principal"] == "alice" and third["file"] == str(project / SIGNERS)
    assert third["source"] == f"{server.url}/alice.keys"
    lines = (project / SIGNERS).read_text().splitlines()
    assert len(lines) == 2 and lines[1] == f'alice namespaces="gpu-proof" {key_part(second)}'


def test_existing_entries_are_kept_and_count_as_present(project, server, keygen):
    alice, other = keygen("ed25519", "alice"), keygen("ed25519", "other")
    # no trailing newline; alice's key already listed among several principals without namespaces
    (project / SIGNERS).parent.mkdir()
    existing = f"# team\nrunner@example.com {key_part(other)}\n\"carol,alice\" {key_part(alice)}"
    (project / SIGNERS).write_text(existing)
    server.publish("alice", alice)
    server.publish("carol", other)
    result = gp(project, "signers", "add", "--github", "alice")
    assert result.returncode == 0 and "0 key(s) of alice added" in result.stdout
    assert (project / SIGNERS).read_text() == existing
    assert gp(project, "signers", "add", "--github", "carol").returncode == 0
    text = (project / SIGNERS).read_text()
    assert text == existing + f'\ncarol namespaces="gpu-proof" {key_part(other)}\n'


def test_entry_for_another_namespace_does_not_count(project, server, keygen):
    alice = keygen("ed25519", "alice")
    (project / SIGNERS).parent.mkdir()
    (project / SIGNERS).write_text(f'alice namespaces="git" {key_part(alice)}\n')
    server.publish("alice", alice)
    data = json.loads(gp(project, "signers", "add", "--github", "alice", "--json").stdout)
    assert len(data["added"]) == 1


def test_add_from_file_and_from_url(project, server, keygen, tmp_path):
    ed, ecdsa = keygen("ed25519", "ed"), keygen("ecdsa", "ec")
    keys_file = tmp_path / "bob.keys"
    keys_file.write_text(f"# bob's keys\n{ed.public_line}\n\nnot a key\n{ecdsa.public_line}\n")
    result = gp(project, "signers", "add", "--github", "bob", "--from", str(keys_file))
    assert result.returncode == 0, result.stderr
    assert f"keys from {keys_file}" in result.stdout
    assert (project / SIGNERS).read_text().splitlines() == [
        f'bob namespaces="gpu-proof" {key_part(ed)}', f'bob namespaces="gpu-proof" {key_part(ecdsa)}']
    assert server.requests == []

    dave = keygen("ed25519", "dave")
    server.publish("somewhere", dave)
    by_url = gp(project, "signers", "add", "--github", "dave", "--from", f"{server.url}/somewhere.keys")
    assert by_url.returncode == 0, by_url.stderr
    assert server.requests == ["/somewhere.keys"]
    assert (project / SIGNERS).read_text().splitlines()[-1] == f'dave namespaces="gpu-proof" {key_part(dave)}'


def test_refusals_leave_no_file(project, server, tmp_path):
    server.publish("empty", extra="\n")
    cases = [
        (["--github", "empty"], "no SSH public keys for empty"),
        (["--github", "ghost"], "GitHub user ghost not found"),
        (["--github", "not_a_user"], "not a valid GitHub username"),
        (["--github", "alice", "--from", str(tmp_path / "missing.keys")], "cannot read keys file"),
        (["--github", "alice", "--from", f"{server.url}/nope.keys"], "cannot fetch keys for alice"),
    ]
    for args, message in cases:
        result = gp(project, "signers", "add", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (project / SIGNERS).exists()
    assert "/not_a_user.keys" not in server.requests


def test_server_down_is_a_clean_error(project, tmp_path):
    down = KeyServer(tmp_path / "down")
    url = down.url
    down.close()
    result = gp(project, "signers", "add", "--github", "alice", "--from", f"{url}/alice.keys")
    assert result.returncode == 2 and "cannot fetch keys for alice" in result.stderr


def test_no_file_configured_is_refused(repo, server, keygen):
    write_files(repo, {"pyproject.toml": f'[tool.gpu_proof]\ngithub_url = "{server.url}"\n'})
    server.publish("alice", keygen("ed25519"))
    result = gp(repo, "signers", "add", "--github", "alice")
    assert result.returncode == 2
    assert "[tool.gpu_proof] allowed_signers" in result.stderr
    assert "gpg.ssh.allowedSignersFile" in result.stderr
    assert server.requests == []


def test_git_config_file_and_explicit_file(repo, server, keygen, tmp_path):
    write_files(repo, {"pyproject.toml": f'[tool.gpu_proof]\ngithub_url = "{server.url}"\n'})
    alice = keygen("ed25519")
    server.publish("alice", alice)
    git(repo, "config", "gpg.ssh.allowedSignersFile", "trust/signers")
    (repo / "src" / "deeper").mkdir()
    result = gp(repo / "src" / "deeper", "signers", "add", "--github", "alice")
    assert result.returncode == 0, result.stderr
    assert (repo / "trust" / "signers").read_text() == f'alice namespaces="gpu-proof" {key_part(alice)}\n'

    explicit = tmp_path / "elsewhere" / "allowed"
    result = gp(repo, "signers", "add", "--github", "alice", "--file", str(explicit))
    assert result.returncode == 0 and explicit.read_text().startswith("alice namespaces=")


def test_add_works_before_the_first_commit(tmp_path, server, keygen):
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    write_files(root, {"pyproject.toml": f'[tool.gpu_proof]\nallowed_signers = "{SIGNERS}"\n'
                                         f'github_url = "{server.url}"\n'})
    server.publish("alice", keygen("ed25519"))
    result = gp(root, "signers", "add", "--github", "alice")
    assert result.returncode == 0, result.stderr
    assert (root / SIGNERS).is_file()
    assert gp(root, "signers", "list").returncode == 0


def test_symlinked_signers_file_is_updated_in_place(project, server, keygen, tmp_path):
    real = tmp_path / "shared" / "allowed_signers"
    real.parent.mkdir()
    real.write_text("")
    (project / ".gpu-proof").mkdir()
    (project / SIGNERS).symlink_to(real)
    server.publish("alice", keygen("ed25519"))
    assert gp(project, "signers", "add", "--github", "alice").returncode == 0
    assert (project / SIGNERS).is_symlink() and real.read_text().startswith("alice ")


def test_list_human_and_json(project, server, keygen):
    alice, bob = keygen("ed25519", "alice"), keygen("rsa", "bob")
    server.publish("alice", alice)
    server.publish("bob", bob)
    assert gp(project, "signers", "add", "--github", "alice").returncode == 0
    assert gp(project, "signers", "add", "--github", "bob").returncode == 0
    with (project / SIGNERS).open("a") as handle:
        handle.write("broken line\n")

    result = gp(project, "signers", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"signer source: allowed_signers, 2 entries in {project / SIGNERS}"
    assert lines[1].split()[:3] == ["alice", "ssh-ed25519", alice.fingerprint]
    assert lines[2].split()[:3] == ["bob", "ssh-rsa", bob.fingerprint]
    assert 'namespaces="gpu-proof"' in lines[1] and "(line 1)" in lines[1]
    assert "allowed_signers line skipped" in result.stderr

    data = json.loads(gp(project, "signers", "list", "--json").stdout)
    assert data["source"] == "allowed_signers" and data["mode"] == "open"
    assert data["file"] == str(project / SIGNERS)
    assert [(e["principals"], e["fingerprint"], e["namespaces"], e["line"]) for e in data["entries"]] == [
        ("alice", alice.fingerprint, "gpu-proof", 1), ("bob", bob.fingerprint, "gpu-proof", 2)]
    assert data["entries"][0]["cert_authority"] is False and data["entries"][0]["valid_before"] is None
    assert len(data["warnings"]) == 1


def test_list_from_trust_ref(project, server, keygen):
    server.publish("alice", keygen("ed25519"))
    assert gp(project, "signers", "add", "--github", "alice").returncode == 0
    assert json.loads(gp(project, "signers", "list", "--json").stdout)["entries"]
    committed = gp(project, "signers", "list", "--trust-ref", "HEAD")
    assert committed.returncode == 2 and "does not exist at trusted revision HEAD" in committed.stderr
    commit_all(project, "trust alice")
    data = json.loads(gp(project, "signers", "list", "--json", "--trust-ref", "HEAD").stdout)
    assert data["file"] == f"HEAD:{SIGNERS}" and len(data["entries"]) == 1


def test_list_without_a_file_fails(repo):
    result = gp(repo, "signers", "list")
    assert result.returncode == 2 and "no allowed signers configured" in result.stderr


def test_list_and_verify_with_the_github_source(repo, server, keygen):
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    write_files(repo, {"pyproject.toml": f'[tool.gpu_proof]\nsigner_source = "github"\n'
                                         f'github_url = "{server.url}"\nsigner_mode = "restricted"\n'
                                         f'signers = ["alice", "bob"]\ngithub_cache_minutes = 15\n'})
    commit_all(repo, "github policy")
    result = gp(repo, "signers", "list")
    assert result.returncode == 0, result.stderr
    assert f"keys from {server.url}/<user>.keys" in result.stdout
    assert "mode: restricted" in result.stdout and "only signers matching: alice, bob" in result.stdout
    assert "cached for 15 min" in result.stdout
    data = json.loads(gp(repo, "signers", "list", "--json").stdout)
    assert data["source"] == "github" and data["mode"] == "restricted"
    assert data["signers"] == ["alice", "bob"] and data["github_url"] == server.url
    assert data["cache_minutes"] == 15 and data["key_fingerprints"] is None
    assert server.requests == []

    attach_receipt(repo, alice, principal="alice")
    verify = gp(repo, "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["results"][0]["receipt"]["signer"] == "alice"
    assert server.requests == ["/alice.keys"]
    assert gp(repo, "verify").returncode == 0
    assert server.requests == ["/alice.keys"]  # the second command used the disk cache

    write_files(repo, {"src/kernels.py": "X = 1\n"})
    commit_all(repo, "carol's change")
    attach_receipt(repo, keygen("ed25519", "carol"), principal="carol")
    refused = gp(repo, "verify")
    assert refused.returncode == 1 and "not in the policy's signers" in refused.stdout


def test_add_warns_when_the_policy_uses_github(repo, server, keygen):
    write_files(repo, {"pyproject.toml": f'[tool.gpu_proof]\nsigner_source = "github"\n'
                                         f'allowed_signers = "{SIGNERS}"\ngithub_url = "{server.url}"\n'})
    server.publish("alice", keygen("ed25519"))
    result = gp(repo, "signers", "add", "--github", "alice")
    assert result.returncode == 0 and "verification does not read this file" in result.stderr
