"""Signing with an SSH user certificate, end to end: a CA, a certificate for the principal,
user.signingKey at the -cert.pub, a cert-authority line; run, verify, and stock ssh-keygen."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2

from gitproof.notes import NotesStore
from tests.helpers import commit_all, generate_key, git, write_files
from tests.remotes import gp


def certify(ca, key, principal: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca.private), "-I", "test-cert", "-n", principal,
                    "-V", "-1d:+30d", str(key.public)], check=True, capture_output=True)
    return key.private.parent / f"{key.private.name}-cert.pub"


def signing_with_a_certificate(repo: Path, tmp_path: Path, certified: str):
    """A CA trusted for runner@example.com, and user.signingKey at a certificate for
    ``certified``; returns the certified user key."""
    ca = generate_key(tmp_path / "keys", "ed25519", "ca")
    user = generate_key(tmp_path / "keys", "ed25519", "user")
    cert = certify(ca, user, certified)
    write_files(repo, {
        ".gpu-proof/allowed_signers": f'runner@example.com cert-authority,namespaces="gpu-proof" '
                                      f'{ca.public.read_text().strip()}\n',
        "pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n',
    })
    commit_all(repo, "trust the CA")
    git(repo, "config", "user.signingKey", str(cert))
    return user


def test_a_certificate_signed_receipt_verifies_here_and_with_ssh_keygen(repo: Path, tmp_path: Path):
    user = signing_with_a_certificate(repo, tmp_path, "runner@example.com")

    run = gp(repo, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    verify = gp(repo, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    r = pygit2.Repository(str(repo))
    [entry] = NotesStore(r).entries(str(r.head.target))
    certified_key = subprocess.run(["ssh-keygen", "-l", "-f", str(user.public)], capture_output=True,
                                   text=True, check=True).stdout.split()[1]
    assert entry.signed.receipt.key_fingerprint == certified_key  # the certified key's, as ssh-keygen says
    (tmp_path / "sig").write_text(entry.signed.signature)
    stock = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(repo / ".gpu-proof/allowed_signers"),
                            "-I", "runner@example.com", "-n", "gpu-proof", "-s", str(tmp_path / "sig")],
                           input=entry.signed.payload, capture_output=True)
    assert stock.returncode == 0, stock.stderr


def test_a_certificate_for_another_principal_is_not_allowed(repo: Path, tmp_path: Path):
    signing_with_a_certificate(repo, tmp_path, "mallory@example.com")
    run = gp(repo, "run")  # runner@example.com (user.email) claims it
    assert run.returncode == 6 and "signer-not-allowed" in run.stdout + run.stderr  # run's own check
    refused = gp(repo, "verify", "--json")
    assert refused.returncode == 1 and "signer-not-allowed" in refused.stdout
