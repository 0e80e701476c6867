"""``git gpu-proof log``: one line per commit, validated or not."""
from __future__ import annotations



import pygit2
import typer

from gitproof.cli.common import emit_json, errors_as_exit, fail, open_repo, resolve_commit, warn_about_trust
from gitproof.cli.describe import commit_line
from gitproof.verification import open_verifier


def commits_in(repo: pygit2.Repository, spec: str, limit: int) -> list[pygit2.Commit]:
    """Commits of ``A..B`` or of everything reachable from ``B``, newest first."""
    start, sep, end = spec.partition("..")
    tip = resolve_commit(repo, (end or "HEAD") if sep else spec)
    walker = repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    if sep:
        walker.hide(resolve_commit(repo, start or "HEAD").id)
    commits = []
    for commit in walker:
        if len(commits) >= limit:
            break
        commits.append(commit)
    return commits


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
    commits = commits_in(repo, range_, max_count)
    with errors_as_exit():
        verifier = open_verifier(repo)
        warn_about_trust(verifier)
        # Oldest first, so each commit can reuse its parent's verdict.
        verdicts = {c.id: verifier.verify(c) for c in reversed(commits)}
    if as_json:
        emit_json({"commits": [{**verdicts[c.id].to_json(), "subject": _subject(c)} for c in commits]})
        return
    for commit in commits:
        typer.echo(commit_line(verdicts[commit.id], _subject(commit)))


def _subject(commit: pygit2.Commit) -> str:
    return commit.message.splitlines()[0] if commit.message else ""


def register(app: typer.Typer) -> None:
    app.command("log")(command)
