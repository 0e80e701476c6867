"""git's SSH allowed_signers trust model, decided the way `ssh-keygen -Y verify` decides it.

File format (ssh-keygen(1), ALLOWED SIGNERS): `principals [options] keytype base64 [comment]`.

Behaviour copied from OpenSSH 9.x, and checked against it by tests/test_sshsig_differential.py:

* A line ssh-keygen cannot parse (unknown option, bad key, missing quote, ...) is reported and
  skipped; it does not fail the whole verification. Parse problems are kept in
  `AllowedSigners.errors` (with file and line); `strict=True` raises on the first instead.
* Times in `valid-after`/`valid-before` are `YYYYMMDD[HHMM[SS]]`, UTC with a `Z` or `UTC`
  suffix, otherwise local time (interpreted with DST off, exactly like OpenSSH's mktime call).
  `valid-before` is inclusive on a line; a certificate's valid-before is exclusive.
* Revocation lists: plain public keys are handled natively. A binary KRL (`SSHKRL\\n`) cannot
  be read natively; `verify_signed_payload` then hands the whole decision to ssh-keygen.
"""
from __future__ import annotations

import atexit
import base64
import binascii
import calendar
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.serialization import SSHCertificate, SSHCertificateType

from gitproof.errors import GitproofError
from gitproof.files import UnreadableFile, read_regular
from gitproof.signatures import (
    CERT_SUFFIX,
    SignatureError,
    SshSignature,
    UnsupportedKeyType,
    WireReader,
    ca_key_blob,
    fingerprint_of,
    is_certificate_type,
    load_certificate,
    load_public_key,
    parse_signature,
    plain_key_blob,
    plain_key_type,
    verify_signature,
    verify_with_ssh_keygen,
)

_KNOWN_PLAIN_TYPES = {
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}
_NATIVE_PLAIN_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                       "ecdsa-sha2-nistp521"}
_PATTERN_MAX = 1023  # OpenSSH gives up (no match) on a longer sub-pattern
KRL_MAGIC = b"SSHKRL\n"
_KEY_RE = re.compile(r"([^ \t]+)[ \t]+([^ \t]*)(.*)\Z", re.S)


class AllowedSignersError(GitproofError):
    """A problem in an allowed_signers or revocation file, naming file and line."""

    def __init__(self, message: str, source: str | None = None, line: int | None = None) -> None:
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        super().__init__(where + message)
        self.source = source
        self.line = line


@dataclass(frozen=True)
class SignerDecision:
    """``code`` is ``ok``, ``bad-signature`` (unreadable, or not made over this
    payload in this namespace), ``key-revoked`` or ``signer-not-allowed`` (no
    matching allowed_signers entry, or the entry or certificate forbids it now)."""

    allowed: bool
    reason: str
    fingerprint: str
    code: str = "ok"


@dataclass
class AllowedSigner:
    """One allowed_signers line."""

    principals: str
    key: bytes
    cert_authority: bool = False
    namespaces: str | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    line: int = 0

    @property
    def key_type(self) -> str:
        return WireReader(self.key, "key").text("key type")

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.key)


# --- OpenSSH patterns --------------------------------------------------------------------

def match_pattern(value: str, pattern: str) -> bool:
    """OpenSSH match_pattern: `*` and `?` wildcards, case-sensitive, on the raw bytes.

    Text read from files keeps bytes that are not UTF-8 as surrogate escapes; they are
    matched as those same bytes, as ssh-keygen matches them."""
    s, p = value.encode("utf-8", "surrogateescape"), pattern.encode("utf-8", "surrogateescape")
    si = pi = 0
    star, mark = -1, 0
    while si < len(s):
        if pi < len(p) and p[pi] != 0x2A and (p[pi] == 0x3F or p[pi] == s[si]):
            si, pi = si + 1, pi + 1
        elif pi < len(p) and p[pi] == 0x2A:
            star, mark, pi = pi, si, pi + 1
        elif star >= 0:
            mark += 1
            si, pi = mark, star + 1
        else:
            return False
    while pi < len(p) and p[pi] == 0x2A:
        pi += 1
    return pi == len(p)


def match_pattern_list(value: str, patterns: str) -> bool:
    """OpenSSH match_pattern_list: comma-separated patterns, `!` negation wins over any match."""
    raw = patterns.encode("utf-8", "surrogateescape")
    got_positive, i = False, 0
    while i < len(raw):
        negated = raw[i:i + 1] == b"!"
        i += negated
        end = raw.find(b",", i)
        end = len(raw) if end < 0 else end
        sub = raw[i:end]
        i = end + 1
        if len(sub) >= _PATTERN_MAX:
            return False
        if match_pattern(value, sub.decode("utf-8", "surrogateescape")):
            if negated:
                return False
            got_positive = True
    return got_positive


# --- parsing -----------------------------------------------------------------------------

def parse_time(text: str) -> datetime:
    """OpenSSH parse_absolute_time: YYYYMMDD[HHMM[SS]], `Z`/`UTC` suffix = UTC, else local."""
    utc = False
    if len(text) > 1 and text[-1:].upper() == "Z":
        text, utc = text[:-1], True
    elif len(text) > 3 and text[-3:].upper() == "UTC":
        text, utc = text[:-3], True
    if len(text) not in (8, 12, 14) or not text.isascii() or not text.isdigit():
        raise ValueError(f"invalid time {text!r}")
    parts = [int(text[i:i + w]) for i, w in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2))
             if i < len(text)]
    year, month, day, hour, minute, second = parts + [0] * (6 - len(parts))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 61):
        raise ValueError(f"invalid time {text!r}")
    fields = (year, month, day, hour, minute, second, 0, 0, 0)  # tm_isdst=0, as OpenSSH does
    try:
        stamp = calendar.timegm(fields) if utc else int(time.mktime(fields))
    except (OverflowError, ValueError):
        raise ValueError(f"invalid time {text!r}") from None
    if stamp <= 0:
        raise ValueError(f"invalid time {text!r}")
    return datetime.fromtimestamp(stamp, timezone.utc)


def _take_principals(text: str) -> tuple[str, str | None]:
    """OpenSSH strdelimw: first word, or a double-quoted span; returns (token, rest)."""
    cut = next((i for i, ch in enumerate(text) if ch in ' \t\r\n"'), None)
    if cut is None:
        return text, None
    if text[cut] == '"':
        text = text[:cut] + text[cut + 1:]
        close = text.find('"', cut)
        if close < 0:
            raise ValueError("missing closing quote in principals")
        return text[:close], text[close + 1:].lstrip(" \t\r\n")
    return text[:cut], text[cut + 1:].lstrip(" \t\r\n")


def _split_options(text: str) -> tuple[str, str]:
    """OpenSSH sshkey_advance_past_options: the options word (quotes may hold spaces)."""
    quoted, i = False, 0
    while i < len(text) and (quoted or text[i] not in " \t"):
        if text[i] == "\\" and text[i + 1:i + 2] == '"':
            i += 1
        elif text[i] == '"':
            quoted = not quoted
        i += 1
    if quoted:
        raise ValueError("invalid options: unterminated quote")
    if i >= len(text):
        raise ValueError("missing key")
    return text[:i], text[i + 1:].lstrip(" \t")


def _known_key_type(name: str) -> bool:
    return plain_key_type(name) in _KNOWN_PLAIN_TYPES and (
        name in _KNOWN_PLAIN_TYPES or name.endswith(CERT_SUFFIX))


def _validate_key_blob(blob: bytes, key_type: str) -> None:
    """Reject keys OpenSSH would not load (bad point, short RSA, bad CA signature, ...)."""
    if plain_key_type(key_type) not in _NATIVE_PLAIN_TYPES:
        plain_key_blob(blob)  # structure only; ssh-keygen verifies these types
    elif is_certificate_type(key_type):
        try:
            load_certificate(blob)
        except UnsupportedKeyType:
            plain_key_blob(blob)
    else:
        load_public_key(blob)


# sshkey_read takes a signature algorithm's name for the RSA key it belongs to.
_TYPE_ALIASES = {"rsa-sha2-256": "ssh-rsa", "rsa-sha2-512": "ssh-rsa",
                 "rsa-sha2-256-cert-v01@openssh.com": "ssh-rsa-cert-v01@openssh.com",
                 "rsa-sha2-512-cert-v01@openssh.com": "ssh-rsa-cert-v01@openssh.com"}
_C_SPACE = " \t\n\v\f\r"  # C's isspace() in the C locale, what OpenSSH's base64 decoder skips


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
    encoded = "".join(c for c in match[2] if c not in _C_SPACE)
    try:
        blob = base64.b64decode(encoded, validate=True)
        if base64.b64encode(blob).decode() != encoded or WireReader(blob).text("key type") != key_type:
            return None
        _validate_key_blob(blob, key_type)
    except (binascii.Error, ValueError, SignatureError):
        return None
    return blob, match[3]


def _dequote(opts: str, pos: int) -> tuple[str, int]:
    """OpenSSH opt_dequote: a double-quoted value, `\\"` escapes a quote."""
    if opts[pos:pos + 1] != '"':
        raise ValueError("missing start quote")
    out, pos = [], pos + 1
    while pos < len(opts) and opts[pos] != '"':
        if opts[pos] == "\\" and opts[pos + 1:pos + 2] == '"':
            pos += 1
        out.append(opts[pos])
        pos += 1
    if pos >= len(opts):
        raise ValueError("missing end quote")
    return "".join(out), pos + 1


def _option_value(opts: str, pos: int, name: str) -> int | None:
    """Position just after `name=` (case-insensitive) at `pos`, or None."""
    end = pos + len(name)
    if opts[pos:end].lower() == name and opts[end:end + 1] == "=":
        return end + 1
    return None


def _parse_options(opts: str, signer: AllowedSigner) -> None:
    """OpenSSH sshsigopt_parse, filling `signer`."""
    pos = 0
    while pos < len(opts) and opts[pos] not in " \t":
        if opts[pos:pos + 14].lower() == "cert-authority":
            signer.cert_authority, pos = True, pos + 14
        elif (start := _option_value(opts, pos, "namespaces")) is not None:
            if signer.namespaces is not None:
                raise ValueError('multiple "namespaces" clauses')
            signer.namespaces, pos = _dequote(opts, start)
        else:
            pos = _parse_time_option(opts, pos, signer)
        if pos >= len(opts) or opts[pos] in " \t":
            break
        if opts[pos] != ",":
            raise ValueError("unknown key option")
        pos += 1
        if pos >= len(opts):
            raise ValueError("unexpected end-of-options")


def _parse_time_option(opts: str, pos: int, signer: AllowedSigner) -> int:
    for name in ("valid-after", "valid-before"):
        start = _option_value(opts, pos, name)
        if start is None:
            continue
        attr = name.replace("-", "_")
        if getattr(signer, attr) is not None:
            raise ValueError(f'multiple "{name}" clauses')
        value, pos = _dequote(opts, start)
        try:
            setattr(signer, attr, parse_time(value))
        except ValueError:
            raise ValueError(f'invalid "{name}" time') from None
        return pos
    return pos  # nothing matched: the caller reports an unknown option


def parse_line(line: str) -> AllowedSigner | None:
    """Parse one allowed_signers line (None for blank/comment); ValueError says what is wrong."""
    text = line.rstrip("\r\n").lstrip(" \t")
    if not text.strip() or text.startswith("#"):
        return None
    principals, rest = _take_principals(text)
    if rest is None:
        raise ValueError("invalid line: expected principals followed by a key")
    opts, key = "", read_key(rest)
    if key is None:
        opts, after = _split_options(rest)
        if (key := read_key(after)) is None:
            raise ValueError("invalid key")
    signer = AllowedSigner(principals=principals, key=key[0])
    _parse_options(opts, signer)
    return signer


# --- trust decisions ---------------------------------------------------------------------

def _timestamp(now: datetime | None) -> int:
    return int(time.time()) if now is None else int(now.timestamp())


def _fmt(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_ts(stamp: int) -> str:
    return _fmt(datetime.fromtimestamp(min(stamp, 253402300799), timezone.utc))


def check_certificate(cert: SSHCertificate, principal: str, now: int) -> str | None:
    """OpenSSH sshkey_cert_check_authority for signatures; returns why it fails, or None."""
    if cert.type is not SSHCertificateType.USER:
        return "certificate is not a user certificate"
    if now < cert.valid_after:
        return f"certificate not yet valid (valid after {_fmt_ts(cert.valid_after)})"
    if now >= cert.valid_before:
        return f"certificate expired (valid before {_fmt_ts(cert.valid_before)})"
    if not cert.valid_principals:
        return "certificate has no principals"
    if principal.encode() not in cert.valid_principals:
        return f"certificate is not valid for principal {principal!r}"
    return None


def _line_restriction(signer: AllowedSigner, namespace: str, now: int) -> str | None:
    if signer.namespaces is not None and not match_pattern_list(namespace, signer.namespaces):
        return f"namespace {namespace!r} not allowed for this key (namespaces={signer.namespaces!r})"
    if signer.valid_after is not None and now < signer.valid_after.timestamp():
        return f"key not yet valid (valid-after {_fmt(signer.valid_after)})"
    if signer.valid_before is not None and now > signer.valid_before.timestamp():
        return f"key expired (valid-before {_fmt(signer.valid_before)})"
    return None


class AllowedSigners:
    """A parsed allowed_signers file (parsed once; lookups indexed by key)."""

    def __init__(self, signers: Iterable[AllowedSigner], source: str = "<allowed_signers>",
                 text: str | None = None, errors: Iterable[AllowedSignersError] = ()) -> None:
        self.signers = list(signers)
        self.source = source
        self.errors = list(errors)
        self.text = text if text is not None else self._render()
        self._by_key: dict[bytes, list[AllowedSigner]] = {}
        for signer in self.signers:
            self._by_key.setdefault(plain_key_blob(signer.key), []).append(signer)

    def _render(self) -> str:
        lines = []
        for s in self.signers:
            opts = ["cert-authority"] if s.cert_authority else []
            if s.namespaces is not None:
                opts.append('namespaces="{}"'.format(s.namespaces.replace('"', '\\"')))
            for name, when in (("valid-after", s.valid_after), ("valid-before", s.valid_before)):
                if when is not None:
                    opts.append(f'{name}="{when.astimezone(timezone.utc):%Y%m%d%H%M%S}Z"')
            key = f"{s.key_type} {base64.b64encode(s.key).decode()}"
            lines.append(" ".join(filter(None, [f'"{s.principals}"', ",".join(opts), key])))
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str, source: str = "<allowed_signers>",
                  strict: bool = False) -> AllowedSigners:
        signers, errors = [], []
        for number, line in enumerate(text.split("\n"), start=1):
            try:
                signer = parse_line(line)
            except (ValueError, SignatureError) as exc:
                error = AllowedSignersError(str(exc), source, number)
                if strict:
                    raise error from None
                errors.append(error)
                continue
            if signer is not None:
                signer.line = number
                signers.append(signer)
        return cls(signers, source, text, errors)

    @classmethod
    def from_file(cls, path: Path | str, strict: bool = False) -> AllowedSigners:
        path = Path(path)
        try:
            text = read_regular(path, "allowed signers file").decode("utf-8", errors="surrogateescape")
        except UnreadableFile as exc:
            raise AllowedSignersError(str(exc)) from None
        return cls.from_text(text, str(path), strict)

    def _candidates(self, sig: SshSignature) -> list[tuple[AllowedSigner, bool]]:
        """Lines whose key matches the signing key, in file order; True marks a CA match."""
        try:
            found = [(s, False) for s in self._by_key.get(plain_key_blob(sig.public_key), [])
                     if not s.cert_authority and s.key == sig.public_key]
            if sig.is_certificate:
                ca = plain_key_blob(ca_key_blob(sig.public_key))
                found += [(s, True) for s in self._by_key.get(ca, []) if s.cert_authority]
        except SignatureError:
            return []
        return sorted(found, key=lambda item: item[0].line)

    def check(self, sig: SshSignature, principal: str, namespace: str,
              now: datetime | None = None) -> SignerDecision:
        """Is the (already cryptographically verified) signing key trusted for principal/namespace?"""
        stamp, fingerprint = _timestamp(now), sig.fingerprint
        failures, other_principals = [], []
        for signer, via_ca in self._candidates(sig):
            if not match_pattern_list(principal, signer.principals):
                other_principals.append(signer)
                continue
            problem = self._certificate_problem(sig, principal, stamp) if via_ca else None
            problem = problem or _line_restriction(signer, namespace, stamp)
            if problem is None:
                reason = f"good signature for {principal} with key {fingerprint} ({self.source}:{signer.line})"
                return SignerDecision(True, reason, fingerprint, "ok")
            failures.append(f"{problem} [{self.source}:{signer.line}]")
        return SignerDecision(False, self._refusal(principal, fingerprint, failures, other_principals),
                              fingerprint, "signer-not-allowed")

    @staticmethod
    def _certificate_problem(sig: SshSignature, principal: str, stamp: int) -> str | None:
        try:
            return check_certificate(load_certificate(sig.public_key), principal, stamp)
        except SignatureError as exc:
            return str(exc)

    def _refusal(self, principal: str, fingerprint: str, failures: list[str],
                 other: list[AllowedSigner]) -> str:
        if failures:
            return "; ".join(failures)
        reason = ("signer not allowed: no allowed_signers entry for principal "
                  f"{principal} with key {fingerprint}")
        if other:
            listed = ", ".join(repr(s.principals) for s in other)
            reason += f" (key is listed for {listed})"
        if self.errors:
            reason += f"; {len(self.errors)} unparsable line(s) skipped, first: {self.errors[0]}"
        return reason


# --- revocation --------------------------------------------------------------------------

class RevokedKeys:
    """A revocation list (git's gpg.ssh.revocationFile) of plain public keys.

    A binary KRL is recognised but not read: `is_krl` is set, `is_revoked` raises, and
    `verify_signed_payload` lets ssh-keygen make the whole decision instead.
    """

    def __init__(self, keys: Iterable[bytes] = (), source: str = "<revoked keys>",
                 path: Path | None = None, is_krl: bool = False) -> None:
        self.keys = list(keys)
        self.source = source
        self.path = path
        self.is_krl = is_krl
        self._plain = {plain_key_blob(k) for k in self.keys}

    @classmethod
    def from_text(cls, text: str, source: str = "<revoked keys>") -> RevokedKeys:
        keys = []
        for number, line in enumerate(text.split("\n"), start=1):
            content = line.lstrip(" \t")  # as OpenSSH skips: a line of a lone CR is not blank
            if not content or content.startswith("#"):
                continue
            key = read_key(content.rstrip(" \t\r"))
            if key is None:
                raise AllowedSignersError("not a public key (revocation lists hold one key per line)",
                                          source, number)
            keys.append(key[0])
        return cls(keys, source)

    @classmethod
    def from_file(cls, path: Path | str) -> RevokedKeys:
        path = Path(path)
        if not path.is_file():
            raise AllowedSignersError(
                f"revocation file {path} (configured in gpg.ssh.revocationFile) does not exist")
        try:
            data = read_regular(path, "revocation file")
        except UnreadableFile as exc:
            raise AllowedSignersError(str(exc)) from None
        if data.startswith(KRL_MAGIC):
            return cls(source=str(path), path=path, is_krl=True)
        revoked = cls.from_text(data.decode("utf-8", "surrogateescape"), str(path))
        revoked.path = path
        return revoked

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> RevokedKeys:
        """A list read from a git object. A binary KRL is handed to ssh-keygen as a file, so
        it is written to a private temporary file that lives as long as the process."""
        if not data.startswith(KRL_MAGIC):
            return cls.from_text(data.decode("utf-8", "surrogateescape"), source)
        directory = Path(tempfile.mkdtemp(prefix="gitproof-krl-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "revoked.krl"
        path.write_bytes(data)
        return cls(source=source, path=path, is_krl=True)

    def is_revoked(self, sig: SshSignature) -> bool:
        """True if the signing key, or the CA of a signing certificate, is listed."""
        return self.revocation_reason(sig) is not None

    def revocation_reason(self, sig: SshSignature) -> str | None:
        """Why `sig`'s key counts as revoked, or None."""
        if self.is_krl:
            raise AllowedSignersError("binary KRL files are not supported natively; "
                                      "verify_signed_payload uses ssh-keygen for them", self.source)
        if plain_key_blob(sig.public_key) in self._plain:
            return f"key revoked ({sig.fingerprint} is listed in {self.source})"
        if sig.is_certificate:
            ca = ca_key_blob(sig.public_key)
            if plain_key_blob(ca) in self._plain:
                return (f"key revoked (its certificate's CA key {fingerprint_of(ca)} "
                        f"is listed in {self.source})")
        return None

    def text(self) -> str:
        return "".join(f"{WireReader(k).text('key type')} {base64.b64encode(k).decode()}\n"
                       for k in self.keys)


# --- the whole check ---------------------------------------------------------------------

def verify_signed_payload(payload: bytes, armored: str, principal: str, signers: AllowedSigners,
                          revoked: RevokedKeys | None = None, namespace: str = "gpu-proof",
                          now: datetime | None = None) -> SignerDecision:
    """Parse, verify, check revocation and trust; never raises on bad input."""
    try:
        sig = parse_signature(armored)
    except SignatureError as exc:
        return SignerDecision(False, str(exc), "", "bad-signature")
    fingerprint = sig.fingerprint
    if revoked is not None and revoked.is_krl:
        return _ssh_keygen_decision(payload, sig, principal, signers, revoked, namespace, now)
    try:
        verify_signature(sig, payload, namespace)
    except UnsupportedKeyType:
        return _ssh_keygen_decision(payload, sig, principal, signers, revoked, namespace, now)
    except SignatureError as exc:
        return SignerDecision(False, str(exc), fingerprint, "bad-signature")
    revocation = revoked.revocation_reason(sig) if revoked is not None else None
    if revocation is not None:
        return SignerDecision(False, revocation, fingerprint, "key-revoked")
    return signers.check(sig, principal, namespace, now)


def _ssh_keygen_decision(payload: bytes, sig: SshSignature, principal: str, signers: AllowedSigners,
                         revoked: RevokedKeys | None, namespace: str,
                         now: datetime | None) -> SignerDecision:
    with tempfile.TemporaryDirectory(prefix="gitproof-allowed-") as tmp:
        allowed_path = Path(tmp) / "allowed_signers"
        allowed_path.write_text(signers.text, encoding="utf-8", errors="surrogateescape")
        revocation_path = None
        if revoked is not None:
            revocation_path = revoked.path or Path(tmp) / "revoked"
            if revoked.path is None:
                revocation_path.write_text(revoked.text())
        ok, output = verify_with_ssh_keygen(payload, sig.armored, principal, allowed_path, namespace,
                                            revocation_path, verify_time=now)
    lines = [line for line in output.splitlines() if line.strip()]
    summary = lines[-1] if ok and lines else "; ".join(lines) or "no output"
    prefix = "verified by ssh-keygen" if ok else "ssh-keygen rejected the signature"
    return SignerDecision(ok, f"{prefix}: {summary}", sig.fingerprint, _ssh_keygen_code(ok, output))


def _ssh_keygen_code(ok: bool, output: str) -> str:
    if ok:
        return "ok"
    lowered = output.lower()
    if "revoked" in lowered:
        return "key-revoked"
    if "verification failed" in lowered or "incorrect signature" in lowered or "couldn't verify" in lowered:
        return "bad-signature"
    return "signer-not-allowed"
