"""Passphrase-protected key files: telling them apart, and unlocking one once, up front."""
from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
import tempfile
from pathlib import Path


from gitproof.trust.keys import SignatureError, WireReader

from gitproof.signing.keys import (SigningError, SigningKey, program_error, write_private)

_OPENSSH_MAGIC = b"openssh-key-v1\x00"


def needs_passphrase(key: SigningKey) -> bool:
    """A private key file protected by a passphrase (ssh-agent may still hold its key)."""
    if key.path is None:
        return False
    try:
        data = key.path.read_bytes()
    except OSError:
        return False
    return _encrypted(data)


def _encrypted(data: bytes) -> bool:
    text = data.decode("ascii", errors="replace").replace("\r\n", "\n")
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or not lines[0].startswith("-----BEGIN "):
        return False
    if "ENCRYPTED" in lines[0] or any(line.startswith("Proc-Type:") and "ENCRYPTED" in line
                                      for line in lines[:3]):
        return True  # PEM: PKCS#8 "ENCRYPTED PRIVATE KEY", or the older Proc-Type header
    if lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        return False
    try:
        blob = base64.b64decode("".join(lines[1:-1]))
        cipher = WireReader(blob[len(_OPENSSH_MAGIC):]).string()
    except (ValueError, binascii.Error, SignatureError):
        return False
    return blob.startswith(_OPENSSH_MAGIC) and cipher != b"none"


def unlock(key: SigningKey, attempts: int = 3) -> bytes:
    """The text of a passphrase-protected key file, decrypted; the passphrase is asked once.

    ``ssh-keygen -p`` asks for it on the terminal (this process's standard
    input must be one) and decrypts a copy, a 0600 file in a private (0700)
    temporary directory, which is read back and removed at once, Ctrl-C
    included. The decrypted text stays in memory: a run hands it to the
    recorder as ``--key-env`` does. Up to ``attempts`` tries for a mistyped passphrase.
    """
    if key.path is None:
        raise ValueError("unlock is only for private key files")
    original = key.path.read_bytes()
    workdir = Path(tempfile.mkdtemp(prefix="gitproof-unlock-"))
    try:
        copy = workdir / "signing_key"
        problem = ""
        for _ in range(attempts):
            write_private(copy, original)
            problem = _decrypt_copy(copy, key.program)
            if not problem:
                return copy.read_bytes()
            copy.unlink()
            if "passphrase" not in problem:
                break
        raise SigningError(f"could not unlock {key.spec}: {problem or 'no passphrase given'}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _decrypt_copy(copy: Path, program: str) -> str:
    """Run ``ssh-keygen -p -N ''`` on the copy; its error text, or "" on success."""
    try:  # standard input stays the terminal: ssh-keygen reads the passphrase there
        result = subprocess.run([program, "-p", "-N", "", "-f", str(copy)], capture_output=True, text=True)
    except OSError as exc:
        raise program_error(program, exc) from exc
    if result.returncode == 0:
        return ""
    return (result.stderr.strip() or result.stdout.strip()).replace(str(copy), "the key") or \
        f"exit status {result.returncode}"
