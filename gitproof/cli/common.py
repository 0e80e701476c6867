"""What every command shares: opening the repository, errors, exit codes, output."""
from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NoReturn

import pygit2
import typer
from typer.core import TyperCommand

from gitproof import git
from gitproof.errors import GitproofError
from gitproof.text import terminal_safe

if TYPE_CHECKING:
    import click

    from gitproof.verify import Verifier

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


def open_repo(start: Path | None = None, needs_commits: bool = True) -> pygit2.Repository:
    """The enclosing repository, or exit 2. ``needs_commits=False`` (install, doctor): one
    without commits is fine, so a repository can be set up first and committed to later."""
    try:
        repo = git.open_repository(start)
    except GitproofError as exc:
        fail(str(exc))
    if needs_commits and repo.head_is_unborn:
        fail("the repository has no commits yet")
    return repo


def resolve_commit(repo: pygit2.Repository, rev: str) -> pygit2.Commit:
    """The commit ``rev`` names, or exit 2."""
    try:
        return git.resolve_commit(repo, rev)
    except GitproofError as exc:
        fail(str(exc))


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


def warn_about_trust(verifier: Verifier) -> None:
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

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
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
