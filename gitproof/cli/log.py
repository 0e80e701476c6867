"""``git gpu-proof log``: one line per commit, validated or not."""
from __future__ import annotations

import typer

from gitproof.cli.common import emit_json, errors_as_exit, fail, open_repo, warn_about_trust
from gitproof.cli.describe import commit_line
from gitproof.git import commits_in, subject
from gitproof.verify import open_verifier


def command(
    range_: str = typer.Argument("HEAD", metavar="RANGE", help="A revision or A..B."),
    max_count: int = typer.Option(30, "-n", "--max-count", metavar="N",
                                  help="Show at most this many commits."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """One line per commit: validated, unchanged since a validated ancestor, or unvalidated."""
    if max_count < 1:
        fail("--max-count must be at least 1")
    repo = open_repo()
    with errors_as_exit():
        commits = commits_in(repo, range_, max_count)
        verifier = open_verifier(repo)
        warn_about_trust(verifier)
        # Oldest first, so each commit can reuse its parent's verdict.
        verdicts = {c.id: verifier.verify(c) for c in reversed(commits)}
    if as_json:
        emit_json({"commits": [{**verdicts[c.id].to_json(), "subject": subject(c)} for c in commits]})
        return
    for commit in commits:
        typer.echo(commit_line(verdicts[commit.id], subject(commit)))


def register(app: typer.Typer) -> None:
    app.command("log")(command)
