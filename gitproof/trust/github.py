"""GitHub-published SSH keys as the source of trusted signers (`GitHubSource`).

With ``signer_source = "github"`` a receipt's ``signer:`` is a GitHub
username, and the keys that may sign for it are the ones GitHub publishes at
``<github_url>/<username>.keys`` (public, no authentication). ``github_url``
is ``https://github.com`` by default; a GitHub Enterprise server (or a test
server) works the same way.

Lookups are cached twice:

* in memory, per signer source (one command), so ``log`` over a thousand
  commits fetches each user once, and a failed fetch is not retried either;
* on disk, one file per server and user under
  ``$XDG_CACHE_HOME/gitproof/github-keys/`` (``~/.cache/...`` by default),
  trusted for ``github_cache_minutes`` (default 60; 0 turns the disk cache
  off) after it was written. Files are written atomically (temporary file,
  then rename).

Staleness fails closed: a cache file older than its lifetime is never used,
not even when GitHub cannot be reached. The receipt is then refused (by
``GitHubSource`` in gitproof.trust.sources) with code ``no-trust`` and a
reason that names the fetch error and the unused stale copy. Removing a key on GitHub therefore stops it from validating
after at most ``github_cache_minutes`` on any machine.

A fresh cache that does not list the signing key (the signer has just added
a key to GitHub, say) is refetched once per user and command before the
signature is refused; a fresh cache is never bypassed to *remove* trust
sooner than its lifetime.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from gitproof import __version__
from gitproof.errors import GitproofError
from gitproof.text import stamp
from gitproof.trust.allowed_signers import AllowedSigners, SignerDecision, signer_line
from gitproof.trust.keys import is_certificate_type, key_line, key_type_of, read_key
from gitproof.trust.patterns import match_pattern_list
from gitproof.trust.revocation import RevokedKeys
from gitproof.trust.sources import verify_signed_payload
from gitproof.trust.sshsig import NAMESPACE

FETCH_TIMEOUT = 10.0
MAX_RESPONSE_BYTES = 1 << 20
USERNAME_MAX = 39
_USERNAME_RE = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9])*")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_CACHE_HEADER = "# gitproof: SSH keys from "
_MTIME_SLACK = 60.0  # seconds a cache file may seem to be from the future (coarse clocks)


class GitHubKeysError(GitproofError):
    """Keys could not be had from ``url``; ``not_found`` marks a definite "no such user" (HTTP 404)."""

    def __init__(self, url: str, detail: str, not_found: bool = False) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.detail = detail
        self.not_found = not_found


# -- names, URLs, key lists ----------------------------------------------------------

def is_valid_username(name: str) -> bool:
    """GitHub's rule: ASCII letters, digits and single inner hyphens, at most 39 characters."""
    # Lowercase only: GitHub treats names case-insensitively, the policy's patterns do not,
    # so "Mallory" must not slip past a "!mallory" exclusion.
    return (0 < len(name) <= USERNAME_MAX and name == name.lower()
            and _USERNAME_RE.fullmatch(name) is not None)


def username_problem(name: str) -> str:
    return (f"{name!r} is not a valid GitHub username as a signer (lowercase letters, digits and "
            f"single hyphens, not at either end, at most {USERNAME_MAX} characters)")


def check_base_url(url: str) -> str:
    """The server's base URL without a trailing slash; ValueError unless http(s)://host[...]."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"github_url must be an http:// or https:// URL with a host, not {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"github_url must not have a query or fragment: {url!r}")
    return url.rstrip("/")


def keys_url(base_url: str, user: str) -> str:
    """Where GitHub publishes ``user``'s SSH keys. Usernames are case-insensitive there."""
    return f"{base_url.rstrip('/')}/{user.lower()}.keys"


def parse_keys(text: str) -> list[str]:
    """Plain public keys (``type base64``) from a ``.keys`` / ``.pub`` text, in order, once each.

    Lines that are not a public key OpenSSH would load, and certificates, are skipped;
    comments after a key are dropped.
    """
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parsed = read_key(line)
        if parsed is None or is_certificate_type(key_type_of(parsed[0])):
            continue
        entry = key_line(parsed[0])
        if entry not in found:
            found.append(entry)
    return found


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to plain http."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise urllib.error.HTTPError(newurl, code, f"refused redirect from https to {newurl}",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_keys(url: str, timeout: float = FETCH_TIMEOUT) -> list[str]:
    """Download a ``.keys`` URL and parse it; GitHubKeysError says what went wrong."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise GitHubKeysError(url, "only http:// and https:// URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": f"gitproof/{__version__}",
                                                   "Accept": "text/plain"})
    opener = urllib.request.build_opener(_NoDowngrade)
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise GitHubKeysError(url, f"HTTP {exc.code} {exc.reason}", not_found=exc.code == 404) from None
    except urllib.error.URLError as exc:
        raise GitHubKeysError(url, str(exc.reason)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise GitHubKeysError(url, str(exc) or type(exc).__name__) from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise GitHubKeysError(url, f"response larger than {MAX_RESPONSE_BYTES} bytes")
    return parse_keys(body.decode("utf-8", errors="replace"))


# -- the disk cache --------------------------------------------------------------------

def cache_root() -> Path:
    """``$XDG_CACHE_HOME/gitproof/github-keys`` (an unset or relative value means ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "gitproof" / "github-keys"


def _server_dir_name(base_url: str) -> str:
    """Readable and unique per server: ``host[_port]-<hash of the whole base URL>``."""
    parts = urlsplit(base_url)
    name = parts.hostname or "server"
    if parts.port:
        name += f"_{parts.port}"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"{name}-{hashlib.sha256(base_url.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class CachedKeys:
    keys: list[str]
    written: datetime
    fresh: bool


class KeyCache:
    """One file per user of one server; fresh for ``lifetime_s`` after it was written."""

    def __init__(self, base_url: str, lifetime_s: float, root: Path | None = None) -> None:
        self.directory = (root or cache_root()) / _server_dir_name(base_url)
        self.lifetime_s = lifetime_s

    @property
    def enabled(self) -> bool:
        return self.lifetime_s > 0

    def path(self, user: str) -> Path:
        return self.directory / f"{user.lower()}.keys"

    def read(self, user: str, url: str) -> CachedKeys | None:
        """The cached keys for ``user`` (fresh or stale), or None when there is no usable file."""
        if not self.enabled:
            return None
        path = self.path(user)
        try:
            mtime = path.stat().st_mtime
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        first, _, rest = text.partition("\n")
        if first != _CACHE_HEADER + url:
            return None  # another server's file, or not ours
        age = time.time() - mtime
        fresh = -_MTIME_SLACK <= age < self.lifetime_s
        return CachedKeys(parse_keys(rest), datetime.fromtimestamp(mtime, timezone.utc), fresh)

    def write(self, user: str, url: str, keys: list[str]) -> None:
        """Store atomically; a cache that cannot be written is simply not used."""
        if not self.enabled:
            return
        path = self.path(user)
        text = _CACHE_HEADER + url + "\n" + "".join(k + "\n" for k in keys)
        tmp_name = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp_name, path)
            tmp_name = None
        except OSError:
            pass
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass


# -- the signer source -----------------------------------------------------------------

@dataclass(frozen=True)
class KeyList:
    """A user's keys as one lookup found them."""

    user: str
    url: str
    keys: list[str]
    written: datetime
    from_cache: bool


@dataclass(frozen=True)
class Unavailable:
    """A lookup that gave no keys to check against, and why."""

    reason: str
    code: str


class GitHubSource:
    """Trusts, for principal U, the SSH keys that the GitHub server publishes for user U."""

    def __init__(self, github_url: str = "https://github.com", revoked: RevokedKeys | None = None,
                 cache_minutes: int = 60, restricted_to: list[str] | None = None,
                 cache_dir: Path | None = None, timeout: float = FETCH_TIMEOUT,
                 key_fingerprints: list[str] | None = None) -> None:
        self.base_url = check_base_url(github_url)
        self.key_fingerprints = key_fingerprints  # enforced by the verifier; named in describe()
        self.revoked = revoked
        self.cache_minutes = cache_minutes
        self.restricted_to = restricted_to
        self.cache = KeyCache(self.base_url, cache_minutes * 60, cache_dir)
        self.timeout = timeout
        self.fetches = 0
        self._memory: dict[str, KeyList | Unavailable] = {}
        self._refreshed: set[str] = set()

    @property
    def warnings(self) -> list[str]:
        parts = urlsplit(self.base_url)
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            return [f"github_url {self.base_url} is plain http: the signer keys it serves "
                    "can be altered in transit"]
        return []

    def describe(self) -> str:
        who = ("any GitHub user (the receipt's signer is the username)" if self.restricted_to is None
               else "GitHub users matching " + ", ".join(self.restricted_to))
        if self.key_fingerprints:
            who += ", keys " + ", ".join(self.key_fingerprints) + " only"
        cache = (f"cached for {self.cache_minutes} min in {self.cache.directory}" if self.cache.enabled
                 else "not cached on disk (github_cache_minutes = 0)")
        return f"SSH keys published at {keys_url(self.base_url, '<user>')} for {who}; {cache}"

    def decide(self, payload: bytes, armored: str, principal: str, now: datetime) -> SignerDecision:
        if not is_valid_username(principal):
            return SignerDecision(False, f"signer {username_problem(principal)}", "", "signer-not-allowed")
        if self.restricted_to is not None and not match_pattern_list(principal, ",".join(self.restricted_to)):
            return SignerDecision(False, f"signer {principal!r} is not in the policy's signers "
                                         "(restricted mode: its GitHub keys were not fetched)",
                                  "", "signer-not-allowed")
        found = self.lookup(principal)
        if isinstance(found, Unavailable):
            return SignerDecision(False, found.reason, "", found.code)
        decision = self._check(found, payload, armored, principal, now)
        if not decision.allowed and decision.code == "signer-not-allowed" and found.from_cache:
            newer = self.lookup(principal, refresh=True)  # maybe a key added since the cache was written
            if isinstance(newer, KeyList):
                decision = self._check(newer, payload, armored, principal, now)
        return decision

    def lookup(self, user: str, refresh: bool = False) -> KeyList | Unavailable:
        """The user's keys: from memory, then a fresh disk cache, then the server.

        ``refresh`` skips both caches once per user (later refreshes return the memory copy).
        """
        name = user.lower()
        if name in self._memory and (not refresh or name in self._refreshed):
            return self._memory[name]
        url = keys_url(self.base_url, name)
        cached = None if refresh else self.cache.read(name, url)
        if cached is not None and cached.fresh:
            result: KeyList | Unavailable = KeyList(user, url, cached.keys, cached.written, True)
        else:
            result = self._fetch(user, url, cached)
        if refresh:
            self._refreshed.add(name)
            if isinstance(result, Unavailable) and name in self._memory:
                return result  # keep the fresh cached copy for later receipts
        self._memory[name] = result
        return result

    def _fetch(self, user: str, url: str, stale: CachedKeys | None) -> KeyList | Unavailable:
        self.fetches += 1
        try:
            keys = fetch_keys(url, self.timeout)
        except GitHubKeysError as exc:
            if exc.not_found:
                return Unavailable(f"GitHub user {user} not found: {url} answered {exc.detail}",
                                   "signer-not-allowed")
            reason = f"cannot fetch GitHub keys for {user} from {self.base_url}: {exc.detail}"
            if stale is not None:
                reason += (f"; the cached copy from {stamp(stale.written)} is older than "
                           f"github_cache_minutes = {self.cache_minutes} and is not used")
            return Unavailable(reason, "no-trust")
        self.cache.write(user, url, keys)
        return KeyList(user, url, keys, datetime.now(timezone.utc), False)

    def _check(self, found: KeyList, payload: bytes, armored: str, principal: str,
               now: datetime) -> SignerDecision:
        text = "".join(signer_line(principal, key) + "\n" for key in found.keys)
        signers = AllowedSigners.from_text(text, found.url)
        decision = verify_signed_payload(payload, armored, principal, signers, self.revoked, NAMESPACE, now)
        if decision.allowed or decision.code != "signer-not-allowed":
            return decision
        origin = f" (cached {stamp(found.written)})" if found.from_cache else ""
        if not found.keys:
            reason = f"GitHub user {principal} publishes no SSH keys at {found.url}{origin}"
        else:
            reason = (f"key {decision.fingerprint or '?'} is not among the {len(found.keys)} SSH key(s) "
                      f"published for {principal} at {found.url}{origin}")
        return SignerDecision(False, reason, decision.fingerprint, decision.code)
