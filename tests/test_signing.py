"""gitproof.signing against real ssh-keygen, real ssh-agent and real keys."""
from __future__ import annotations

import os
import re
import signal
import stat
import shutil
import subprocess
import tempfile
from pathlib import Path

import pygit2
import pytest

from gitproof import signing
from gitproof.signing import SigningError, SigningKey
from tests import helpers

PAYLOAD = b"tree 1234\nresult: passed\n"


def verify(payload: bytes, signature: str, public_line: str, tmp_path: Path,
           principal: str = "signer@example.com") -> subprocess.CompletedProcess[str]:
    """Check a signature the way a verifier would: ssh-keygen -Y verify."""
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'{principal} namespaces="gpu-proof" {public_line}\n')
    sig_file = tmp_path / "payload.sig"
    sig_file.write_text(signature)
    return subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal,
         "-n", "gpu-proof", "-s", str(sig_file)],
        input=payload.decode(), capture_output=True, text=True,
    )


def assert_verifies(signature: str, public_line: str, tmp_path: Path) -> None:
    assert signature.startswith("-----BEGIN SSH SIGNATURE-----\n")
    assert signature.endswith("-----END SSH SIGNATURE-----\n")
    result = verify(PAYLOAD, signature, public_line, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def git_repo(repo: Path) -> pygit2.Repository:
    return pygit2.Repository(str(repo))


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch):
    """A real ssh-agent for this test; returns ssh-add as a function."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("OpenSSH's ssh-agent and ssh-add are not installed here")
    out = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    sock = re.search(r"SSH_AUTH_SOCK=([^;]+);", out).group(1)
    pid = int(re.search(r"SSH_AGENT_PID=(\d+);", out).group(1))
    monkeypatch.setenv("SSH_AUTH_SOCK", sock)

    def add(key: helpers.Key) -> None:
        subprocess.run(["ssh-add", "-q", str(key.private)], check=True, capture_output=True)

    try:
        yield add
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def recording_program(tmp_path: Path):
    """A gpg.ssh.program wrapper that logs its arguments, then execs ssh-keygen."""
    log = tmp_path / "program.log"
    script = tmp_path / "bin" / "my-ssh-keygen"
    script.parent.mkdir()
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec ssh-keygen "$@"\n')
    script.chmod(0o755)
    return script, log


def sign_args(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if "-Y sign" in line]
    assert len(lines) == 1
    return lines[0]


# --- key resolution and signing with the various key specs -------------------------


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "ecdsa-384", "rsa"])
def test_private_key_path_signs_and_verifies(git_repo, keygen, tmp_path, key_type):
    key = keygen(key_type)
    git_repo.config["user.signingKey"] = str(key.private)

    resolved = signing.resolve_signing_key(git_repo)

    assert resolved == SigningKey(str(key.private), False, "user.signingKey", "ssh-keygen")
    assert signing.public_key_of(resolved) == " ".join(key.public_line.split()[:2])
    assert signing.key_fingerprint(resolved) == key.fingerprint
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)


def test_tilde_in_key_path_is_expanded(git_repo, keygen, tmp_path):
    key = keygen()
    home_key = Path(os.environ["HOME"]) / ".ssh" / "id_tilde"
    home_key.parent.mkdir(exist_ok=True)
    home_key.write_bytes(key.private.read_bytes())
    home_key.chmod(0o600)
    git_repo.config["user.signingKey"] = "~/.ssh/id_tilde"

    resolved = signing.resolve_signing_key(git_repo)

    assert resolved.spec == str(home_key)
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)


def test_pub_path_signs_through_agent(git_repo, keygen, agent, tmp_path, recording_program):
    key = keygen()
    agent(key)
    key.private.unlink()  # only the agent holds the private half now
    script, log = recording_program
    git_repo.config["user.signingKey"] = str(key.public)
    git_repo.config["gpg.ssh.program"] = str(script)

    resolved = signing.resolve_signing_key(git_repo)

    assert not resolved.literal
    assert signing.public_key_of(resolved) == " ".join(key.public_line.split()[:2])
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)
    assert "-U" not in sign_args(log).split()


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "rsa"])
def test_key_literal_uses_agent_with_U(
    git_repo, keygen, agent, tmp_path, recording_program, key_type
):
    key = keygen(key_type)
    agent(key)
    script, log = recording_program
    git_repo.config["user.signingKey"] = "key::" + key.public_line
    git_repo.config["gpg.ssh.program"] = str(script)

    resolved = signing.resolve_signing_key(git_repo)

    assert resolved.literal and resolved.spec == key.public_line
    assert signing.key_fingerprint(resolved) == key.fingerprint
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)
    args = sign_args(log).split()
    assert args[:4] == ["-Y", "sign", "-n", "gpu-proof"] and "-U" in args


def test_legacy_ssh_literal(git_repo, keygen, agent, tmp_path):
    key = keygen()
    agent(key)
    git_repo.config["user.signingKey"] = key.public_line

    resolved = signing.resolve_signing_key(git_repo)

    assert resolved.literal and resolved.source == "user.signingKey"
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)


def test_literal_without_agent_reports_ssh_keygen_stderr(git_repo, keygen):
    key = keygen()
    git_repo.config["user.signingKey"] = "key::" + key.public_line

    resolved = signing.resolve_signing_key(git_repo)

    with pytest.raises(SigningError, match=r"ssh-keygen -Y sign` failed .*\S"):
        signing.sign(PAYLOAD, resolved)


def test_malformed_literal_is_rejected(git_repo):
    git_repo.config["user.signingKey"] = "key::ssh-ed25519 not-base64!"
    with pytest.raises(SigningError, match="not a valid SSH public key"):
        signing.resolve_signing_key(git_repo)


@pytest.mark.parametrize("prefix", ["key::", ""])
def test_default_key_command(git_repo, keygen, agent, tmp_path, prefix):
    key = keygen()
    agent(key)
    git_repo.config["gpg.ssh.defaultKeyCommand"] = (
        f"echo '{prefix}{key.public_line}'; echo 'key::ssh-ed25519 ignored-second-line'"
    )

    resolved = signing.resolve_signing_key(git_repo)

    assert resolved == SigningKey(key.public_line, True, "gpg.ssh.defaultKeyCommand", "ssh-keygen")
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)


def test_default_key_command_failure_and_empty_output(git_repo):
    git_repo.config["gpg.ssh.defaultKeyCommand"] = "echo agent is locked >&2; exit 3"
    with pytest.raises(SigningError, match="(?s)defaultKeyCommand failed.*agent is locked"):
        signing.resolve_signing_key(git_repo)
    git_repo.config["gpg.ssh.defaultKeyCommand"] = "true"
    with pytest.raises(SigningError, match="defaultKeyCommand returned no key"):
        signing.resolve_signing_key(git_repo)


def test_signing_key_beats_default_key_command(git_repo, keygen):
    key = keygen()
    git_repo.config["user.signingKey"] = str(key.private)
    git_repo.config["gpg.ssh.defaultKeyCommand"] = "exit 1"
    assert signing.resolve_signing_key(git_repo).source == "user.signingKey"


def test_override_beats_user_signing_key(git_repo, keygen, tmp_path):
    configured, override = keygen("ed25519", "configured"), keygen("ecdsa", "override")
    git_repo.config["user.signingKey"] = str(configured.private)

    resolved = signing.resolve_signing_key(git_repo, override=str(override.private))

    assert resolved.source == "--key" and resolved.spec == str(override.private)
    signature = signing.sign(PAYLOAD, resolved)
    assert_verifies(signature, override.public_line, tmp_path)
    assert verify(PAYLOAD, signature, configured.public_line, tmp_path).returncode != 0


def test_override_literal(git_repo, keygen):
    key = keygen()
    resolved = signing.resolve_signing_key(git_repo, override="key::" + key.public_line)
    assert resolved.literal and resolved.source == "--key"


# --- program ----------------------------------------------------------------------


def test_custom_program_is_used(git_repo, keygen, tmp_path, recording_program):
    key = keygen()
    script, log = recording_program
    git_repo.config["user.signingKey"] = str(key.private)
    git_repo.config["gpg.ssh.program"] = str(script)

    resolved = signing.resolve_signing_key(git_repo)

    assert resolved.program == str(script)
    assert_verifies(signing.sign(PAYLOAD, resolved), key.public_line, tmp_path)
    args = sign_args(log).split()
    assert args[:6] == ["-Y", "sign", "-n", "gpu-proof", "-f", str(key.private)]


def test_custom_namespace(keygen, tmp_path):
    key = keygen()
    signature = signing.sign(PAYLOAD, SigningKey(str(key.private), False, "--key"), "other")
    assert verify(PAYLOAD, signature, key.public_line, tmp_path).returncode != 0


def test_missing_program(git_repo, keygen):
    key = keygen()
    git_repo.config["user.signingKey"] = str(key.private)
    git_repo.config["gpg.ssh.program"] = "/nonexistent/ssh-keygen"

    resolved = signing.resolve_signing_key(git_repo)

    with pytest.raises(SigningError, match=r"(?s)/nonexistent/ssh-keygen.*gpg\.ssh\.program"):
        signing.sign(PAYLOAD, resolved)


def test_temp_files_are_private_and_removed(keygen, tmp_path, monkeypatch):
    key = keygen()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    seen: list[int] = []
    real_run = subprocess.run

    def spy(command, **kwargs):
        seen.append(stat.S_IMODE(Path(command[-1]).parent.stat().st_mode))
        return real_run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    signing.sign(PAYLOAD, SigningKey(str(key.private), False, "--key"))
    assert seen == [0o700]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_temp_files_removed_on_keyboard_interrupt(keygen, tmp_path, monkeypatch):
    key = keygen()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        signing.sign(PAYLOAD, SigningKey(str(key.private), False, "--key"))
    assert list((tmp_path / "tmp").iterdir()) == []


# --- errors -------------------------------------------------------------------------


def test_no_key_configured(git_repo):
    with pytest.raises(SigningError, match=r"user\.signingKey.*--key"):
        signing.resolve_signing_key(git_repo)


def test_nonexistent_key_path(git_repo, tmp_path):
    git_repo.config["user.signingKey"] = str(tmp_path / "nope")
    with pytest.raises(SigningError, match=r"not found: .*nope.*user\.signingKey"):
        signing.resolve_signing_key(git_repo)
    with pytest.raises(SigningError, match=r"not found: .*missing.*--key"):
        signing.resolve_signing_key(git_repo, override=str(tmp_path / "missing"))


# --- public key, fingerprint, principal -----------------------------------------------


def test_public_key_derived_without_pub_file(keygen, tmp_path):
    key = keygen("ecdsa")
    expected = " ".join(key.public_line.split()[:2])
    key.public.unlink()
    resolved = SigningKey(str(key.private), False, "--key")
    assert signing.public_key_of(resolved) == expected
    assert signing.key_fingerprint(resolved) == helpers.Key(key.private, key.private).fingerprint


def test_public_key_prefers_pub_file_beside_private(keygen):
    key = keygen("rsa")
    resolved = SigningKey(str(key.private), False, "--key")
    assert signing.public_key_of(resolved) == " ".join(key.public_line.split()[:2])


def test_default_principal(git_repo):
    git_repo.config["user.email"] = "dev@example.com"
    assert signing.default_principal(git_repo) == "dev@example.com"


def test_default_principal_missing(tmp_path):
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    level = pygit2.enums.ConfigLevel.GLOBAL
    saved = pygit2.settings.search_path[level]
    pygit2.settings.search_path[level] = str(empty_home)
    try:
        bare = pygit2.init_repository(str(tmp_path / "bare"))
        with pytest.raises(SigningError, match=r"user\.email.*--principal"):
            signing.default_principal(bare)
    finally:
        pygit2.settings.search_path[level] = saved
