"""``git gpu-proof show``: every receipt on a commit, with its verification status."""
from __future__ import annotations

import sys

import typer

from gitproof.cli.common import emit_json, errors_as_exit, open_repo, resolve_commit, short, warn_about_trust
from gitproof.cli.describe import receipt_block
from gitproof.verification import open_verifier


def command(
    rev: str = typer.Argument("HEAD", help="The commit whose receipts to show."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    raw: bool = typer.Option(False, "--raw", help="Print the note's bytes exactly as stored."),
) -> None:
    """Show the receipts attached to REV and whether each one is valid for it."""
    repo = open_repo()
    commit = resolve_commit(repo, rev)
    with errors_as_exit():
        verifier = open_verifier(repo, require_trust=False)
        warn_about_trust(verifier)
        if raw:
            data = verifier.notes.note_bytes(str(commit.id))
            if data is None:
                typer.echo(f"no receipts on {short(str(commit.id))}", err=True)
                raise typer.Exit(1)
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            return
        verdicts = verifier.receipts_on(commit)
    if as_json:
        emit_json({"commit": str(commit.id), "receipts": [v.to_json() for v in verdicts]})
    elif not verdicts:
        typer.echo(f"no receipts on {short(str(commit.id))}")
    else:
        for number, verdict in enumerate(verdicts, start=1):
            typer.echo("\n".join(receipt_block(verdict, number)))
    raise typer.Exit(0 if verdicts else 1)


def register(app: typer.Typer) -> None:
    app.command("show")(command)
