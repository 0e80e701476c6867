"""Naming the trusted revision: exactly one ref, or a full commit id.

``--trust-ref`` picks where allowed_signers and the policy are read from, so
a name that could mean two things is an attack surface: git's own rules try
``refs/tags/<name>`` before ``refs/remotes/<name>``, and a tag or a local
branch called ``origin/main`` arrives in a CI clone more easily than it
seems (auto-followed tags, checkout branches). So a short name is accepted
only when it names exactly one existing ref in all of git's namespaces; a
full ref name (``refs/remotes/origin/main``) or a full object id is taken
as it is; anything else (abbreviated ids, ``~``/``^`` expressions) is
refused with the full names to use instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pygit2

from gitproof.errors import GitproofError
from gitproof.git import find_commit, uses_sha256

# git's own order for a short name (git help revisions: "<refname>")
_SHORT_NAME_RULES = ("refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}", "refs/remotes/{}/HEAD")
_SPECIAL = ("HEAD", "FETCH_HEAD", "ORIG_HEAD", "MERGE_HEAD")


class TrustRefError(GitproofError, ValueError):
    """The trusted revision cannot be named unambiguously; the message says what to use."""


@dataclass(frozen=True)
class TrustedRevision:
    name: str        # what the user gave
    ref: str | None  # the full ref it resolved through; None for an object id
    commit: str      # the commit id every trust input is read from

    def describe(self) -> str:
        return self.ref or self.commit


def resolve_trust_ref(repo: pygit2.Repository, name: str) -> TrustedRevision:
    """The one commit ``name`` means, or :class:`TrustRefError` naming the candidates."""
    if (not name or name.startswith("-") or any(c in name for c in "~^:\\ \t\n") or ".." in name
            or "@{" in name or name == "@"):
        raise TrustRefError(f"--trust-ref {name!r} is not a ref name or commit id; give a full ref "
                            "name such as refs/remotes/origin/main, or a full commit id")
    if _is_full_oid(repo, name):
        return TrustedRevision(name, None, _commit_of(repo, name, name))
    if name.startswith("refs/"):
        if repo.references.get(name) is None:
            raise TrustRefError(f"--trust-ref {name}: no such ref; fetch it first, e.g. "
                                "git fetch --no-tags origin +refs/heads/main:refs/remotes/origin/main")
        return TrustedRevision(name, name, _commit_of(repo, name, name))
    candidates = [rule.format(name) for rule in _SHORT_NAME_RULES]
    if name in _SPECIAL:
        candidates.insert(0, name)
    found = [ref for ref in candidates if _exists(repo, ref)]
    if len(found) > 1:
        raise TrustRefError(f"--trust-ref {name} is ambiguous: it names {', '.join(found)}. Give the "
                            "full ref name of the protected branch (for example refs/remotes/origin/main)")
    if not found:
        hint = (" (an abbreviated commit id is not accepted: give the full id)"
                if re.fullmatch(r"[0-9a-fA-F]{4,}", name) else "")
        raise TrustRefError(f"--trust-ref {name}: no ref by that name{hint}; give a full ref name "
                            "such as refs/remotes/origin/main")
    return TrustedRevision(name, found[0], _commit_of(repo, found[0], name))


def _is_full_oid(repo: pygit2.Repository, name: str) -> bool:
    width = 64 if uses_sha256(repo) else 40
    return len(name) == width and re.fullmatch(r"[0-9a-fA-F]+", name) is not None


def _exists(repo: pygit2.Repository, ref: str) -> bool:
    try:
        return repo.references.get(ref) is not None
    except (ValueError, pygit2.GitError):  # not a valid ref name
        return False


def _commit_of(repo: pygit2.Repository, spec: str, name: str) -> str:
    commit = find_commit(repo, spec)
    if commit is None:
        raise TrustRefError(f"--trust-ref {name}: does not name a commit")
    return str(commit.id)
