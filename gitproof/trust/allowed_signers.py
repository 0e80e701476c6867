"""git's SSH allowed_signers file, decided the way `ssh-keygen -Y verify` decides it.

File format (ssh-keygen(1), ALLOWED SIGNERS): `principals [options] keytype base64 [comment]`.
This module parses it, renders it, appends keys to it, and decides whether an (already
verified) signing key is trusted for a principal and namespace.

Behaviour copied from OpenSSH 9.x, and checked against it by tests/trust/test_sshsig_differential.py:

* A line ssh-keygen cannot parse (unknown option, bad key, missing quote, ...) is reported and
  skipped; it does not fail the whole verification. Parse problems are kept in
  `AllowedSigners.errors` (with file and line); `strict=True` raises on the first instead.
* Times in `valid-after`/`valid-before` are `YYYYMMDD[HHMM[SS]]`, UTC with a `Z` or `UTC`
  suffix, otherwise local time (interpreted with DST off, exactly like OpenSSH's mktime call).
  `valid-before` is inclusive on a line; a certificate's valid-before is exclusive.
"""
from __future__ import annotations

import base64
import calendar
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.serialization import SSHCertificate, SSHCertificateType

from gitproof.errors import GitproofError
from gitproof.files import UnreadableFile, read_regular, write_atomically
from gitproof.text import stamp
from gitproof.trust.keys import (SignatureError, WireReader, ca_key_blob, fingerprint_of, load_certificate,
                                 plain_key_blob, read_key)
from gitproof.trust.patterns import match_pattern_list
from gitproof.trust.sshsig import NAMESPACE, SshSignature


class AllowedSignersError(GitproofError):
    """Raised for a problem in an allowed_signers or revocation file, naming file and line,
    and when an allowed_signers file cannot be read or written."""

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


def signer_line(principal: str, key: str) -> str:
    """The line that lets ``principal`` sign receipts with ``key`` (``type base64``)."""
    return f'{principal} namespaces="{NAMESPACE}" {key}'


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
        seconds = calendar.timegm(fields) if utc else int(time.mktime(fields))
    except (OverflowError, ValueError):
        raise ValueError(f"invalid time {text!r}") from None
    if seconds <= 0:
        raise ValueError(f"invalid time {text!r}")
    return datetime.fromtimestamp(seconds, timezone.utc)


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


def _fmt_ts(seconds: int) -> str:
    return stamp(datetime.fromtimestamp(min(seconds, 253402300799), timezone.utc))


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
        return f"key not yet valid (valid-after {stamp(signer.valid_after)})"
    if signer.valid_before is not None and now > signer.valid_before.timestamp():
        return f"key expired (valid-before {stamp(signer.valid_before)})"
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
        seconds, fingerprint = _timestamp(now), sig.fingerprint
        failures, other_principals = [], []
        for signer, via_ca in self._candidates(sig):
            if not match_pattern_list(principal, signer.principals):
                other_principals.append(signer)
                continue
            problem = self._certificate_problem(sig, principal, seconds) if via_ca else None
            problem = problem or _line_restriction(signer, namespace, seconds)
            if problem is None:
                reason = f"good signature for {principal} with key {fingerprint} ({self.source}:{signer.line})"
                return SignerDecision(True, reason, fingerprint, "ok")
            failures.append(f"{problem} [{self.source}:{signer.line}]")
        return SignerDecision(False, self._refusal(principal, fingerprint, failures, other_principals),
                              fingerprint, "signer-not-allowed")

    @staticmethod
    def _certificate_problem(sig: SshSignature, principal: str, seconds: int) -> str | None:
        try:
            return check_certificate(load_certificate(sig.public_key), principal, seconds)
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


# --- appending -----------------------------------------------------------------------------

def _already_listed(signers: AllowedSigners, user: str, key: str) -> bool:
    """An entry that already lets ``user`` sign with ``key`` in the gpu-proof namespace."""
    parsed = read_key(key)
    assert parsed is not None, "keys come from parse_keys, which returns only keys read_key accepts"
    for signer in signers.signers:
        if signer.cert_authority or signer.key != parsed[0]:
            continue
        if user not in signer.principals.split(","):
            continue
        if signer.namespaces is None or match_pattern_list(NAMESPACE, signer.namespaces):
            return True
    return False


def add_keys(target: Path, user: str, keys: list[str]) -> tuple[list[str], list[str]]:
    """Append ``user``'s keys not yet listed to ``target``: (added, already present).

    The file (and its directory) is created if missing and replaced atomically;
    AllowedSignersError when it cannot be read or written.
    """
    try:
        existing = target.read_bytes() if target.exists() else b""
    except OSError as exc:
        raise AllowedSignersError(f"cannot read allowed signers file {target}: {exc.strerror or exc}") from None
    current = AllowedSigners.from_text(existing.decode("utf-8", errors="surrogateescape"), str(target))
    added = [k for k in keys if not _already_listed(current, user, k)]
    if added:
        lines = "".join(signer_line(user, key) + "\n" for key in added).encode()
        separator = b"\n" if existing and not existing.endswith(b"\n") else b""
        try:
            write_atomically(target, existing + separator + lines)
        except OSError as exc:
            raise AllowedSignersError(f"cannot write allowed signers file {target}: "
                                      f"{exc.strerror or exc}") from None
    return added, [k for k in keys if k not in added]
