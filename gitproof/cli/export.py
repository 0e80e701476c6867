"""``git gpu-proof export``: the audit trail of a range, as JSON, CSV or in-toto statements."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from gitproof.cli.common import errors_as_exit, fail, open_repo, trusted_commit, warn_about_trust
from gitproof.cli.log import AUTHOR_HELP, FIRST_PARENT_HELP, RANGE_HELP, SINCE_HELP, TRUST_REF_HELP, UNTIL_HELP
from gitproof.export import FORMATS, audit_commits, render
from gitproof.files import write_atomically
from gitproof.git import CommitFilter, rev_list
from gitproof.verify.audit import open_auditor


def command(
    range_: str = typer.Argument("HEAD", metavar="RANGE", help=RANGE_HELP),
    fmt: str = typer.Option("json", "--format", metavar="FORMAT",
                            help="json (one object per commit), csv (one row per commit) or in-toto "
                                 "(JSON Lines: one in-toto Statement v1 per receipt)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="FILE",
                                          help="Write to FILE (replaced whole, never half-written) "
                                               "instead of standard output."),
    max_count: Optional[int] = typer.Option(None, "-n", "--max-count", metavar="N",
                                            help="At most this many commits (default: all)."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DATE", help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, "--until", metavar="DATE", help=UNTIL_HELP),
    first_parent: bool = typer.Option(False, "--first-parent", help=FIRST_PARENT_HELP),
    author: Optional[str] = typer.Option(None, "--author", metavar="PATTERN", help=AUTHOR_HELP),
    trust_ref: Optional[str] = typer.Option(None, "--trust-ref", metavar="REV", help=TRUST_REF_HELP),
) -> None:
    """Export the audit trail (the statuses of `log --audit`) of RANGE.

    Exit status: 0 written, 2 usage or configuration error.
    """
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if max_count is not None and max_count < 1:
        fail("--max-count must be at least 1")
    repo = open_repo()
    trust_ref = trusted_commit(repo, trust_ref)
    with errors_as_exit():
        commits = rev_list(repo, range_, CommitFilter(max_count, since, until, author, first_parent))
        auditor = open_auditor(repo, trust_ref)
        warn_about_trust(auditor.verifier)
        data = render(fmt, audit_commits(auditor, commits), repo)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        write_atomically(output, data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


def register(app: typer.Typer) -> None:
    app.command("export")(command)
