"""SSHSIG signatures (OpenSSH PROTOCOL.sshsig): strict parsing and in-process verification.

The checks mirror `ssh-keygen -Y verify` (OpenSSH 9.x): exact namespace, sha256/sha512
message hash, signature format matching the key type, no SHA-1 RSA signatures, and
certificates verified with the key they certify (the CA signature on the certificate
must verify too, as OpenSSH checks it while parsing the key).

Key types not verified natively (FIDO `sk-*` keys, DSA, and certificates for or signed
by them) raise `UnsupportedKeyType`; callers fall back to `verify_with_ssh_keygen`.
The armor lines are the receipt format's `SIG_BEGIN` / `SIG_END`: a note is split on them.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gitproof.receipt import SIG_BEGIN, SIG_END
from gitproof.trust.keys import (C_SPACE, SignatureError, UnsupportedKeyType, WireReader, check_native,
                                 fingerprint_of, is_certificate_type, key_type_of, load_certificate,
                                 load_public_key, plain_key_type, ssh_string)

NAMESPACE = "gpu-proof"  # the SSHSIG namespace receipts are signed in
MAGIC = b"SSHSIG"
SIG_VERSION = 1
HASH_ALGORITHMS: dict[str, Callable[[bytes], Any]] = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_RSA_SIG_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"rsa-sha2-256": hashes.SHA256,
                                                                   "rsa-sha2-512": hashes.SHA512}
_EC_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"secp256r1": hashes.SHA256,
                                                              "secp384r1": hashes.SHA384,
                                                              "secp521r1": hashes.SHA512}
BAD_SIGNATURE = "bad signature: payload or signature was modified"
_DROP_C_SPACE = str.maketrans("", "", C_SPACE)


@dataclass(frozen=True)
class SshSignature:
    """A parsed armored SSHSIG signature."""

    public_key: bytes
    namespace: str
    hash_algorithm: str
    signature: bytes
    armored: str

    @property
    def key_type(self) -> str:
        return key_type_of(self.public_key)

    @property
    def is_certificate(self) -> bool:
        return is_certificate_type(self.key_type)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_key)


def _dearmor(text: str) -> bytes:
    if not text.startswith(SIG_BEGIN + "\n"):
        raise SignatureError(f"not an SSH signature: missing {SIG_BEGIN!r} line")
    rest = "\n" + text[len(SIG_BEGIN) + 1:]
    body, sep, after = rest.partition("\n" + SIG_END)  # the END line must start a line
    if not sep:
        raise SignatureError(f"not an SSH signature: missing {SIG_END!r} line")
    # Refused although ssh-keygen ignores it: text after the END line would make a receipt's
    # signature block malleable (docs/receipt-format.md).
    if after.strip(C_SPACE):
        raise SignatureError("unexpected text after the END SSH SIGNATURE line")
    # Only what OpenSSH's base64 decoder skips (C's isspace); Python's str.split() would also
    # drop \x1c-\x1f, NBSP, U+3000 and more, which ssh-keygen rejects.
    compact = body.translate(_DROP_C_SPACE)
    try:
        blob = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("not an SSH signature: invalid base64 body") from None
    # OpenSSH's decoder also rejects non-zero padding bits; a re-encode round trip checks that.
    if base64.b64encode(blob).decode() != compact:
        raise SignatureError("not an SSH signature: non-canonical base64 body")
    return blob


def parse_signature(armored: str | bytes) -> SshSignature:
    """Strictly parse an armored SSHSIG block; raises SignatureError."""
    if isinstance(armored, bytes):
        try:
            armored = armored.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError("not an SSH signature: non-ASCII bytes") from None
    reader = WireReader(_dearmor(armored), "signature")
    if reader.raw(len(MAGIC)) != MAGIC:
        raise SignatureError("not an SSH signature: bad magic")
    version = reader.uint32()
    if version != SIG_VERSION:
        raise SignatureError(f"unsupported signature version {version}")
    public_key = reader.string()
    namespace = reader.text("namespace")
    reader.string()  # reserved
    hash_algorithm = reader.text("hash algorithm")
    signature = reader.string()
    reader.end()
    key_type_of(public_key)
    return SshSignature(public_key, namespace, hash_algorithm, signature, armored)


def is_armored(text: str) -> bool:
    """Does ``text`` look like one armored SSH signature (what ``ssh-keygen -Y sign`` writes)?"""
    return text.startswith(SIG_BEGIN) and text.rstrip().endswith(SIG_END)


def signed_data(namespace: str, hash_algorithm: str, message: bytes) -> bytes:
    """The bytes the key actually signs. The reserved field is always empty here, as in OpenSSH."""
    digest: bytes = HASH_ALGORITHMS[hash_algorithm](message).digest()
    return (MAGIC + ssh_string(namespace.encode()) + ssh_string(b"")
            + ssh_string(hash_algorithm.encode()) + ssh_string(digest))


def verify_signature(sig: SshSignature, message: bytes, namespace: str) -> None:
    """Check that `sig` is a valid signature over `message` in `namespace`; raise otherwise.

    This is only the cryptographic check: whether the key is trusted is decided elsewhere.
    """
    if sig.namespace != namespace:
        raise SignatureError(f"signature namespace is {sig.namespace!r}, expected {namespace!r}")
    if sig.hash_algorithm not in HASH_ALGORITHMS:
        raise SignatureError(f"hash algorithm {sig.hash_algorithm!r} is not allowed (sha256, sha512)")
    key_type = check_native(sig.public_key)
    key: object
    if is_certificate_type(key_type):
        key = load_certificate(sig.public_key).public_key()
    else:
        key = load_public_key(sig.public_key)
    data = signed_data(namespace, sig.hash_algorithm, message)
    try:
        _verify_blob(key, plain_key_type(key_type), sig.signature, data)
    except InvalidSignature:
        raise SignatureError(BAD_SIGNATURE) from None


def _verify_blob(key: object, key_type: str, blob: bytes, data: bytes) -> None:
    reader = WireReader(blob, "signature blob")
    sig_type = reader.text("signature type")
    raw = reader.string()
    reader.end()
    if isinstance(key, rsa.RSAPublicKey):
        _verify_rsa(key, sig_type, raw, data)
        return
    if sig_type != key_type:
        raise SignatureError(f"signature format {sig_type!r} does not match key type {key_type!r}")
    if isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(raw, data)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        inner = WireReader(raw, "ECDSA signature")
        r, s = inner.mpint(), inner.mpint()
        inner.end()
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(_EC_HASHES[key.curve.name]()))
    else:
        raise UnsupportedKeyType(f"key type {key_type!r} is not verified natively")


def _verify_rsa(key: rsa.RSAPublicKey, sig_type: str, raw: bytes, data: bytes) -> None:
    if sig_type == "ssh-rsa":
        raise SignatureError("RSA signature uses SHA-1 ('ssh-rsa'); only rsa-sha2-256/512 are accepted")
    if sig_type not in _RSA_SIG_HASHES:
        raise SignatureError(f"signature format {sig_type!r} does not match key type 'ssh-rsa'")
    size = (key.key_size + 7) // 8
    if len(raw) > size:
        raise SignatureError("RSA signature is longer than the key modulus")
    key.verify(raw.rjust(size, b"\0"), data, padding.PKCS1v15(), _RSA_SIG_HASHES[sig_type]())


# --- ssh-keygen fallback ---------------------------------------------------------------

def _openssh_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%SZ")


def verify_with_ssh_keygen(
    payload: bytes,
    armored: str,
    principal: str,
    allowed_signers_path: Path,
    namespace: str,
    revocation_path: Path | None = None,
    program: str = "ssh-keygen",
    verify_time: datetime | None = None,
) -> tuple[bool, str]:
    """Run `ssh-keygen -Y verify`; returns (exit status was 0, ssh-keygen's output).

    `verify_time` is passed as `-Overify-time=` (default: ssh-keygen uses the current time).
    A principal or namespace with a NUL is refused here: ssh-keygen would read it only up to
    the NUL, so "alice@example.com%00x" would be judged as alice.
    """
    if "\x00" in principal or "\x00" in namespace:
        return False, "the principal or namespace contains a NUL character; refused"
    with tempfile.TemporaryDirectory(prefix="gitproof-sig-") as tmp:
        sig_path = Path(tmp) / "payload.sig"
        sig_path.write_text(armored)
        args = [program, "-Y", "verify", "-f", str(allowed_signers_path), "-I", principal,
                "-n", namespace, "-s", str(sig_path)]
        if revocation_path is not None:
            args += ["-r", str(revocation_path)]
        if verify_time is not None:
            args.append(f"-Overify-time={_openssh_time(verify_time)}")
        try:
            result = subprocess.run(args, input=payload, capture_output=True, check=False)
        except OSError as exc:
            return False, f"could not run {program}: {exc}"
    output = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
    return result.returncode == 0, output
