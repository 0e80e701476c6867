"""``git gpu-proof fetch``: bring a remote's receipts in, merged with ours."""
from __future__ import annotations

import typer

from gitproof.cli.common import emit_json, errors_as_exit, open_repo
from gitproof.sync import fetch, tracking_ref


def command(
    remote: str = typer.Argument("origin", metavar="REMOTE", help="The remote to fetch receipts from."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Fetch a remote's receipts and merge them into ours.

    REMOTE's refs/notes/gpu-proof goes to refs/remote-notes/REMOTE/gpu-proof
    and is merged into refs/notes/gpu-proof as the union of receipts per
    commit: never an overwrite.
    """
    repo = open_repo()
    with errors_as_exit():
        result = fetch(repo, remote)
    if as_json:
        emit_json({"remote": remote, "tracking_ref": tracking_ref(remote), **result.to_json()})
        return
    for bad in result.bad_entries:
        typer.echo(f"gpu-proof: warning: ignored unreadable entry from {remote}: {bad}", err=True)
    typer.echo(f"gpu-proof: {result.describe()}")


def register(app: typer.Typer) -> None:
    app.command("fetch")(command)
