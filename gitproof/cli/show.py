"""``git gpu-proof show``: every receipt on a commit, with its verification status."""
from __future__ import annotations

import sys
from typing import Any, cast

import pygit2
import typer

from gitproof.cli.common import emit_json, errors_as_exit, open_repo, resolve_commit, short, warn_about_trust
from gitproof.cli.describe import receipt_block
from gitproof.text import printable
from gitproof.verify import ELSEWHERE, UNCHANGED, CommitVerdict, ReceiptVerdict, Verifier, open_verifier


def command(
    rev: str = typer.Argument("HEAD", help="The commit whose receipts to show."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    raw: bool = typer.Option(False, "--raw", help="Print the note's bytes exactly as stored."),
) -> None:
    """Show the receipts attached to REV and whether each one is valid for it.

    With no receipt on REV, say which commit's receipt covers it: an ancestor
    whose fingerprint trees are unchanged, or a commit with the same GPU code
    elsewhere (the pull request head of a squash, rebase or cherry-pick).
    Exit status: 0 when REV holds receipts (valid or not) or is validated
    through another commit's receipt, 1 otherwise, 2 on a usage or
    configuration error.
    """
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
        if not verdicts:
            _no_receipts(verifier, commit, as_json)
    if as_json:
        emit_json({"commit": str(commit.id), "receipts": [v.to_json() for v in verdicts]})
    else:
        for number, verdict in enumerate(verdicts, start=1):
            typer.echo("\n".join(receipt_block(verdict, number)))
    raise typer.Exit(0)


def _no_receipts(verifier: Verifier, commit: pygit2.Commit, as_json: bool) -> None:
    """No note on the commit: name the commit whose receipt covers it, or say why none does."""
    verdict = verifier.verify(commit)
    holders = verdict.holders() if verdict.state == UNCHANGED else {}
    if as_json:
        data: dict[str, Any] = {"commit": str(commit.id), "receipts": []}
        if holders:
            data["unchanged_from"] = cast(ReceiptVerdict, verdict.receipt).note_commit  # sharded: the newest's
            data["validated_by"] = verdict.validated_by()
            if verdict.shards:
                data["unchanged_from_shards"] = holders
        emit_json(data)
    else:
        typer.echo(_no_receipts_text(str(commit.id), verdict, holders))
    raise typer.Exit(0 if holders else 1)


def _no_receipts_text(commit: str, verdict: CommitVerdict, holders: dict[str, str]) -> str:
    head = f"no receipts on {short(commit)}"
    if not holders:
        return "\n".join([head, *(f"  ! {r.message}" for r in verdict.reasons)])  # messages are escaped
    if list(holders) == [""]:
        holder = short(holders[""])
        relation = ("its GPU code is the same as that of" if verdict.relation == ELSEWHERE
                    else "its fingerprint trees are unchanged from")
        return f"{head}; {relation} {holder}, which holds the receipt (see `git gpu-proof show {holder}`)"
    parts = [f"shard {printable(name)}: unchanged from {short(sha)} (see `git gpu-proof show {short(sha)}`)"
             for name, sha in holders.items()]
    return "\n".join([f"{head}; its fingerprint trees are the same as those of the commits that hold the receipts:",
                      *(f"  {part}" for part in parts)])


def register(app: typer.Typer) -> None:
    app.command("show")(command)
