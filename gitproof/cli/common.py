"""What every command shares: opening the repository, errors, exit codes, output."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NoReturn

import pygit2
import typer

from gitproof.cli.errors import KNOWN_ERRORS
from gitproof.receipt import terminal_safe

EXIT_OK = 0
EXIT_UNVALIDATED = 1
EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.secho(f"gpu-proof: error: {terminal_safe(message)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """Known problems become one clear line and exit status 2, never a traceback."""
    try:
        yield
    except KNOWN_ERRORS as exc:
        fail(str(exc))


def open_repo(start: Path | None = None) -> pygit2.Repository:
    start = start or Path.cwd()
    found = pygit2.discover_repository(str(start))
    if found is None:
        fail(f"{start} is not inside a git repository")
    repo = pygit2.Repository(found)
    if repo.head_is_unborn:
        fail("the repository has no commits yet")
    return repo


def resolve_commit(repo: pygit2.Repository, rev: str) -> pygit2.Commit:
    try:
        return repo.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        fail(f"unknown revision {rev!r}")


def trusted_commit(repo: pygit2.Repository, name: str | None) -> str | None:
    """The one full ref (or commit id) ``--trust-ref NAME`` stands for; exit 2 when ambiguous.

    The full name is what every trust input is then read through, and what messages show.
    """
    if name is None:
        return None
    from gitproof.refs import TrustRefError, resolve_trust_ref

    try:
        return resolve_trust_ref(repo, name).describe()
    except TrustRefError as exc:
        fail(str(exc))


def warn_about_trust(verifier) -> None:
    for warning in verifier.trust.warnings:
        typer.secho(f"gpu-proof: warning: {terminal_safe(warning)}", fg=typer.colors.YELLOW, err=True)


def short(commit_id: str) -> str:
    return commit_id[:10]


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def styled(text: str, ok: bool | None) -> str:
    color = {True: typer.colors.GREEN, False: typer.colors.RED, None: typer.colors.YELLOW}[ok]
    return typer.style(text, fg=color, bold=True)
