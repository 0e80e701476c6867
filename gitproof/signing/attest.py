"""DSSE envelopes over a receipt's in-toto statement (``run --attest``), signed with the receipt's key.

``ssh-keygen -Y sign`` makes SSHSIG signatures only, a DSSE envelope needs a plain
signature over its pre-authentication encoding, and gitproof does not speak the
ssh-agent protocol. So the envelope is signed in this process, with the private half
of the key that signs the receipt: an OpenSSH (or PEM) private key file without a
passphrase, a key from ``--key-env``, or a key ``run`` unlocked with its passphrase
before the tests. A key that only ssh-agent holds (a
``key::`` literal, a ``.pub`` path) cannot make one, and ``attest_signer`` refuses it
before any test runs.

securesystemslib does the DSSE work (envelope, encoding, signature) with its
``CryptoSigner``; the key id is the key's ``SHA256:`` fingerprint, as receipts write it.
It is imported only here, and only when a run attests.
"""
from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gitproof import intoto
from gitproof.receipt import SignedReceipt
from gitproof.signing.keys import SigningError, SigningKey
from gitproof.trust.keys import fingerprint_of

if TYPE_CHECKING:
    import pygit2
    from securesystemslib.signer._signer import Signer  # where defined: the package re-exports it implicitly

_DROP = "; or record without an attestation (--no-attest)"


class AttestError(SigningError):
    """No DSSE envelope can be made with this key; the message says what to do instead."""


def attest_signer(key: SigningKey) -> Signer:
    """A signer for DSSE envelopes with ``key``'s private half, in this process; AttestError
    saying why not (an ssh-agent key, a passphrase, a key type cryptography cannot load)."""
    from securesystemslib.signer._crypto_signer import CryptoSigner  # where defined (see Signer above)
    from securesystemslib.signer._key import SSlibKey

    private = _private_key(key)
    blob = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)
    keyid = fingerprint_of(base64.b64decode(blob.split()[1]))
    try:
        return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), keyid=keyid))
    except ValueError as exc:  # DSA, or a curve DSSE tooling does not know
        raise AttestError(f"--attest: the key {key.spec} cannot sign a DSSE envelope ({exc}); use an "
                          f"Ed25519 or ECDSA key" + _DROP) from None


def _private_key(key: SigningKey) -> Any:
    """The private key, loaded in memory, or AttestError."""
    if key.literal or (key.path is not None and key.path.suffix == ".pub"):
        raise AttestError(
            f"--attest: the signing key {key.spec[:60]} signs through ssh-agent, but gitproof signs a DSSE "
            "envelope in this process, with a private key it can load. Sign with the private key file "
            "(--key ~/.ssh/id_ed25519, or user.signingKey pointing at it), or in CI with --key-env VAR"
            + _DROP)
    data = key.secret if key.secret is not None else _read(key)
    try:
        return serialization.load_ssh_private_key(data, password=None)
    except TypeError:  # cryptography's "private key is encrypted"
        raise AttestError(
            f"--attest: the key {key.spec} is protected by a passphrase and ssh-agent signs with it, but a DSSE "
            f"envelope is signed in this process: remove it from the agent for this run (`ssh-add -d {key.spec}`), "
            "so that `git gpu-proof run` asks for the passphrase once before the tests, or use --key-env VAR"
            + _DROP) from None
    except (ValueError, UnsupportedAlgorithm):
        pass
    try:  # the older PEM format
        return serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
        raise AttestError(f"--attest: cannot load the private key {key.spec} in this process ({exc}); a "
                          "FIDO (sk-) key cannot sign a DSSE envelope, use an Ed25519 or ECDSA key" + _DROP) from None


def _read(key: SigningKey) -> bytes:
    assert key.path is not None
    try:
        return key.path.read_bytes()
    except OSError as exc:
        raise AttestError(f"--attest: cannot read the private key {key.spec}: {exc.strerror or exc}") from None


def check_signer(signer: Signer, fingerprint: str) -> None:
    """AttestError unless ``signer`` is the key the receipt names."""
    if signer.public_key.keyid != fingerprint:
        raise AttestError(f"--attest: the private key ({signer.public_key.keyid}) is not the key the receipt "
                          f"names ({fingerprint}); is the .pub file beside it another key's?")


def envelope_line(statement: dict[str, Any], signer: Signer) -> bytes:
    """One DSSE envelope over ``statement``, as one line of compact JSON (no LF)."""
    from securesystemslib.dsse import Envelope

    payload = json.dumps(statement, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    envelope = Envelope(payload, intoto.PAYLOAD_TYPE, {})
    envelope.sign(signer)
    return json.dumps(envelope.to_dict(), separators=(",", ":"), sort_keys=True).encode("ascii")


def attestation(signed: SignedReceipt, signer: Signer, commits: list[str], *, url: str | None = None,
                blob_paths: frozenset[str] = frozenset(), repo: pygit2.Repository | None = None) -> bytes:
    """The envelope line for one receipt: its in-toto statement, signed.

    The statement names ``commits`` as tested. With ``repo``, only those whose code the run
    tested are kept (intoto.tested_commits: their trees at the receipt's paths are the
    receipt's). ``run --attest`` names HEAD only when the working tree's trees were HEAD's,
    which is the same rule; a pending receipt names no commit."""
    check_signer(signer, signed.receipt.key_fingerprint)
    named = commits if repo is None else intoto.tested_commits(repo, signed.receipt, commits)
    statement = intoto.statement(signed, intoto.stored_bytes(signed), named, url=url, blob_paths=blob_paths)
    return envelope_line(statement, signer)
