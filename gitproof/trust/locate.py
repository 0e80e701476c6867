"""Which trust files a repository uses, read from the working tree or from a trusted revision.

The allowed_signers file is ``[tool.gpu_proof] allowed_signers`` (relative to the
repository root), else git config ``gpg.ssh.allowedSignersFile``; the revocation
list is ``gpg.ssh.revocationFile``. With a trusted revision (``--trust-ref``, or
HEAD in a bare repository) the files are read from that revision's objects, not
from the working tree, so the code under review cannot add its own key.
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pygit2

from gitproof import git
from gitproof.errors import GitproofError
from gitproof.policy import Policy
from gitproof.trust.allowed_signers import AllowedSigners, AllowedSignersError
from gitproof.trust.revocation import RevokedKeys
from gitproof.trust.sources import AllowedSignersSource, SignerSource, Trust

if TYPE_CHECKING:
    from gitproof.trust.github import GitHubSource

SIGNERS_CONFIG = "gpg.ssh.allowedSignersFile"
REVOCATION_CONFIG = "gpg.ssh.revocationFile"


class TrustError(GitproofError):
    """Raised when the trusted signer configuration is missing or unreadable."""


def configured_path(repo: pygit2.Repository, name: str) -> Path | None:
    """A path in git config ``name``, ``~`` expanded, relative to the repository root."""
    value = _config_value(repo, name)
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else _root(repo) / path


def _config_value(repo: pygit2.Repository, name: str) -> str | None:
    """git config ``name``, None when unset; a key without a value is an error, as in git."""
    if name not in repo.config:
        return None
    value = git.config_value(repo, name)
    if value is None:
        raise TrustError(f"git config {name} has no value")
    return value


def _root(repo: pygit2.Repository) -> Path:
    """The working tree, or the git directory of a bare repository."""
    root = repo.workdir or repo.path
    assert root is not None, "an open repository has a path"
    return Path(root)


def configured_signers_file(repo: pygit2.Repository) -> Path | None:
    """git config gpg.ssh.allowedSignersFile, resolved as verification resolves it."""
    return configured_path(repo, SIGNERS_CONFIG)


def signers_file_to_edit(repo: pygit2.Repository, policy: Policy) -> Path:
    """The allowed_signers file verification reads from the working tree (it may not exist yet)."""
    if policy.allowed_signers:
        if repo.workdir is None:
            raise TrustError("[tool.gpu_proof] allowed_signers is relative to the working tree, and this "
                             "repository has none; pass --file PATH")
        return Path(repo.workdir) / policy.allowed_signers
    configured = configured_signers_file(repo)
    if configured is None:
        raise TrustError("no allowed_signers file configured: set [tool.gpu_proof] allowed_signers in "
                         "pyproject.toml (e.g. \".gpu-proof/allowed_signers\") or git config "
                         "gpg.ssh.allowedSignersFile, or pass --file PATH")
    return configured


def load_trust(repo: pygit2.Repository, policy: Policy, now: datetime | None = None,
               trust_rev: str | None = None) -> Trust:
    """Trust roots from [tool.gpu_proof] allowed_signers or gpg.ssh.allowedSignersFile.

    With ``trust_rev`` the policy's allowed_signers file is read from that
    revision's objects, not from the working tree, so the code under review
    cannot add its own key.
    """
    if trust_rev is None and repo.workdir is None:
        trust_rev = "HEAD"  # a bare repository: trust files come from its HEAD, like its policy
    try:
        revoked = _revoked_keys(repo, trust_rev)
        source: SignerSource
        if policy.signer_source == "github":
            source = github_source(policy, revoked)
        elif trust_rev:
            source = AllowedSignersSource(_trusted_signers(repo, policy, trust_rev), revoked)
        else:
            source = AllowedSignersSource(AllowedSigners.from_file(_signers_path(repo, policy)), revoked)
    except (AllowedSignersError, OSError) as exc:
        raise TrustError(str(exc)) from exc
    return Trust(source, now, policy.allow_unsigned)


def github_source(policy: Policy, revoked: RevokedKeys | None) -> GitHubSource:
    """The signer source for ``signer_source = "github"``; TrustError for an unusable github_url."""
    from gitproof.trust.github import GitHubSource  # urllib and http.client: only when it is used

    try:
        restricted = policy.restricted
        return GitHubSource(policy.github_url, revoked, policy.github_cache_minutes,
                            policy.signers if restricted and policy.signers else None,
                            key_fingerprints=policy.key_fingerprints if restricted else None)
    except ValueError as exc:
        raise TrustError(f"{policy.source}: {exc}") from exc


def _signers_path(repo: pygit2.Repository, policy: Policy) -> Path:
    if policy.allowed_signers:
        path: Path | None = _root(repo) / policy.allowed_signers
        origin = f"[tool.gpu_proof] allowed_signers ({policy.allowed_signers})"
    else:
        path = configured_signers_file(repo)
        origin = "git config gpg.ssh.allowedSignersFile"
    if path is None:
        raise TrustError("no allowed signers configured: set [tool.gpu_proof] allowed_signers "
                         "in pyproject.toml (e.g. \".gpu-proof/allowed_signers\") or "
                         "git config gpg.ssh.allowedSignersFile")
    if not path.is_file():
        state = "is not a regular file" if os.path.lexists(path) else "does not exist"
        raise TrustError(f"allowed signers file {path} (from {origin}) {state}")
    return path


def _revoked_keys(repo: pygit2.Repository, trust_rev: str | None) -> RevokedKeys | None:
    """gpg.ssh.revocationFile; under a trusted revision a relative path is read from it."""
    configured = _config_value(repo, REVOCATION_CONFIG)
    if configured is None:
        return None
    path = Path(configured).expanduser()
    if trust_rev and not path.is_absolute():
        blob = blob_at(repo, trust_rev, path.as_posix(), "revocation file")
        return RevokedKeys.from_bytes(blob.data, f"{trust_rev}:{path.as_posix()}")
    return RevokedKeys.from_file(configured_path(repo, REVOCATION_CONFIG) or path)


def blob_at(repo: pygit2.Repository, rev: str, path: str, what: str) -> pygit2.Blob:
    """The file ``path`` at revision ``rev``; TrustError (naming ``what``) when there is none."""
    try:
        obj = repo.revparse_single(rev).peel(pygit2.Commit).tree[path]
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise TrustError(f"{what} {path} does not exist at trusted revision {rev}") from exc
    if not isinstance(obj, pygit2.Blob):
        raise TrustError(f"{what} {rev}:{path} is not a file")
    return obj


def _trusted_signers(repo: pygit2.Repository, policy: Policy, rev: str) -> AllowedSigners:
    """Nothing from the working tree: the policy's file, or a relative
    gpg.ssh.allowedSignersFile, is read from ``rev``; only an absolute
    configured path (the CI machine's own file) is read from disk."""
    if policy.allowed_signers:
        return _signers_at(repo, rev, policy.allowed_signers)
    configured = _config_value(repo, SIGNERS_CONFIG)
    if configured is None:
        raise TrustError(f"no allowed signers configured at {rev}: set [tool.gpu_proof] "
                         "allowed_signers there, or git config gpg.ssh.allowedSignersFile "
                         "to an absolute path")
    path = Path(configured).expanduser()
    if path.is_absolute():
        return AllowedSigners.from_file(_signers_path(repo, policy))
    return _signers_at(repo, rev, path.as_posix())


def _signers_at(repo: pygit2.Repository, rev: str, path: str) -> AllowedSigners:
    blob = blob_at(repo, rev, path, "allowed signers file")
    return AllowedSigners.from_text(blob.data.decode("utf-8", errors="surrogateescape"), f"{rev}:{path}")
