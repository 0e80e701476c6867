"""A grown differential corpus: valid signatures made by ssh-keygen, then mutated, judged by
gitproof and by `ssh-keygen -Y verify`.

The hard rule: gitproof never accepts what ssh-keygen rejects. The reverse (gitproof
refusing what ssh-keygen accepts) is allowed only for the documented cases listed in
REFUSED_ON_PURPOSE, each with its reason. The corpus holds over 300 cases.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gitproof.trust.allowed_signers import AllowedSigners, AllowedSignersError
from gitproof.trust.revocation import RevokedKeys
from gitproof.trust.sources import verify_signed_payload
from tests import helpers
from tests.trust.test_sshsig import PAYLOAD, sign_file

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

ALICE = "alice@example.com"
KEY_TYPES = ("ed25519", "rsa", "ecdsa-256", "ecdsa-384")
ODD_CHARS = {"fs": "\x1c", "gs": "\x1d", "rs": "\x1e", "us": "\x1f", "vt": "\x0b", "ff": "\x0c", "cr": "\r",
             "tab": "\t", "space": " ", "nbsp": "\u00a0", "ideographic-space": "\u3000", "nel": "\x85",
             "line-sep": "\u2028", "equals": "=", "dash": "-", "bang": "!"}
PLACES = ("body-start", "body-middle", "line-end", "before-end")
# gitproof refuses these although ssh-keygen accepts them (docs/receipt-format.md says why).
REFUSED_ON_PURPOSE = {
    "armor-text-after-end": "text after the END line would make a receipt's signature block malleable",
}


def _insert(armored: str, place: str, text: str) -> str:
    lines = armored.split("\n")  # BEGIN, body..., END, ""
    if place == "body-start":
        lines[1] = text + lines[1]
    elif place == "body-middle":
        lines[1] = lines[1][:20] + text + lines[1][20:]
    elif place == "line-end":
        lines[1] = lines[1] + text
    else:
        lines[-3] = lines[-3] + "\n" + text if text.strip("\r\n") == "" else lines[-3] + text
    return "\n".join(lines)


def _armor_cases(sig: str) -> dict[str, str]:
    cases = {f"armor-{name}-{place}": _insert(sig, place, char)
             for name, char in ODD_CHARS.items() for place in PLACES}
    body = sig.split("\n")
    cases.update({
        "armor-valid": sig,
        "armor-end-on-base64-line": "\n".join(body[:-3] + [body[-3] + body[-2], ""]),
        "armor-text-after-end": sig + "trailing text\n",
        "armor-blank-line-in-body": "\n".join(body[:2] + [""] + body[2:]),
        "armor-crlf": sig.replace("\n", "\r\n"),
        "armor-no-final-newline": sig.rstrip("\n"),
        "armor-begin-trailing-space": sig.replace("SIGNATURE-----\n", "SIGNATURE----- \n", 1),
        "armor-lowercase-begin": sig.replace("BEGIN SSH SIGNATURE", "begin ssh signature", 1),
        "armor-double-begin": body[0] + "\n" + sig,
        "armor-padding-removed": sig.replace("=\n", "\n"),
        "armor-extra-padding": sig.replace("\n-----END", "==\n-----END"),
        "armor-leading-blank-line": "\n" + sig,
    })
    return cases


def _allowed_cases(line: str, key_type: str) -> dict[str, str]:
    principal, kind, rest = line.split(" ", 2)
    blob = rest.split()[0]
    cases = {
        "allowed-valid": line,
        "allowed-vt-in-key": f"{principal} {kind} {blob[:30]}\x0b{blob[30:]}",
        "allowed-fs-in-key": f"{principal} {kind} {blob[:30]}\x1c{blob[30:]}",
        "allowed-tab-separators": f"{principal}\t{kind}\t{blob}",
        "allowed-double-space": f"{principal}  {kind}  {blob}",
        "allowed-trailing-cr": f"{principal} {kind} {blob}\r",
        "allowed-nbsp-separator": f"{principal}\u00a0{kind} {blob}",
        "allowed-key-truncated": f"{principal} {kind} {blob[:-8]}",
        "allowed-type-mismatch": f"{principal} ssh-dss {blob}",
        "allowed-namespace-quoted-gpu-proof": f'{principal} namespaces="gpu-proof" {kind} {blob}',
        "allowed-namespace-uppercase-option": f'{principal} NAMESPACES="gpu-proof" {kind} {blob}',
        "allowed-principal-pattern": f"*@example.com {kind} {blob}",
        "allowed-principal-negated": f"!{ALICE},*@example.com {kind} {blob}",
        "allowed-comment-line-first": f"# comment\n{principal} {kind} {blob}",
    }
    if key_type == "rsa":
        cases["allowed-rsa-sha2-256-token"] = f"{principal} rsa-sha2-256 {blob}"
        cases["allowed-rsa-sha2-512-token"] = f"{principal} rsa-sha2-512 {blob}"
    return cases


def _revocation_cases(public_line: str, other_line: str) -> dict[str, bytes]:
    return {
        "revoked-none": b"",
        "revoked-listed": public_line.encode() + b"\n",
        "revoked-other": other_line.encode() + b"\n",
        "revoked-crlf-blank-line": other_line.encode() + b"\r\n\r\n",
        "revoked-cr-only-line": b"\r\n" + other_line.encode() + b"\n",
        "revoked-comment-crlf": b"# list\r\n" + other_line.encode() + b"\r\n",
        "revoked-listed-crlf": public_line.encode() + b"\r\n",
        "revoked-tab-indented": b"\t" + other_line.encode() + b"\n",
        "revoked-garbage-line": b"not a key\n" + other_line.encode() + b"\n",
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, bytes | None]]:
    root = tmp_path_factory.mktemp("sshsig-mutations")
    cases: dict[str, tuple[str, str, bytes | None]] = {}
    for key_type in KEY_TYPES:
        key = helpers.generate_key(root / "keys", key_type, f"alice-{key_type}")
        other = helpers.generate_key(root / "keys", key_type, f"other-{key_type}")
        sig = sign_file(key.private, PAYLOAD, root / "sigs")
        line = f"{ALICE} {key.public_line}"
        for name, armored in _armor_cases(sig).items():
            cases[f"{key_type}:{name}"] = (line, armored, None)
        for name, allowed in _allowed_cases(line, key_type).items():
            cases[f"{key_type}:{name}"] = (allowed, sig, None)
        for name, revoked in _revocation_cases(key.public_line, other.public_line).items():
            cases[f"{key_type}:{name}"] = (line, sig, revoked)
    return cases


def _theirs(allowed: Path, sig: str, revoked: Path | None, tmp: Path) -> bool:
    path = tmp / "payload.sig"
    path.write_bytes(sig.encode("utf-8"))
    args = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", ALICE, "-n", "gpu-proof", "-s", str(path)]
    if revoked is not None:
        args += ["-r", str(revoked)]
    return subprocess.run(args, input=PAYLOAD, capture_output=True).returncode == 0


def _ours(allowed: Path, sig: str, revoked: Path | None) -> tuple[bool, str]:
    try:
        signers = AllowedSigners.from_file(allowed)
        revocation = RevokedKeys.from_file(revoked) if revoked is not None else None
    except AllowedSignersError as exc:
        return False, str(exc)
    decision = verify_signed_payload(PAYLOAD, sig, ALICE, signers, revocation)
    return decision.allowed, decision.reason


def test_the_corpus_is_large_enough(corpus):
    assert len(corpus) >= 300


def test_gitproof_never_accepts_what_ssh_keygen_rejects(corpus, tmp_path):
    accepted_only_by_us, refused_only_by_us = [], []
    for name, (allowed_text, sig, revoked_bytes) in corpus.items():
        allowed = tmp_path / "allowed_signers"
        allowed.write_bytes(allowed_text.encode("utf-8") + b"\n")
        revoked = None
        if revoked_bytes is not None:
            revoked = tmp_path / "revoked"
            revoked.write_bytes(revoked_bytes)
        theirs = _theirs(allowed, sig, revoked, tmp_path)
        ours, reason = _ours(allowed, sig, revoked)
        if ours and not theirs:
            accepted_only_by_us.append(f"{name}: {reason}")
        elif theirs and not ours:
            refused_only_by_us.append(name)
    assert accepted_only_by_us == []
    undocumented = [n for n in refused_only_by_us if n.split(":", 1)[1] not in REFUSED_ON_PURPOSE]
    assert undocumented == [], undocumented
