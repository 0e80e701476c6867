"""What every command shares: opening the repository, errors, exit codes, output."""
from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NoReturn

import pygit2
import typer
from typer.core import TyperCommand

from gitproof.errors import GitproofError
from gitproof.receipt import terminal_safe

EXIT_OK = 0
EXIT_UNVALIDATED = 1
EXIT_USAGE = 2


def color_allowed() -> bool:
    """False when NO_COLOR is set to anything non-empty (https://no-color.org)."""
    return not os.environ.get("NO_COLOR")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.secho(f"gpu-proof: error: {terminal_safe(message)}", fg=typer.colors.RED, err=True,
                color=None if color_allowed() else False)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.secho(f"gpu-proof: warning: {terminal_safe(message)}", fg=typer.colors.YELLOW, err=True,
                color=None if color_allowed() else False)


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """Known problems become one clear line and exit status 2, never a traceback."""
    try:
        yield
    except GitproofError as exc:
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
    """The trust roots' warnings, and the policy's (pytest-gpu-proof keys it ignores)."""
    for warning in [*verifier.trust.warnings, *verifier.policy.notes]:
        warn(warning)


def short(commit_id: str) -> str:
    return commit_id[:10]


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def styled(text: str, ok: bool | None) -> str:
    if not color_allowed():
        return text
    color = {True: typer.colors.GREEN, False: typer.colors.RED, None: typer.colors.YELLOW}[ok]
    return typer.style(text, fg=color, bold=True)


# -- help texts ----------------------------------------------------------------------------

_TYPE_SUFFIX = re.compile(r" <[^<>]*>(\.\.\.)?$")


class Command(TyperCommand):
    """Help without typer's type annotations on arguments (``rev <str>``, ``revs... <list[str]>``):
    the help text says what an argument is; options carry a metavar for the same reason."""

    def format_options(self, ctx, formatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and param.param_type_name in groups:
                name, text = record
                if param.param_type_name == "argument":
                    name = _TYPE_SUFFIX.sub("", name)
                groups[param.param_type_name].append((name, text))
        for title, rows in (("Arguments", groups["argument"]), ("Options", groups["option"])):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
