"""SSHSIG parsing and native verification, against signatures made by real ssh-keygen."""
from __future__ import annotations

import base64
import hashlib
import shutil
import struct
import subprocess
import timeit
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gitproof.receipt import SIG_BEGIN, SIG_END
from gitproof.trust.keys import SignatureError, UnsupportedKeyType
from gitproof.trust.sshsig import BAD_SIGNATURE, parse_signature, verify_signature, verify_with_ssh_keygen
from tests.helpers import Key

PAYLOAD = b'{"test": "tests/test_kernels.py::test_add", "outcome": "passed"}\n'


# --- helpers shared with test_sshsig_differential ---------------------------------------

def sign_file(key_path: Path, payload: bytes, workdir: Path, namespace: str = "gpu-proof") -> str:
    """`ssh-keygen -Y sign -n NAMESPACE -f KEY file` -> the armored file.sig."""
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / f"payload-{len(list(workdir.iterdir()))}"
    target.write_bytes(payload)
    subprocess.run(["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key_path), str(target)],
                   check=True, capture_output=True)
    return Path(f"{target}.sig").read_text()


def wire_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def mpint(value: int) -> bytes:
    return wire_string(value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b"")


def armor(blob: bytes) -> str:
    body = base64.b64encode(blob).decode()
    lines = [body[i:i + 70] for i in range(0, len(body), 70)]
    return "\n".join([SIG_BEGIN, *lines, SIG_END]) + "\n"


def dearmor(text: str) -> bytes:
    return base64.b64decode("".join(text.strip().splitlines()[1:-1]))


def public_blob(public_key_path: Path) -> bytes:
    return base64.b64decode(public_key_path.read_text().split()[1])


def _raw_signature(private, fmt: str | None, data: bytes) -> bytes:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return wire_string((fmt or "ssh-ed25519").encode()) + wire_string(private.sign(data))
    if isinstance(private, rsa.RSAPrivateKey):
        fmt = fmt or "rsa-sha2-512"
        algorithm = {"rsa-sha2-512": hashes.SHA512, "rsa-sha2-256": hashes.SHA256,
                     "ssh-rsa": hashes.SHA1}[fmt]()
        return wire_string(fmt.encode()) + wire_string(private.sign(data, padding.PKCS1v15(), algorithm))
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    algorithm = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}[private.curve.key_size]()
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(algorithm)))
    name = fmt or f"ecdsa-sha2-nistp{private.curve.key_size}"
    return wire_string(name.encode()) + wire_string(mpint(r) + mpint(s))


def craft_signature(key: Key, message: bytes, namespace: str = "gpu-proof", *, hash_alg: str = "sha512",
                    sig_format: str | None = None, version: int = 1, reserved: bytes = b"",
                    magic: bytes = b"SSHSIG", trailing: bytes = b"", signed_namespace: str | None = None) -> str:
    """An SSHSIG made by hand (cryptography), to reach cases ssh-keygen never produces."""
    private = serialization.load_ssh_private_key(key.private.read_bytes(), None)
    digest = hashlib.new(hash_alg, message).digest()
    signed = (b"SSHSIG" + wire_string((signed_namespace or namespace).encode()) + wire_string(b"")
              + wire_string(hash_alg.encode()) + wire_string(digest))
    blob = (magic + struct.pack(">I", version) + wire_string(public_blob(key.public))
            + wire_string(namespace.encode()) + wire_string(reserved) + wire_string(hash_alg.encode())
            + wire_string(_raw_signature(private, sig_format, signed)) + trailing)
    return armor(blob)


def flip_signature_char(armored: str) -> str:
    """Change one base64 character inside the signature bytes (last body line, not padding)."""
    lines = armored.strip().split("\n")
    body = lines[-2]
    index = len(body.rstrip("=")) // 2
    replacement = "A" if body[index] != "A" else "B"
    lines[-2] = body[:index] + replacement + body[index + 1:]
    return "\n".join(lines) + "\n"


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture
def ed_key(keygen) -> Key:
    return keygen("ed25519", "signer")


@pytest.fixture
def ed_sig(ed_key: Key, tmp_path: Path) -> str:
    return sign_file(ed_key.private, PAYLOAD, tmp_path / "sign")


# --- parsing ------------------------------------------------------------------------------

def test_parse_real_signature(ed_key: Key, ed_sig: str) -> None:
    sig = parse_signature(ed_sig)
    assert sig.namespace == "gpu-proof"
    assert sig.hash_algorithm == "sha512"
    assert sig.key_type == "ssh-ed25519"
    assert sig.public_key == public_blob(ed_key.public)
    assert sig.fingerprint == ed_key.fingerprint
    assert sig.armored == ed_sig
    assert parse_signature(ed_sig.encode()) == sig


@pytest.mark.parametrize("kwargs, message", [
    ({"magic": b"SSHSIX"}, "bad magic"),
    ({"version": 2}, "unsupported signature version 2"),
    ({"version": 0}, "unsupported signature version 0"),
    ({"trailing": b"\0"}, "trailing data after signature"),
], ids=["bad-magic", "version-2", "version-0", "trailing-data"])
def test_parse_rejects_malformed_blob(ed_key: Key, kwargs: dict, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_signature(craft_signature(ed_key, PAYLOAD, **kwargs))


def test_parse_rejects_truncated_blob(ed_sig: str) -> None:
    with pytest.raises(SignatureError, match="truncated"):
        parse_signature(armor(dearmor(ed_sig)[:-10]))


@pytest.mark.parametrize("mangle, message", [
    (lambda s: "garbage", "missing '-----BEGIN SSH SIGNATURE-----'"),
    (lambda s: "\n" + s, "missing '-----BEGIN SSH SIGNATURE-----'"),
    (lambda s: s.replace(SIG_END, ""), "missing '-----END SSH SIGNATURE-----'"),
    (lambda s: s + "extra text\n", "unexpected text after"),
    (lambda s: s.replace("\n", "\n!", 2), "invalid base64"),
    (lambda s: armor(b"SSHSIG"), "truncated"),
    (lambda s: armor(b""), "truncated"),
], ids=["not-armored", "leading-newline", "no-end", "text-after-end", "bad-base64", "magic-only", "empty"])
def test_parse_rejects_bad_armor(ed_sig: str, mangle, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        parse_signature(mangle(ed_sig))


def test_parse_rejects_non_canonical_base64(ed_sig: str) -> None:
    blob = dearmor(ed_sig)
    blob = blob[:-1] if len(blob) % 3 == 0 else blob  # make sure the body ends in padding
    body = base64.b64encode(blob).decode()
    data, pad = body.rstrip("="), "=" * (len(body) - len(body.rstrip("=")))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    tweaked = data[:-1] + alphabet[alphabet.index(data[-1]) | 1] + pad  # set an unused bit
    assert tweaked != body and base64.b64decode(tweaked) == blob
    with pytest.raises(SignatureError, match="non-canonical"):
        parse_signature(f"{SIG_BEGIN}\n{tweaked}\n{SIG_END}\n")


def test_parse_accepts_rewrapped_body(ed_sig: str) -> None:
    body = base64.b64encode(dearmor(ed_sig)).decode()
    rewrapped = f"{SIG_BEGIN}\n{body[:10]}\n  {body[10:]}\n{SIG_END}"
    assert parse_signature(rewrapped).signature == parse_signature(ed_sig).signature


# --- verification ---------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-256", "ecdsa-384", "ecdsa-521", "rsa"])
def test_verify_real_signatures(keygen, tmp_path: Path, key_type: str) -> None:
    key = keygen(key_type)
    sig = parse_signature(sign_file(key.private, PAYLOAD, tmp_path / "sign"))
    assert sig.fingerprint == key.fingerprint
    verify_signature(sig, PAYLOAD, "gpu-proof")
    with pytest.raises(SignatureError, match=BAD_SIGNATURE):
        verify_signature(sig, PAYLOAD + b" ", "gpu-proof")


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-256", "ecdsa-384", "rsa"])
def test_crafted_sha256_signature_verifies(keygen, key_type: str) -> None:
    key = keygen(key_type)
    verify_signature(parse_signature(craft_signature(key, PAYLOAD, hash_alg="sha256")), PAYLOAD, "gpu-proof")


def test_flipped_signature_byte_is_rejected(ed_sig: str) -> None:
    tampered = parse_signature(flip_signature_char(ed_sig))
    assert tampered.signature != parse_signature(ed_sig).signature
    with pytest.raises(SignatureError, match=BAD_SIGNATURE):
        verify_signature(tampered, PAYLOAD, "gpu-proof")


def test_namespace_must_match_exactly(ed_key: Key, tmp_path: Path) -> None:
    sig = parse_signature(sign_file(ed_key.private, PAYLOAD, tmp_path / "sign", namespace="git"))
    with pytest.raises(SignatureError, match="signature namespace is 'git', expected 'gpu-proof'"):
        verify_signature(sig, PAYLOAD, "gpu-proof")
    verify_signature(sig, PAYLOAD, "git")


def test_namespace_inside_signed_data_is_checked(ed_key: Key) -> None:
    # Outer namespace says gpu-proof, but the key signed for "git": the signature must not verify.
    sig = parse_signature(craft_signature(ed_key, PAYLOAD, signed_namespace="git"))
    with pytest.raises(SignatureError, match=BAD_SIGNATURE):
        verify_signature(sig, PAYLOAD, "gpu-proof")


@pytest.mark.parametrize("hash_alg", ["sha1", "sha384", "md5"])
def test_hash_algorithm_must_be_sha256_or_sha512(ed_key: Key, hash_alg: str) -> None:
    sig = parse_signature(craft_signature(ed_key, PAYLOAD, hash_alg=hash_alg))
    with pytest.raises(SignatureError, match=f"hash algorithm '{hash_alg}' is not allowed"):
        verify_signature(sig, PAYLOAD, "gpu-proof")


def test_rsa_sha1_signature_format_is_rejected(keygen) -> None:
    key = keygen("rsa")
    sig = parse_signature(craft_signature(key, PAYLOAD, sig_format="ssh-rsa"))
    with pytest.raises(SignatureError, match="SHA-1"):
        verify_signature(sig, PAYLOAD, "gpu-proof")
    verify_signature(parse_signature(craft_signature(key, PAYLOAD, sig_format="rsa-sha2-256")), PAYLOAD,
                     "gpu-proof")


def test_signature_format_must_match_key_type(ed_key: Key) -> None:
    sig = parse_signature(craft_signature(ed_key, PAYLOAD, sig_format="ecdsa-sha2-nistp256"))
    with pytest.raises(SignatureError, match="does not match key type 'ssh-ed25519'"):
        verify_signature(sig, PAYLOAD, "gpu-proof")


def test_reserved_field_is_not_signed(ed_key: Key) -> None:
    # OpenSSH signs and verifies with an empty reserved field, whatever the blob carries.
    verify_signature(parse_signature(craft_signature(ed_key, PAYLOAD, reserved=b"x")), PAYLOAD, "gpu-proof")


def test_certificate_signature_verifies_with_certified_key(keygen, tmp_path: Path) -> None:
    key, ca = keygen("ed25519", "user"), keygen("ecdsa-384", "ca")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca.private), "-I", "id", "-n", "alice@example.com",
                    str(key.public)], check=True, capture_output=True)
    cert = key.public.with_name("user-cert.pub")
    sig = parse_signature(sign_file(cert, PAYLOAD, tmp_path / "sign"))
    assert sig.key_type == "ssh-ed25519-cert-v01@openssh.com"
    assert sig.is_certificate
    assert sig.fingerprint == key.fingerprint
    verify_signature(sig, PAYLOAD, "gpu-proof")
    with pytest.raises(SignatureError, match=BAD_SIGNATURE):
        verify_signature(sig, b"other", "gpu-proof")


def _sk_ed25519_blob() -> bytes:
    return wire_string(b"sk-ssh-ed25519@openssh.com") + wire_string(b"\x01" * 32) + wire_string(b"ssh:")


def test_fido_key_types_are_unsupported(ed_sig: str) -> None:
    blob = dearmor(ed_sig)
    sig = parse_signature(ed_sig)
    fido = parse_signature(armor(blob.replace(wire_string(sig.public_key), wire_string(_sk_ed25519_blob()))))
    assert fido.key_type == "sk-ssh-ed25519@openssh.com"
    assert fido.fingerprint.startswith("SHA256:")
    with pytest.raises(UnsupportedKeyType):
        verify_signature(fido, PAYLOAD, "gpu-proof")


def test_unknown_key_type_is_an_error_not_unsupported(ed_sig: str) -> None:
    sig = parse_signature(ed_sig)
    bogus = wire_string(b"ssh-bogus") + wire_string(b"x")
    weird = parse_signature(armor(dearmor(ed_sig).replace(wire_string(sig.public_key), wire_string(bogus))))
    with pytest.raises(SignatureError, match="unknown key type 'ssh-bogus'") as info:
        verify_signature(weird, PAYLOAD, "gpu-proof")
    assert not isinstance(info.value, UnsupportedKeyType)


def test_dsa_is_unsupported_natively(keygen, tmp_path: Path) -> None:
    try:
        key = keygen("dsa")
    except subprocess.CalledProcessError:
        pytest.skip("this ssh-keygen cannot make DSA keys")
    sig = parse_signature(sign_file(key.private, PAYLOAD, tmp_path / "sign"))
    with pytest.raises(UnsupportedKeyType):
        verify_signature(sig, PAYLOAD, "gpu-proof")


def test_native_verify_is_fast(ed_sig: str) -> None:
    def once() -> None:
        verify_signature(parse_signature(ed_sig), PAYLOAD, "gpu-proof")
    once()
    best = min(timeit.repeat(once, number=100, repeat=5)) / 100
    assert best < 1e-3, f"one ed25519 verify took {best * 1e6:.0f} us"


# --- ssh-keygen subprocess path --------------------------------------------------------------

def test_verify_with_ssh_keygen(ed_key: Key, ed_sig: str, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'alice@example.com valid-before="20300101Z" {ed_key.public_line}\n')
    ok, message = verify_with_ssh_keygen(PAYLOAD, ed_sig, "alice@example.com", allowed, "gpu-proof")
    assert ok, message
    assert 'Good "gpu-proof" signature for alice@example.com' in message
    assert ed_key.fingerprint in message
    ok, message = verify_with_ssh_keygen(PAYLOAD + b"x", ed_sig, "alice@example.com", allowed, "gpu-proof")
    assert not ok
    ok, _ = verify_with_ssh_keygen(PAYLOAD, ed_sig, "bob@example.com", allowed, "gpu-proof")
    assert not ok


def test_verify_with_ssh_keygen_verify_time_and_revocation(ed_key: Key, ed_sig: str, tmp_path: Path) -> None:
    from datetime import datetime, timezone
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'alice@example.com valid-before="20200101Z" {ed_key.public_line}\n')
    args = (PAYLOAD, ed_sig, "alice@example.com", allowed, "gpu-proof")
    assert not verify_with_ssh_keygen(*args)[0]
    assert verify_with_ssh_keygen(*args, verify_time=datetime(2019, 6, 1, tzinfo=timezone.utc))[0]
    revoked = tmp_path / "revoked"
    revoked.write_text(ed_key.public_line + "\n")
    assert not verify_with_ssh_keygen(*args, revocation_path=revoked,
                                      verify_time=datetime(2019, 6, 1, tzinfo=timezone.utc))[0]


def test_verify_with_missing_program(ed_sig: str, tmp_path: Path) -> None:
    ok, message = verify_with_ssh_keygen(PAYLOAD, ed_sig, "a", tmp_path / "none", "gpu-proof",
                                         program=str(tmp_path / "no-such-ssh-keygen"))
    assert not ok and "could not run" in message


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_crafted_signature_is_accepted_by_ssh_keygen(ed_key: Key, tmp_path: Path) -> None:
    # Guards the crafting helper itself: a by-hand SSHSIG must be one OpenSSH accepts.
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"a@x {ed_key.public_line}\n")
    ok, message = verify_with_ssh_keygen(PAYLOAD, craft_signature(ed_key, PAYLOAD, hash_alg="sha256"),
                                         "a@x", allowed, "gpu-proof")
    assert ok, message
