"""``git gpu-proof doctor``: is this repository set up for gitproof, and what to fix."""
from __future__ import annotations

import typer

from gitproof.cli.common import EXIT_OK, EXIT_UNVALIDATED, emit_json, open_repo
from gitproof.doctor import FAIL, OK, WARN, Check, doctor

_LABELS = {OK: ("ok", typer.colors.GREEN), WARN: ("warn", typer.colors.YELLOW),
           FAIL: ("FAIL", typer.colors.RED)}


def _line(check: Check) -> str:
    word, color = _LABELS[check.status]
    return f"{typer.style(f'{word:5}', fg=color, bold=True)} {check.name:30} {check.message}"


def command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Check the hooks, the notes configuration, the signing key, the trust roots and
    the policy. Exit status 1 when a check fails."""
    report = doctor(open_repo(needs_commits=False))
    if as_json:
        emit_json(report.to_json())
    else:
        for check in report.checks:
            typer.echo(_line(check))
            if check.fix and check.status != OK:
                typer.echo(f"      {'':30} fix: {check.fix}")
        typer.echo(f"{report.failing} failing, {report.warnings} warning(s)")
    raise typer.Exit(EXIT_OK if report.ok else EXIT_UNVALIDATED)


def register(app: typer.Typer) -> None:
    app.command("doctor")(command)
