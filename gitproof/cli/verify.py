"""``git gpu-proof verify``: exit 0 only when every revision has a valid receipt."""
from __future__ import annotations

from typing import List, Optional

import typer

from gitproof.cli.common import (EXIT_OK, EXIT_UNVALIDATED, emit_json, errors_as_exit,
                                 open_repo, resolve_commit, warn_about_trust)
from gitproof.cli.describe import commit_line
from gitproof.verification import open_verifier


def command(
    revs: Optional[List[str]] = typer.Argument(None, help="Revisions to check (default: HEAD)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (see docs/cli.md)."),
) -> None:
    """Check that each revision's GPU code is covered by a valid signed receipt.

    Exit status: 0 all validated, 1 some not validated, 2 usage or configuration error.
    """
    repo = open_repo()
    revs = revs or ["HEAD"]
    commits = [(rev, resolve_commit(repo, rev)) for rev in revs]
    with errors_as_exit():
        verifier = open_verifier(repo)
        warn_about_trust(verifier)
        verdicts = [(rev, verifier.verify(commit), commit) for rev, commit in commits]
    ok = all(v.ok for _, v, _ in verdicts)
    if as_json:
        emit_json({"ok": ok, "results": [{"rev": rev, **v.to_json()} for rev, v, _ in verdicts]})
    else:
        for rev, verdict, commit in verdicts:
            typer.echo(commit_line(verdict, commit.message.splitlines()[0] if commit.message else ""))
        if not ok:
            typer.echo("To validate: run the GPU tests on this code with `git gpu-proof run`.")
    raise typer.Exit(EXIT_OK if ok else EXIT_UNVALIDATED)


def register(app: typer.Typer) -> None:
    app.command("verify")(command)
