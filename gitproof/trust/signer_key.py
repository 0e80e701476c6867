"""The public key behind a receipt's SSH signature, for checking other signatures by the same key.

A DSSE envelope over a receipt (gitproof.verify.attestations) must be signed by the
key that signed the receipt. That key is the one in the receipt's SSHSIG block (for
a certificate, the key it certifies), which `Trust` has already judged; this module
only reads it out.
"""
from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gitproof.receipt import SignedReceipt
from gitproof.trust.keys import PublicKey, SignatureError, check_native, is_certificate_type, load_certificate, \
    load_public_key
from gitproof.trust.sshsig import parse_signature


def receipt_signing_key(signed: SignedReceipt) -> PublicKey:
    """The key that made ``signed``'s signature, which must be the key its ``signer:`` line names.

    It says nothing about trust: ask it of receipts that `Trust` accepted. SignatureError
    when the block does not parse, names another key, or holds a key not loaded natively
    (FIDO ``sk-`` keys, DSA).
    """
    sig = parse_signature(signed.signature)
    if sig.fingerprint != signed.receipt.key_fingerprint:
        raise SignatureError(f"the receipt names key {signed.receipt.key_fingerprint[:60]} but was signed by "
                             f"{sig.fingerprint}")
    if not is_certificate_type(check_native(sig.public_key)):
        return load_public_key(sig.public_key)
    key = load_certificate(sig.public_key).public_key()
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise SignatureError("the certified key is of a type not verified natively")
    return key
