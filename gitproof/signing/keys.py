"""Which key signs: git's key selection, keys from CI secrets, and their public halves."""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Mapping

import pygit2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gitproof import git
from gitproof.errors import GitproofError
from gitproof.trust.keys import SignatureError, fingerprint_of, parse_public_line

DEFAULT_PROGRAM = "ssh-keygen"
_LITERAL_PREFIX = "key::"
_NO_KEY_HINT = (
    "no signing key configured: set one with "
    "`git config user.signingKey ~/.ssh/id_ed25519.pub` (or pass --key)"
)


class SigningError(GitproofError):
    """Signing cannot proceed; the message says what to fix."""


@dataclass(frozen=True)
class SigningKey:
    """Which key to sign with and how it was specified.

    ``spec`` is the bare public key line when ``literal`` (``key::`` stripped),
    ``$NAME`` for a private key taken from an environment variable (its text
    is in ``secret``, never shown), otherwise the key file path with ``~``
    expanded.
    """

    spec: str
    literal: bool
    source: str
    program: str = DEFAULT_PROGRAM
    secret: bytes | None = field(default=None, repr=False, compare=False)
    public: str | None = field(default=None, compare=False)  # of ``secret``, derived once

    @property
    def path(self) -> Path | None:
        return None if self.literal or self.secret is not None else Path(self.spec)


# --- configuration -------------------------------------------------------------


def _config_value(repo: pygit2.Repository, name: str) -> str | None:
    """git config ``name``; an empty value counts as unset, as git's own signing does."""
    return git.config_value(repo, name) or None


def _signing_program(repo: pygit2.Repository) -> str:
    program = _config_value(repo, "gpg.ssh.program")
    return os.path.expanduser(program) if program else DEFAULT_PROGRAM


def default_principal(repo: pygit2.Repository) -> str:
    """The signer identity recorded next to the signature: ``user.email``."""
    email = _config_value(repo, "user.email")
    if email is None:
        raise SigningError(
            "no principal: set user.email (`git config user.email you@example.com`) "
            "or pass --principal"
        )
    return email


# --- key resolution ------------------------------------------------------------


def _literal_of(value: str) -> str | None:
    """The bare key if ``value`` is a literal key (git's is_literal_ssh_key)."""
    if value.startswith(_LITERAL_PREFIX):
        return value[len(_LITERAL_PREFIX):].strip()
    if value.startswith("ssh-"):
        return value.strip()
    return None


def _key_from_spec(value: str, source: str, program: str) -> SigningKey:
    literal = _literal_of(value)
    if literal is not None:
        _parse_public_line(literal, f"{source} literal key")
        return SigningKey(spec=literal, literal=True, source=source, program=program)
    path = os.path.expanduser(value.strip())
    if not Path(path).is_file():
        raise SigningError(_missing_file_message(value, path, source))
    return SigningKey(spec=path, literal=False, source=source, program=program)


def _missing_file_message(value: str, path: str, source: str) -> str:
    message = f"signing key file not found: {path} (from {source} = {value!r})"
    if source == "user.signingKey":
        message += (
            "; user.signingKey must be an SSH key path or a `key::ssh-...` literal "
            "(a GPG key id will not work here), or pass --key"
        )
    return message


def _run_default_key_command(command: str) -> str:
    try:
        result = subprocess.run(
            command, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise SigningError(f"gpg.ssh.defaultKeyCommand could not run ({command!r}): {exc}") from exc
    if result.returncode != 0:
        raise SigningError(
            f"gpg.ssh.defaultKeyCommand failed (exit {result.returncode}): {command!r}\n"
            f"{result.stderr.strip()}"
        )
    lines = result.stdout.splitlines()
    first = lines[0].strip() if lines else ""
    if not first or _literal_of(first) is None:
        raise SigningError(
            f"gpg.ssh.defaultKeyCommand returned no key ({command!r}): expected its first "
            f"output line to be `key::ssh-...` or `ssh-...`, got {first!r}"
        )
    return first


def resolve_signing_key(repo: pygit2.Repository, override: str | None = None) -> SigningKey:
    """Pick the signing key: ``override`` (--key), user.signingKey, defaultKeyCommand."""
    program = _signing_program(repo)
    if override:
        return _key_from_spec(override, "--key", program)
    configured = _config_value(repo, "user.signingKey")
    if configured is not None:
        return _key_from_spec(configured, "user.signingKey", program)
    command = _config_value(repo, "gpg.ssh.defaultKeyCommand")
    if command is None:
        raise SigningError(_NO_KEY_HINT)
    return _key_from_spec(
        _run_default_key_command(command), "gpg.ssh.defaultKeyCommand", program
    )


def key_from_env(repo: pygit2.Repository, name: str,
                 environ: Mapping[str, str] | None = None) -> SigningKey:
    """A private key whose OpenSSH text is the value of environment variable ``name``.

    Refuses, naming only the variable, when it is unset, empty, not a private
    key or passphrase-protected. The value is normalised (CRLF to LF, the final
    newline GitHub and GitLab secrets often lose) and checked by deriving its
    public key, so a bad secret is reported before any test runs.
    """
    environ = os.environ if environ is None else environ
    where = f"--key-env {name}"
    if not name or "=" in name or "\0" in name:
        raise SigningError(f"{where}: not a valid environment variable name")
    value = environ.get(name)
    if value is None:
        raise SigningError(f"{where}: environment variable {name} is not set; put the OpenSSH "
                           "private key there (a CI secret), or sign with --key")
    text = value.replace("\r\n", "\n").strip()
    if not text:
        raise SigningError(f"{where}: environment variable {name} is empty (CI systems pass an "
                           "empty value when the secret is not available to this job, for "
                           "example on pull requests from forks)")
    first = text.splitlines()[0]
    if not (first.startswith("-----BEGIN ") and first.endswith("PRIVATE KEY-----")):
        raise SigningError(f"{where}: {name} does not hold a private key: expected the text of an "
                           "OpenSSH private key file, starting with "
                           "'-----BEGIN OPENSSH PRIVATE KEY-----' (not a path or a public key)")
    key = SigningKey(spec=f"${name}", literal=False, source=where,
                     program=_signing_program(repo), secret=(text + "\n").encode("utf-8"))
    # unreadable or passphrase-protected: refuse now, not after the run
    return replace(key, public=public_key_of(key))


@contextmanager
def private_key_file(key: SigningKey, directory: Path | None = None) -> Iterator[Path]:
    """A key from the environment as a file for ssh-keygen, removed on leaving.

    Created with mode 0600 (never wider, whatever the umask) in ``directory``
    or in a fresh private (0700) temporary directory; removed on leaving,
    exceptions and Ctrl-C included (a ``.pub`` beside it goes too).
    """
    if key.secret is None:
        raise ValueError("private_key_file is only for keys from the environment")
    own = directory is None
    workdir = Path(tempfile.mkdtemp(prefix="gitproof-key-")) if directory is None else directory
    path = workdir / "signing_key"
    try:
        write_private(path, key.secret)
        yield path
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for leftover in (path, Path(f"{path}.pub")):
                try:
                    leftover.unlink()
                except FileNotFoundError:
                    pass


# --- public key and fingerprint ------------------------------------------------


def _parse_public_line(line: str, what: str) -> tuple[str, bytes]:
    """``type base64 [comment]`` as (type, blob); SigningError naming ``what`` if it is not one."""
    try:
        return parse_public_line(line)
    except SignatureError as exc:
        raise SigningError(f"{what} is not a valid SSH public key ({exc}): {line[:60]!r}") from exc


def _public_line_in(path: Path) -> str | None:
    """The public key line if ``path`` holds one, else None."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    first = text.strip().splitlines()[0] if text.strip() else ""
    try:
        key_type, blob = _parse_public_line(first, str(path))
    except SigningError:
        return None
    return f"{key_type} {base64.b64encode(blob).decode('ascii')}"


def _derive_with_cryptography(path: Path) -> str | None:
    try:
        private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        raw = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    except (ValueError, TypeError, OSError, UnsupportedAlgorithm):
        return None  # encrypted or a type cryptography does not know (e.g. -sk keys)
    return raw.decode("ascii")


def _public_line_of_secret(key: SigningKey) -> str:
    """The public half of a key from the environment: in memory when possible."""
    assert key.secret is not None
    try:
        private = serialization.load_ssh_private_key(key.secret, password=None)
        return private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode("ascii")
    except TypeError as exc:  # cryptography's "private key is encrypted"
        raise SigningError(
            f"{key.source}: the key in {key.spec} is protected by a passphrase, which nothing "
            "can type in CI; store an unencrypted key in the secret (`ssh-keygen -p -N ''`)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm):
        pass  # the older PEM format, or a type cryptography does not know: ask ssh-keygen
    with private_key_file(key) as path:
        return _derive_with_ssh_keygen(path, key.program, from_env=key)


def _derive_with_ssh_keygen(path: Path, program: str, from_env: SigningKey | None = None) -> str:
    try:
        result = subprocess.run(
            [program, "-y", "-f", str(path)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise program_error(program, exc) from exc
    if result.returncode != 0:
        if from_env is not None:  # no file the user could fix; its temporary name means nothing
            stderr = result.stderr.strip().replace(str(path), from_env.spec)
            raise SigningError(f"{from_env.source}: could not read the private key in "
                               f"{from_env.spec} with `{program} -y`: {stderr}")
        raise SigningError(
            f"could not read the public key of {path} with `{program} -y`: "
            f"{result.stderr.strip()} (put the matching .pub file beside it)"
        )
    return result.stdout.strip()


def public_key_of(key: SigningKey) -> str:
    """The public key as ``<type> <base64>`` (comment dropped, so it is canonical)."""
    if key.literal:
        line = key.spec
    elif key.secret is not None:
        line = key.public or _public_line_of_secret(key)
    else:
        path = Path(key.spec)
        line = (
            _public_line_in(path)
            or _public_line_in(Path(f"{path}.pub"))
            or _derive_with_cryptography(path)
            or _derive_with_ssh_keygen(path, key.program)
        )
    key_type, blob = _parse_public_line(line, f"public key of {key.spec}")
    return f"{key_type} {base64.b64encode(blob).decode('ascii')}"


def key_fingerprint(key: SigningKey) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -l -E sha256`` prints it: for a certificate, the
    certified key's, which is also what verification compares (the one fingerprint function)."""
    _, blob = _parse_public_line(public_key_of(key), "public key")
    return fingerprint_of(blob)


# --- signing -------------------------------------------------------------------

def program_error(program: str, exc: OSError) -> SigningError:
    return SigningError(
        f"cannot run the SSH signing program {program!r}: {exc.strerror or exc}. "
        "Install OpenSSH (ssh-keygen 8.2p1+) or point "
        "`git config gpg.ssh.program` at it"
    )

def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
