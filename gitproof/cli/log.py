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
        verdicts = verifier.verify_all(commits)
    if as_json:
        emit_json({"commits": [{**v.to_json(), "subject": subject(c)} for c, v in zip(commits, verdicts, strict=True)]})
        return
    for commit, verdict in zip(commits, verdicts, strict=True):
        typer.echo(commit_line(verdict, subject(commit)))


def register(app: typer.Typer) -> None:
    app.command("log")(command)
