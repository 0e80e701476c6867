"""The repository plumbing: finding a repository, naming and listing commits, reading config, locating hooks.

Every module that needs one of these asks here (pre-commit's ``git.py`` is the
model). Every object id a receipt names is untrusted text: it may be of the
other hash's width (64 hex digits in a SHA-1 repository), name nothing, or
name an object of another type, so the lookups answer None instead of raising.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pygit2

from gitproof.errors import GitproofError

ConfigLevel = pygit2.enums.ConfigLevel


class NotARepositoryError(GitproofError):
    """Raised when the directory a command starts from is not inside a git repository."""


class UnknownRevisionError(GitproofError):
    """Raised when a revision the user gave names no commit in the repository."""


class GitCommandError(GitproofError):
    """Raised when the real git refuses a listing (a bad range, date or pattern); the message has git's words."""


# -- the repository ------------------------------------------------------------------


def discover(start: Path | str | None = None) -> pygit2.Repository | None:
    """The repository enclosing ``start`` (default: the current directory), or None."""
    found = pygit2.discover_repository(str(start if start is not None else Path.cwd()))
    return pygit2.Repository(found) if found is not None else None


def open_repository(start: Path | str | None = None) -> pygit2.Repository:
    """The repository enclosing ``start`` (default: the current directory); commits or not."""
    start = start if start is not None else Path.cwd()
    repo = discover(start)
    if repo is None:
        raise NotARepositoryError(f"{start} is not inside a git repository")
    return repo


def git_dir(repo: pygit2.Repository) -> Path:
    """The repository's own git dir (a linked worktree's is under .git/worktrees/)."""
    return Path(repo.path)


def common_dir(repo: pygit2.Repository) -> Path:
    """The git dir shared by all worktrees: hooks and config live there."""
    own = git_dir(repo)
    pointer = own / "commondir"
    if not pointer.is_file():
        return own
    target = Path(pointer.read_text(encoding="utf-8").strip())
    return (target if target.is_absolute() else own / target).resolve()


def hooks_dir(repo: pygit2.Repository) -> Path:
    """Where git looks for hooks: core.hooksPath if set, else <common dir>/hooks."""
    configured = config_value(repo, "core.hooksPath")
    if not configured:
        return common_dir(repo) / "hooks"
    path = Path(configured).expanduser()
    if path.is_absolute():
        return path
    # git runs hooks from the top of the working tree (the git dir when bare),
    # and a relative core.hooksPath is taken from there.
    base = Path(repo.workdir) if repo.workdir else git_dir(repo)
    return (base / path).resolve()


def uses_sha256(repo: pygit2.Repository) -> bool:
    """Whether object ids here are SHA-256 (64 hex digits) rather than SHA-1 (40)."""
    return config_value(repo, "extensions.objectformat") == "sha256"


# -- config ----------------------------------------------------------------------------


def config_value(repo: pygit2.Repository, name: str) -> str | None:
    """git config ``name`` as git would read it (the last value wins); None when unset."""
    try:
        return repo.config[name]
    except KeyError:
        return None


def config_bool(repo: pygit2.Repository, name: str) -> bool | None:
    """git config ``name`` as a boolean; None when unset or not a boolean."""
    try:
        return repo.config.get_bool(name)
    except (KeyError, pygit2.GitError):
        return None


def config_entries(repo: pygit2.Repository, name: str) -> list[tuple[str, ConfigLevel]]:
    """Every value of a (multi-valued) key, each with the config file it comes from."""
    wanted = _listed_key(name)
    # libgit2 gives None for a key written without "= value"; callers only compare values as text.
    return [(cast(str, entry.value), ConfigLevel(entry.level)) for entry in repo.config if entry.name == wanted]


def config_level(repo: pygit2.Repository, name: str) -> ConfigLevel | None:
    """The most specific config file (system < global < local < worktree) that sets ``name``."""
    levels = [level for _, level in config_entries(repo, name)]
    return max(levels) if levels else None


def _listed_key(name: str) -> str:
    """How libgit2 spells a key when listing: section and key lowercase, subsection kept."""
    parts = name.split(".")
    return ".".join([parts[0].lower(), *parts[1:-1], parts[-1].lower()])


# -- commits and objects --------------------------------------------------------------------


def lookup(repo: pygit2.Repository, object_id: str) -> pygit2.Object | None:
    """The object with this full id, or None: missing, malformed or of the other hash's width."""
    try:
        return repo.get(object_id)
    except (ValueError, TypeError, pygit2.GitError):
        return None


def find_commit(repo: pygit2.Repository, rev: str) -> pygit2.Commit | None:
    """The commit a revision (``HEAD~1``, a branch, an id) names, or None."""
    try:
        return repo.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):  # InvalidSpecError is a ValueError
        return None


def resolve_commit(repo: pygit2.Repository, rev: str) -> pygit2.Commit:
    """The commit a revision names; UnknownRevisionError when it names none."""
    commit = find_commit(repo, rev)
    if commit is None:
        raise UnknownRevisionError(f"unknown revision {rev!r}")
    return commit


def commits_in(repo: pygit2.Repository, spec: str, limit: int) -> list[pygit2.Commit]:
    """Commits of ``A..B`` or of everything reachable from ``B``, newest first, at most ``limit``."""
    start, sep, end = spec.partition("..")
    tip = resolve_commit(repo, (end or "HEAD") if sep else spec)
    walker = repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    if sep:
        walker.hide(resolve_commit(repo, start or "HEAD").id)
    commits: list[pygit2.Commit] = []
    for commit in walker:
        if len(commits) >= limit:
            break
        commits.append(commit)
    return commits


@dataclass(frozen=True)
class CommitFilter:
    """git log's commit limiting: ``--since``/``--until`` (committer date, git's date syntax),
    ``--author`` (a regular expression), ``--first-parent``, and at most ``limit`` commits."""

    limit: int | None = None
    since: str | None = None
    until: str | None = None
    author: str | None = None
    first_parent: bool = False

    def options(self) -> list[str]:
        options = [f"--max-count={self.limit}"] if self.limit is not None else []
        options += [f"--since={self.since}"] if self.since is not None else []
        options += [f"--until={self.until}"] if self.until is not None else []
        options += [f"--author={self.author}"] if self.author is not None else []
        return options + (["--first-parent"] if self.first_parent else [])


def rev_list(repo: pygit2.Repository, spec: str, limits: CommitFilter) -> list[pygit2.Commit]:
    """The commits ``git rev-list`` lists for ``spec`` (a revision, ``A..B``, ``A...B``) under
    ``limits``, newest first: the real git, so every filter means exactly what it means to git."""
    for name, date in (("--since", limits.since), ("--until", limits.until)):
        if date is not None:
            check_date(repo, name, date)
    # --end-of-options: a range starting with "-" is a revision to git, never an option.
    listed = _git(repo, "rev-list", *limits.options(), "--end-of-options", spec, "--")
    if listed.returncode != 0:
        raise GitCommandError(f"cannot list the commits of {spec!r}: {_git_words(listed.stderr)}")
    return [cast(pygit2.Commit, repo[line]) for line in listed.stdout.split()]


def check_date(repo: pygit2.Repository, option: str, date: str) -> None:
    """Refuse a date git cannot read: ``git log --since=garbage`` silently means "now", so the
    value is first put through git's careful date parser (the one for expiry dates)."""
    parsed = _git(repo, "-c", f"gitproof.date={date}", "config", "--type=expiry-date", "gitproof.date")
    if parsed.returncode != 0 or not date.strip():
        raise GitCommandError(f"{option} {date!r} is not a date git understands "
                              "(e.g. 2024-05-01, \"2 weeks ago\", yesterday)")


def _git(repo: pygit2.Repository, *args: str) -> subprocess.CompletedProcess[str]:
    """The real git on this repository, reading only (no terminal, no pager)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"}
    return subprocess.run(["git", "--git-dir", repo.path, *args], env=env, text=True, capture_output=True,
                          stdin=subprocess.DEVNULL, errors="replace")


def _git_words(stderr: str) -> str:
    lines = [line.removeprefix("fatal: ").removeprefix("error: ") for line in stderr.splitlines() if line.strip()]
    return "; ".join(lines) or "git failed without saying why"


def subject(commit: pygit2.Commit) -> str:
    """The first line of the commit message ("" for an empty message)."""
    return commit.message.splitlines()[0] if commit.message else ""


def commit_time(commit: pygit2.Commit) -> datetime | None:
    """When the commit was made, or None when its committer time is out of any calendar's range."""
    try:
        return datetime.fromtimestamp(commit.commit_time, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def author_of(commit: pygit2.Commit) -> dict[str, str]:
    """The commit's author, name and email, as git recorded them (undecodable bytes replaced)."""
    author = commit.author
    return {"name": author.raw_name.decode("utf-8", "replace"), "email": author.raw_email.decode("utf-8", "replace")}


def commit_date(commit: pygit2.Commit) -> str | None:
    """The committer date in ISO 8601 with the committer's own offset (git's ``%cI``);
    None when it is out of any calendar's range."""
    offset = timezone(timedelta(minutes=commit.commit_time_offset)) if abs(commit.commit_time_offset) < 1440 else None
    try:
        return datetime.fromtimestamp(commit.commit_time, offset or timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def default_remote(repo: pygit2.Repository) -> str:
    """The current branch's upstream remote (branch.<name>.remote), else ``origin``."""
    if not repo.head_is_detached:
        configured = config_value(repo, f"branch.{repo.head.shorthand}.remote")
        if configured is not None:
            return configured
    return "origin"
