"""``git gpu-proof verify``: exit 0 only when every revision has a valid receipt."""
from __future__ import annotations

from typing import List, Optional

import typer

from gitproof.cli.common import (EXIT_OK, EXIT_UNVALIDATED, emit_json, errors_as_exit,
                                 open_repo, resolve_commit, warn_about_trust)
from gitproof.cli.describe import commit_line
from gitproof.sync import fetch
from gitproof.verification import open_verifier


def command(
    revs: Optional[List[str]] = typer.Argument(None, help="Revisions to check (default: HEAD)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (see docs/cli.md)."),
    fetch_from: Optional[str] = typer.Option(None, "--fetch", metavar="REMOTE",
                                             help="First fetch and merge the receipts of REMOTE "
                                                  "(works in a fresh clone)."),
    trust_ref: Optional[str] = typer.Option(None, "--trust-ref", metavar="REV",
                                            help="Read [tool.gpu_proof] and the allowed_signers file "
                                                 "from REV (e.g. origin/main), not the working tree, "
                                                 "so the code under review cannot change them."),
) -> None:
    """Check that each revision's GPU code is covered by a valid signed receipt.

    Exit status: 0 all validated, 1 some not validated, 2 usage or configuration error.
    """
    repo = open_repo()
    revs = revs or ["HEAD"]
    commits = [(rev, resolve_commit(repo, rev)) for rev in revs]
    with errors_as_exit():
        if fetch_from:
            merged = fetch(repo, fetch_from)
            typer.echo(f"gpu-proof: {merged.describe()}", err=True)
        if trust_ref:
            resolve_commit(repo, trust_ref)
        verifier = open_verifier(repo, trust_rev=trust_ref)
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
