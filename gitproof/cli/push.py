"""``git gpu-proof push``: push a branch and its receipts together."""
from __future__ import annotations

from typing import List, Optional

import typer

from gitproof.cli.common import errors_as_exit, fail, open_repo
from gitproof.git import default_remote
from gitproof.notes import NOTES_REF
from gitproof.sync import SyncError, fetch, push_refspecs


def command(
    remote: Optional[str] = typer.Argument(None, metavar="REMOTE",
                                           help="Remote (default: the branch's upstream remote, "
                                                "else origin)."),
    refspecs: Optional[List[str]] = typer.Argument(None, metavar="REFSPEC",
                                                   help="What to push (default: the current branch)."),
) -> None:
    """Push the branch and its receipts together.

    Merges the remote's receipts into ours first, then pushes the branch and
    refs/notes/gpu-proof in one atomic push where the server supports it.
    The pre-push hook still checks the branch. `git gpu-proof push REMOTE
    refs/notes/gpu-proof` pushes only the receipts.
    """
    repo = open_repo()
    remote = remote or default_remote(repo)
    if not refspecs:
        if repo.head_is_detached:
            fail("HEAD is detached: name what to push, e.g. `git gpu-proof push origin HEAD:refs/heads/main`")
        refspecs = [repo.head.shorthand]
    with errors_as_exit():
        fetch(repo, remote)
        try:
            branches, pushed = push_refspecs(repo, remote, refspecs)
        except SyncError as exc:
            fail(str(exc), 1)
    if pushed.output:
        typer.echo(pushed.output, err=True)
    for warning in pushed.warnings:
        typer.secho(f"gpu-proof: warning: {warning}", fg=typer.colors.YELLOW, bold=True, err=True)
    typer.echo(f"gpu-proof: pushed {' and '.join(branches + [NOTES_REF])} to {remote}")


def register(app: typer.Typer) -> None:
    app.command("push")(command)
