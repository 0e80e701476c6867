"""SSHSIG signatures (OpenSSH PROTOCOL.sshsig): strict parsing and in-process verification.

The checks mirror `ssh-keygen -Y verify` (OpenSSH 9.x): exact namespace, sha256/sha512
message hash, signature format matching the key type, no SHA-1 RSA signatures, and
certificates verified with the key they certify (the CA signature on the certificate
must verify too, as OpenSSH checks it while parsing the key).

Key types this module does not verify natively (FIDO `sk-*` keys, DSA, and certificates
for or signed by them) raise `UnsupportedKeyType`; callers fall back to
`verify_with_ssh_keygen`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    load_ssh_public_identity,
)

from gitproof.errors import GitproofError

ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
MAGIC = b"SSHSIG"
SIG_VERSION = 1
HASH_ALGORITHMS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
CERT_SUFFIX = "-cert-v01@openssh.com"

# Plain key type -> number of key fields after the type name in its wire blob
# (a certificate carries the same fields, after its nonce).
_KEY_FIELDS = {
    "ssh-ed25519": 1,
    "ssh-rsa": 2,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "ssh-dss": 4,
    "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
}
_NATIVE_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521"}
_RSA_SIG_HASHES = {"rsa-sha2-256": hashes.SHA256, "rsa-sha2-512": hashes.SHA512}
_EC_HASHES = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384,
              "secp521r1": hashes.SHA512}
_RSA_MIN_BITS, _RSA_MAX_BITS = 1024, 16384  # OpenSSH refuses keys outside this range
BAD_SIGNATURE = "bad signature: payload or signature was modified"


class SignatureError(GitproofError):
    """The signature is malformed or does not verify."""


class UnsupportedKeyType(SignatureError):
    """A valid OpenSSH key type this module cannot verify natively (use ssh-keygen)."""


# --- SSH wire format -------------------------------------------------------------------

class WireReader:
    """Reads SSH wire-format fields (RFC 4251) from a byte string."""

    def __init__(self, data: bytes, what: str = "data") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise SignatureError(f"{self._what} is truncated")
        chunk = bytes(self._data[self._pos:self._pos + n])
        self._pos += n
        return chunk

    def uint32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def uint64(self) -> int:
        return struct.unpack(">Q", self._take(8))[0]

    def string(self) -> bytes:
        return self._take(self.uint32())

    def text(self, field: str) -> str:
        raw = self.string()
        if b"\0" in raw:
            raise SignatureError(f"{self._what}: {field} contains a NUL byte")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError(f"{self._what}: {field} is not valid UTF-8") from None

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise SignatureError(f"{self._what}: negative integer")
        return int.from_bytes(raw, "big")

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def end(self) -> None:
        if self._pos != len(self._data):
            raise SignatureError(f"trailing data after {self._what}")


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


# --- keys ------------------------------------------------------------------------------

def key_type_of(blob: bytes) -> str:
    """The type name at the start of an SSH public key (or certificate) blob."""
    return WireReader(blob, "public key").text("key type")


def plain_key_type(key_type: str) -> str:
    """`ssh-ed25519-cert-v01@openssh.com` -> `ssh-ed25519` (and the sk-* spelling)."""
    if not key_type.endswith(CERT_SUFFIX):
        return key_type
    base = key_type[: -len(CERT_SUFFIX)]
    return base + "@openssh.com" if base.startswith("sk-") else base


def is_certificate_type(key_type: str) -> bool:
    return key_type.endswith(CERT_SUFFIX)


@lru_cache(maxsize=1024)
def plain_key_blob(blob: bytes) -> bytes:
    """The plain public key blob; for a certificate, the key it certifies."""
    reader = WireReader(blob, "public key")
    key_type = reader.text("key type")
    plain = plain_key_type(key_type)
    if plain not in _KEY_FIELDS:
        raise SignatureError(f"unknown key type {key_type!r}")
    if plain == key_type:
        return blob
    reader.string()  # nonce
    fields = [reader.string() for _ in range(_KEY_FIELDS[plain])]
    return ssh_string(plain.encode()) + b"".join(ssh_string(f) for f in fields)


def fingerprint_of(blob: bytes) -> str:
    """`SHA256:...` as `ssh-keygen -l` prints it (certificates: the certified key)."""
    try:
        blob = plain_key_blob(blob)
    except SignatureError:
        pass
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_line(blob: bytes) -> str:
    """`type base64` line form of a wire blob."""
    return f"{key_type_of(blob)} {base64.b64encode(blob).decode()}"


def _check_native(blob: bytes) -> str:
    key_type = key_type_of(blob)
    plain = plain_key_type(key_type)
    if plain not in _KEY_FIELDS:
        raise SignatureError(f"unknown key type {key_type!r}")
    if plain not in _NATIVE_TYPES:
        raise UnsupportedKeyType(f"key type {key_type!r} is not verified natively")
    return key_type


def _check_key_size(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey) and not _RSA_MIN_BITS <= key.key_size <= _RSA_MAX_BITS:
        raise SignatureError(f"RSA key size {key.key_size} bits is not allowed")


@lru_cache(maxsize=1024)
def load_public_key(blob: bytes) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """Load a plain ed25519/ECDSA/RSA key blob (cached per blob)."""
    if is_certificate_type(_check_native(blob)):
        raise SignatureError("expected a plain public key, got a certificate")
    try:
        key = load_ssh_public_identity(key_line(blob).encode())
    except Exception as exc:  # untrusted bytes: cryptography may raise ValueError, NotImplementedError, ...
        raise SignatureError(f"invalid public key: {exc}") from None
    _check_key_size(key)
    return key  # type: ignore[return-value]


@lru_cache(maxsize=1024)
def load_certificate(blob: bytes) -> SSHCertificate:
    """Load a certificate blob and check its CA signature, as OpenSSH does on parse (cached)."""
    if not is_certificate_type(_check_native(blob)):
        raise SignatureError("expected a certificate, got a plain public key")
    ca_type = _certificate_ca_type(blob)
    if plain_key_type(ca_type) not in _KEY_FIELDS or is_certificate_type(ca_type):
        raise SignatureError(f"certificate CA key type {ca_type!r} is not valid")
    if plain_key_type(ca_type) not in _NATIVE_TYPES:
        raise UnsupportedKeyType(f"certificate signed by a {ca_type!r} CA is not verified natively")
    try:
        cert = load_ssh_public_identity(key_line(blob).encode())
        if not isinstance(cert, SSHCertificate):
            raise SignatureError("invalid certificate")
        _check_key_size(cert.public_key())
        _check_key_size(cert.signature_key())
        cert.verify_cert_signature()
    except InvalidSignature:
        raise SignatureError("certificate is not validly signed by its CA") from None
    except SignatureError:
        raise
    except Exception as exc:  # untrusted bytes: cryptography may raise ValueError, NotImplementedError, ...
        raise SignatureError(f"invalid certificate: {exc}") from None
    return cert


def ca_key_blob(blob: bytes) -> bytes:
    """The CA (signature) key blob of a certificate blob."""
    reader = WireReader(blob, "certificate")
    key_type = reader.text("key type")
    if not is_certificate_type(key_type) or plain_key_type(key_type) not in _KEY_FIELDS:
        raise SignatureError(f"{key_type!r} is not a known certificate type")
    for _ in range(1 + _KEY_FIELDS[plain_key_type(key_type)]):  # nonce, key fields
        reader.string()
    reader.uint64(), reader.uint32()  # serial, certificate type
    reader.string(), reader.string()  # key id, principals
    reader.uint64(), reader.uint64()  # valid after, valid before
    reader.string(), reader.string(), reader.string()  # critical options, extensions, reserved
    return reader.string()


def _certificate_ca_type(blob: bytes) -> str:
    return key_type_of(ca_key_blob(blob))


# --- signatures ------------------------------------------------------------------------

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


_C_SPACE = " \t\n\v\f\r"


def _dearmor(text: str) -> bytes:
    if not text.startswith(ARMOR_BEGIN + "\n"):
        raise SignatureError(f"not an SSH signature: missing {ARMOR_BEGIN!r} line")
    rest = "\n" + text[len(ARMOR_BEGIN) + 1:]
    body, sep, after = rest.partition("\n" + ARMOR_END)  # the END line must start a line
    if not sep:
        raise SignatureError(f"not an SSH signature: missing {ARMOR_END!r} line")
    # Refused although ssh-keygen ignores it: text after the END line would make a receipt's
    # signature block malleable (docs/receipt-format.md).
    if after.strip(_C_SPACE):
        raise SignatureError("unexpected text after the END SSH SIGNATURE line")
    # Only what OpenSSH's base64 decoder skips (C's isspace); Python's str.split() would also
    # drop \x1c-\x1f, NBSP, U+3000 and more, which ssh-keygen rejects.
    compact = "".join(c for c in body if c not in _C_SPACE)
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


def signed_data(namespace: str, hash_algorithm: str, message: bytes) -> bytes:
    """The bytes the key actually signs. The reserved field is always empty here, as in OpenSSH."""
    digest = HASH_ALGORITHMS[hash_algorithm](message).digest()
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
    key_type = _check_native(sig.public_key)
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
