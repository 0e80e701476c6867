"""SSH public keys: the wire format, the one key parser and the one fingerprint function.

Every place that reads a public key (allowed_signers lines, revocation lists,
GitHub's ``.keys``, a signing key's ``.pub``, a signature's embedded key) goes
through this module, so a key means the same thing everywhere and has one
fingerprint: ``SHA256:...`` as ``ssh-keygen -l`` prints it, a certificate's
being the fingerprint of the key it certifies.

Key types this module does not load natively (FIDO ``sk-*`` keys, DSA, and
certificates for or signed by them) raise `UnsupportedKeyType`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import SSHCertificate, load_ssh_public_identity

from gitproof.errors import GitproofError

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
_NATIVE_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                          "ecdsa-sha2-nistp521"})
_RSA_MIN_BITS, _RSA_MAX_BITS = 1024, 16384  # OpenSSH refuses keys outside this range
# sshkey_read takes a signature algorithm's name for the RSA key it belongs to.
_TYPE_ALIASES = {"rsa-sha2-256": "ssh-rsa", "rsa-sha2-512": "ssh-rsa",
                 "rsa-sha2-256-cert-v01@openssh.com": "ssh-rsa-cert-v01@openssh.com",
                 "rsa-sha2-512-cert-v01@openssh.com": "ssh-rsa-cert-v01@openssh.com"}
C_SPACE = " \t\n\v\f\r"  # C's isspace() in the C locale, what OpenSSH's base64 decoder skips
_KEY_RE = re.compile(r"([^ \t]+)[ \t]+([^ \t]*)(.*)\Z", re.S)

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class SignatureError(GitproofError):
    """Raised when a key or signature is malformed, or a signature does not verify."""


class UnsupportedKeyType(SignatureError):
    """Raised for a valid OpenSSH key type that is not verified natively (ssh-keygen decides)."""


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
        value: int = struct.unpack(">I", self._take(4))[0]
        return value

    def uint64(self) -> int:
        value: int = struct.unpack(">Q", self._take(8))[0]
        return value

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


# --- key types and blobs ---------------------------------------------------------------

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


def check_native(blob: bytes) -> str:
    """The blob's key type; UnsupportedKeyType unless this module loads it natively."""
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
def load_public_key(blob: bytes) -> PublicKey:
    """Load a plain ed25519/ECDSA/RSA key blob (cached per blob)."""
    if is_certificate_type(check_native(blob)):
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
    if not is_certificate_type(check_native(blob)):
        raise SignatureError("expected a certificate, got a plain public key")
    ca_type = key_type_of(ca_key_blob(blob))
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


# --- reading key lines -------------------------------------------------------------------

def _known_key_type(name: str) -> bool:
    return plain_key_type(name) in _KEY_FIELDS and (name in _KEY_FIELDS or name.endswith(CERT_SUFFIX))


def _validate_key_blob(blob: bytes, key_type: str) -> None:
    """Reject keys OpenSSH would not load (bad point, short RSA, bad CA signature, ...)."""
    if plain_key_type(key_type) not in _NATIVE_TYPES:
        plain_key_blob(blob)  # structure only; ssh-keygen verifies these types
    elif is_certificate_type(key_type):
        try:
            load_certificate(blob)
        except UnsupportedKeyType:
            plain_key_blob(blob)
    else:
        load_public_key(blob)


def read_key(text: str) -> tuple[bytes, str] | None:
    """OpenSSH sshkey_read: `keytype base64 ...` -> (blob, rest of line), or None.

    As in OpenSSH, the base64 field runs to the next space or tab, and the characters
    C's isspace() knows are skipped inside it (a vertical tab, say); nothing else is."""
    match = _KEY_RE.match(text)
    if match is None:
        return None
    key_type = _TYPE_ALIASES.get(match[1], match[1])
    if not _known_key_type(key_type):
        return None
    encoded = "".join(c for c in match[2] if c not in C_SPACE)
    try:
        blob = base64.b64decode(encoded, validate=True)
        if base64.b64encode(blob).decode() != encoded or WireReader(blob).text("key type") != key_type:
            return None
        _validate_key_blob(blob, key_type)
    except (binascii.Error, ValueError, SignatureError):
        return None
    return blob, match[3]


def parse_public_line(line: str) -> tuple[str, bytes]:
    """``type base64 [comment]`` -> (type, blob), the blob naming the same type.

    Only the structure is checked (a signing key's ``.pub``, a ``key::`` literal):
    ssh-keygen, which signs with it, judges the rest. SignatureError says what is wrong.
    """
    fields = line.split()
    try:
        if len(fields) < 2:
            raise ValueError("expected `<type> <base64> [comment]`")
        blob = base64.b64decode(fields[1], validate=True)
        length = int.from_bytes(blob[:4], "big")
        if len(blob) < 4 or 4 + length > len(blob):
            raise ValueError("truncated key blob")
        if blob[4:4 + length].decode("ascii") != fields[0]:
            raise ValueError(f"key type {fields[0]!r} does not match its blob")
    except (ValueError, binascii.Error) as exc:  # UnicodeDecodeError is a ValueError
        raise SignatureError(str(exc)) from exc
    return fields[0], blob
