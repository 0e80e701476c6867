"""allowed_signers parsing, OpenSSH patterns, trust decisions and revocation lists."""
from __future__ import annotations

import base64
import random
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gitproof.trust.allowed_signers import (AllowedSigner, AllowedSigners, AllowedSignersError, SignerDecision,
                                            parse_time)
from gitproof.trust.patterns import match_pattern, match_pattern_list
from gitproof.trust.revocation import RevokedKeys
from gitproof.trust.sources import verify_signed_payload
from gitproof.trust.sshsig import parse_signature, verify_with_ssh_keygen
from tests.helpers import Key
from tests.trust.test_sshsig import PAYLOAD, armor, dearmor, sign_file

ALICE = "alice@example.com"
UTC = timezone.utc


@pytest.fixture
def alice(keygen) -> Key:
    return keygen("ed25519", "alice")


@pytest.fixture
def alice_sig(alice: Key, tmp_path: Path) -> str:
    return sign_file(alice.private, PAYLOAD, tmp_path / "sign")


def _cert(keygen, tmp_path: Path, *options: str) -> tuple[Key, Key, str]:
    """(ca, user key, armored signature made with the user's certificate)."""
    ca, user = keygen("ed25519", "ca"), keygen("ed25519", "certuser")
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca.private), "-I", "id", *options, str(user.public)],
                   check=True, capture_output=True)
    return ca, user, sign_file(user.public.with_name("certuser-cert.pub"), PAYLOAD, tmp_path / "sign")


# --- patterns -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, patterns, expected", [
    (ALICE, ALICE, True),
    (ALICE, "*@example.com", True),
    (ALICE, "*@EXAMPLE.com", False),  # case-sensitive
    (ALICE, "bob@example.com," + ALICE, True),
    (ALICE, "bob@example.com, " + ALICE, False),  # no whitespace trimming
    ("bad@example.com", "!bad@example.com,*", False),
    ("bad@example.com", "*,!bad@example.com", False),  # negation wins wherever it is
    ("good@example.com", "!bad@example.com,*", True),
    ("good@example.com", "!bad@example.com", False),  # negation alone allows nothing
    ("a", "?", True),
    ("ab", "?", False),
    ("abc", "a*c", True),
    ("abXc", "a*c", True),
    ("ab", "a*c", False),
    ("a.b.c", "*.*.*", True),
    ("", "", False),
    ("", ",x", True),  # an empty sub-pattern matches only the empty string
    ("x", "x,", True),
    ("é", "?", False),  # OpenSSH matches bytes: é is two
    ("é", "??", True),
    ("x", "*" * 1023 + ",x", False),  # over-long sub-pattern: OpenSSH gives up
], ids=lambda v: repr(v)[:30] if isinstance(v, str) else None)
def test_match_pattern_list(value: str, patterns: str, expected: bool) -> None:
    assert match_pattern_list(value, patterns) is expected


def test_match_pattern_backtracks() -> None:
    assert match_pattern("aaaaab", "*a*b")
    assert match_pattern("mississippi", "m*iss*ppi")
    assert not match_pattern("mississippi", "m*iss*ppx")
    assert match_pattern("a*b", "a*b")


# --- times ----------------------------------------------------------------------------------

def test_parse_time_utc_forms() -> None:
    expected = datetime(2024, 3, 1, 12, 30, 15, tzinfo=UTC)
    assert parse_time("20240301123015Z") == expected
    assert parse_time("20240301123015utc") == expected
    assert parse_time("202403011230Z") == expected.replace(second=0)
    assert parse_time("20240301Z") == datetime(2024, 3, 1, tzinfo=UTC)


def test_parse_time_local_uses_mktime_without_dst() -> None:
    stamp = int(time.mktime((2024, 7, 1, 9, 0, 0, 0, 0, 0)))
    assert parse_time("202407010900").timestamp() == stamp


@pytest.mark.parametrize("text", ["2024030", "2024030112", "20241301", "2024010Z", "2024-1-01",
                                  "19700101Z", "19691231Z", "20240132", "20240101250000Z", "abcdefgh"])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


# --- parsing ----------------------------------------------------------------------------------

def test_parse_full_file(alice: Key, keygen) -> None:
    ca = keygen("ecdsa-256", "ca")
    text = "\n".join([
        "# trusted signers",
        "",
        f"{ALICE} {alice.public_line}",
        f'  "bob@example.com,{ALICE}" NAMESPACES="gpu-proof,git",Valid-After="20240101Z" {alice.public_line}',
        f'*@example.com cert-authority,valid-before="20300101120000Z" {ca.public_line}',
    ])
    signers = AllowedSigners.from_text(text, "allowed")
    assert signers.errors == []
    first, second, third = signers.signers
    assert (first.principals, first.line, first.cert_authority) == (ALICE, 3, False)
    assert first.key == base64.b64decode(alice.public_line.split()[1])
    assert first.fingerprint == alice.fingerprint
    assert (second.principals, second.namespaces, second.line) == (f"bob@example.com,{ALICE}", "gpu-proof,git", 4)
    assert second.valid_after == datetime(2024, 1, 1, tzinfo=UTC)
    assert third.cert_authority and third.key_type == "ecdsa-sha2-nistp256"
    assert third.valid_before == datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_escaped_quote_in_option(alice: Key) -> None:
    signers = AllowedSigners.from_text(f'{ALICE} namespaces="a\\"b" {alice.public_line}')
    assert signers.signers[0].namespaces == 'a"b'


@pytest.mark.parametrize("line, message", [
    ("{alice} frobnicate {key}", "unknown key option"),
    ("{alice} namespaces=gpu-proof {key}", "missing start quote"),
    ('{alice} namespaces="gpu-proof {key}', "unterminated quote"),
    ('{alice} valid-before="2024" {key}', 'invalid "valid-before" time'),
    ('{alice} valid-after="20240101",valid-after="20240102" {key}', 'multiple "valid-after" clauses'),
    ('{alice} namespaces="a",namespaces="b" {key}', 'multiple "namespaces" clauses'),
    ("{alice} cert-authority, {key}", "unexpected end-of-options"),
    ("{alice} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", "invalid key"),
    ("{alice} ssh-ed25519 not-base64!", "invalid key"),
    ("{alice} ssh-rsa {b64}", "invalid key"),  # type name and blob disagree
    ("{alice} cert-authority", "missing key"),
    ("{alice}", "invalid line"),
    ('"{alice} {key}', "missing closing quote"),
])
def test_parse_errors_name_file_and_line(alice: Key, line: str, message: str) -> None:
    key = alice.public_line
    bad = line.format(alice=ALICE, key=key, b64=key.split()[1])
    text = f"# header\n{ALICE} {key}\n{bad}\n{ALICE} {key}\n"
    with pytest.raises(AllowedSignersError, match=message) as info:
        AllowedSigners.from_text(text, "signers.txt", strict=True)
    assert str(info.value).startswith("signers.txt:3: ")
    assert info.value.line == 3
    lenient = AllowedSigners.from_text(text, "signers.txt")
    assert [s.line for s in lenient.signers] == [2, 4]
    assert [e.line for e in lenient.errors] == [3]


def test_from_file(alice: Key, tmp_path: Path) -> None:
    path = tmp_path / "allowed_signers"
    path.write_text(f"{ALICE} {alice.public_line}\nbroken line\n")
    signers = AllowedSigners.from_file(path)
    assert signers.source == str(path) and len(signers.signers) == 1
    assert str(signers.errors[0]).startswith(f"{path}:2: ")
    with pytest.raises(AllowedSignersError, match=f"{path}:2: "):
        AllowedSigners.from_file(path, strict=True)
    with pytest.raises(AllowedSignersError, match="cannot read allowed signers file"):
        AllowedSigners.from_file(tmp_path / "missing")


# --- trust decisions (deterministic times) -------------------------------------------------------

def _decide(text: str, sig: str, principal: str = ALICE, now: datetime | None = None,
            namespace: str = "gpu-proof") -> SignerDecision:
    return AllowedSigners.from_text(text, "as").check(parse_signature(sig), principal, namespace, now)


def test_plain_key_decision(alice: Key, alice_sig: str) -> None:
    decision = _decide(f"{ALICE} {alice.public_line}", alice_sig)
    assert decision.allowed and decision.fingerprint == alice.fingerprint
    assert "as:1" in decision.reason
    refused = _decide(f"{ALICE} {alice.public_line}", alice_sig, principal="bob@example.com")
    assert not refused.allowed
    assert refused.reason.startswith("signer not allowed: no allowed_signers entry for principal "
                                     f"bob@example.com with key {alice.fingerprint}")


def test_line_validity_is_inclusive_at_valid_before(alice: Key, alice_sig: str) -> None:
    text = f'{ALICE} valid-after="20240101Z",valid-before="20250101Z" {alice.public_line}'
    edge = datetime(2025, 1, 1, tzinfo=UTC)
    assert _decide(text, alice_sig, now=edge).allowed
    expired = _decide(text, alice_sig, now=edge + timedelta(seconds=1))
    assert not expired.allowed
    assert expired.reason.startswith("key expired (valid-before 2025-01-01")
    assert _decide(text, alice_sig, now=datetime(2024, 1, 1, tzinfo=UTC)).allowed
    early = _decide(text, alice_sig, now=datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not early.allowed and early.reason.startswith("key not yet valid (valid-after 2024-01-01")


def test_local_time_option(alice: Key, alice_sig: str) -> None:
    stamp = time.mktime((2024, 1, 15, 8, 0, 0, 0, 0, 0))
    text = f'{ALICE} valid-before="202401150800" {alice.public_line}'
    assert _decide(text, alice_sig, now=datetime.fromtimestamp(stamp, UTC)).allowed
    assert not _decide(text, alice_sig, now=datetime.fromtimestamp(stamp + 1, UTC)).allowed


def test_namespaces_option(alice: Key, alice_sig: str) -> None:
    assert _decide(f'{ALICE} namespaces="git,gpu-*" {alice.public_line}', alice_sig).allowed
    refused = _decide(f'{ALICE} namespaces="git" {alice.public_line}', alice_sig)
    assert not refused.allowed and "namespace 'gpu-proof' not allowed" in refused.reason


def test_certificate_validity_window(keygen, tmp_path: Path) -> None:
    ca, _, sig = _cert(keygen, tmp_path, "-n", ALICE, "-V", "20300101000000Z:20300201000000Z")
    text = f"{ALICE} cert-authority {ca.public_line}"
    start, end = datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC)
    assert _decide(text, sig, now=start).allowed
    assert _decide(text, sig, now=end - timedelta(seconds=1)).allowed
    expired = _decide(text, sig, now=end)  # a certificate's valid-before is exclusive
    assert not expired.allowed and "certificate expired" in expired.reason
    early = _decide(text, sig, now=start - timedelta(seconds=1))
    assert not early.allowed and "certificate not yet valid" in early.reason


def test_certificate_principals(keygen, tmp_path: Path) -> None:
    ca, user, sig = _cert(keygen, tmp_path, "-n", f"bob@example.com,{ALICE}")
    text = f"* cert-authority {ca.public_line}"
    assert _decide(text, sig).allowed
    assert _decide(text, sig).fingerprint == user.fingerprint
    refused = _decide(text, sig, principal="carol@example.com")
    assert not refused.allowed and "not valid for principal 'carol@example.com'" in refused.reason
    # the certificate's principals are exact names, not patterns
    assert not _decide(text, sig, principal="*@example.com").allowed


def test_certificate_without_principals_is_refused(keygen, tmp_path: Path) -> None:
    ca, _, sig = _cert(keygen, tmp_path)
    refused = _decide(f"* cert-authority {ca.public_line}", sig)
    assert not refused.allowed and "certificate has no principals" in refused.reason


def test_host_certificate_is_refused(keygen, tmp_path: Path) -> None:
    ca, _, sig = _cert(keygen, tmp_path, "-h", "-n", ALICE)
    refused = _decide(f"{ALICE} cert-authority {ca.public_line}", sig)
    assert not refused.allowed and "not a user certificate" in refused.reason


# --- revocation -------------------------------------------------------------------------------

def test_revoked_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AllowedSignersError, match="gpg.ssh.revocationFile") as info:
        RevokedKeys.from_file(tmp_path / "nope")
    assert "does not exist" in str(info.value)


def test_revoked_plain_keys(alice: Key, alice_sig: str, keygen, tmp_path: Path) -> None:
    other = keygen("ecdsa-256", "other")
    path = tmp_path / "revoked"
    path.write_text(f"# revoked keys\n\n  {other.public_line}\n")
    sig = parse_signature(alice_sig)
    assert RevokedKeys.from_file(path).revocation_reason(sig) is None
    path.write_text(f"{other.public_line}\n{alice.public_line}\n")
    assert RevokedKeys.from_file(path).revocation_reason(sig) is not None


def test_revoked_ca_revokes_its_certificates(keygen, tmp_path: Path) -> None:
    ca, user, sig = _cert(keygen, tmp_path, "-n", ALICE)
    revoked = RevokedKeys.from_text(ca.public_line)
    reason = revoked.revocation_reason(parse_signature(sig))
    assert reason is not None and ca.fingerprint in reason
    assert RevokedKeys.from_text(user.public_line).revocation_reason(parse_signature(sig)) is not None


def test_revoked_bad_line_names_line(alice: Key, tmp_path: Path) -> None:
    path = tmp_path / "revoked"
    path.write_text(f"{alice.public_line}\ncert-authority {alice.public_line}\n")
    with pytest.raises(AllowedSignersError, match=f"{path}:2: "):
        RevokedKeys.from_file(path)


def test_krl_is_recognised(alice: Key, alice_sig: str, tmp_path: Path) -> None:
    krl = tmp_path / "revoked.krl"
    subprocess.run(["ssh-keygen", "-q", "-k", "-f", str(krl), str(alice.public)], check=True, capture_output=True)
    revoked = RevokedKeys.from_file(krl)
    assert revoked.is_krl
    with pytest.raises(AllowedSignersError, match="KRL"):
        revoked.revocation_reason(parse_signature(alice_sig))
    decision = verify_signed_payload(PAYLOAD, alice_sig, ALICE,
                                     AllowedSigners.from_text(f"{ALICE} {alice.public_line}"), revoked)
    assert not decision.allowed and "ssh-keygen" in decision.reason


# --- the whole check ----------------------------------------------------------------------------

def test_verify_signed_payload_reasons(alice: Key, alice_sig: str, tmp_path: Path) -> None:
    signers = AllowedSigners.from_text(f"{ALICE} {alice.public_line}")
    assert verify_signed_payload(PAYLOAD, alice_sig, ALICE, signers).allowed
    bad = verify_signed_payload(PAYLOAD + b"!", alice_sig, ALICE, signers)
    assert (bad.allowed, bad.reason) == (False, "bad signature: payload or signature was modified")
    assert bad.fingerprint == alice.fingerprint
    wrong_ns = verify_signed_payload(PAYLOAD, alice_sig, ALICE, signers, namespace="git")
    assert not wrong_ns.allowed and "expected 'git'" in wrong_ns.reason
    revoked = verify_signed_payload(PAYLOAD, alice_sig, ALICE, signers, RevokedKeys.from_text(alice.public_line))
    assert not revoked.allowed and revoked.reason.startswith("key revoked")
    git_sig = sign_file(alice.private, PAYLOAD, tmp_path / "git", namespace="git")
    assert not verify_signed_payload(PAYLOAD, git_sig, ALICE, signers).allowed


@pytest.mark.parametrize("garbage", [
    "", "\0", "-----BEGIN SSH SIGNATURE-----\n", "-----BEGIN SSH SIGNATURE-----\n====\n-----END SSH SIGNATURE-----",
    "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n", "\udcff", "é" * 100,
])
def test_garbage_never_raises(alice: Key, garbage: str) -> None:
    signers = AllowedSigners.from_text(f"{ALICE} {alice.public_line}")
    decision = verify_signed_payload(PAYLOAD, garbage, ALICE, signers)
    assert decision == SignerDecision(False, decision.reason, "", "bad-signature") and decision.reason


def test_mutated_signatures_never_raise_or_pass(keygen, tmp_path: Path) -> None:
    ca, user, cert_sig = _cert(keygen, tmp_path, "-n", ALICE)
    signers = AllowedSigners.from_text(f"{ALICE} {user.public_line}\n{ALICE} cert-authority {ca.public_line}")
    plain_sig = sign_file(user.private, PAYLOAD, tmp_path / "plain")
    rng = random.Random(7)
    for original in (dearmor(plain_sig), dearmor(cert_sig)):
        assert verify_signed_payload(PAYLOAD, armor(original), ALICE, signers).allowed
        for _ in range(300):
            blob = bytearray(original)
            pos = rng.randrange(len(blob))
            if rng.random() < 0.7:
                blob[pos] ^= 1 << rng.randrange(8)
            else:
                del blob[pos:pos + rng.randint(1, 4)]
            decision = verify_signed_payload(PAYLOAD, armor(bytes(blob)), ALICE, signers)
            assert not decision.allowed, f"mutated signature accepted: {bytes(blob).hex()}"


def test_in_process_verify_is_fast(alice: Key, alice_sig: str) -> None:
    import timeit
    signers = AllowedSigners.from_text(f"{ALICE} {alice.public_line}\n" * 50)
    verify_signed_payload(PAYLOAD, alice_sig, ALICE, signers)
    best = min(timeit.repeat(lambda: verify_signed_payload(PAYLOAD, alice_sig, ALICE, signers),
                             number=100, repeat=5)) / 100
    assert best < 1e-3, f"verify_signed_payload took {best * 1e6:.0f} us"


def test_signers_built_in_code_render_a_file_ssh_keygen_reads(alice: Key, alice_sig: str, tmp_path: Path) -> None:
    parsed = AllowedSigners.from_text(
        f'{ALICE},bob@x namespaces="gpu-proof",valid-before="20990101Z" {alice.public_line}').signers[0]
    built = AllowedSigners([AllowedSigner(parsed.principals, parsed.key, namespaces=parsed.namespaces,
                                          valid_before=parsed.valid_before, line=1)])
    reparsed = AllowedSigners.from_text(built.text).signers[0]
    assert (reparsed.principals, reparsed.key, reparsed.namespaces, reparsed.valid_before) == (
        parsed.principals, parsed.key, parsed.namespaces, parsed.valid_before)
    path = tmp_path / "allowed"
    path.write_text(built.text)
    assert verify_with_ssh_keygen(PAYLOAD, alice_sig, ALICE, path, "gpu-proof")[0]
