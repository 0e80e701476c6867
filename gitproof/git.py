"""Small pieces of git plumbing shared by the modules that read receipts' object ids.

Every object id a receipt names is untrusted text: it may be of the other
hash's width (64 hex digits in a SHA-1 repository), name nothing, or name an
object of another type. These helpers answer None instead of raising.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pygit2


def lookup(repo: pygit2.Repository, object_id: str) -> pygit2.Object | None:
    """The object with this full id, or None: missing, malformed or of the other hash's width."""
    try:
        return repo.get(object_id)
    except (ValueError, TypeError, pygit2.GitError):
        return None


def commit_time(commit: pygit2.Commit) -> datetime | None:
    """When the commit was made, or None when its committer time is out of any calendar's range."""
    try:
        return datetime.fromtimestamp(commit.commit_time, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
