"""``git gpu-proof install`` and ``uninstall``: the git hooks and the notes configuration."""
from __future__ import annotations

import typer

from gitproof.cli.common import emit_json, errors_as_exit, open_repo
from gitproof.install import Report, install, uninstall

_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def print_report(report: Report, as_json: bool) -> None:
    if as_json:
        emit_json(report.to_json())
        return
    typer.echo(f"hooks in {report.hooks_dir}:")
    for hook in report.hooks:
        typer.echo(f"  {hook.name:13} {hook.detail}")
    typer.echo("git config:")
    for step in report.config:
        typer.echo(f"  {step.key} = {step.value}: {step.detail}")
    if not report.changed:
        typer.echo("nothing changed")
    for warning in report.warnings:
        typer.secho(f"gpu-proof: warning: {warning}", fg=typer.colors.YELLOW, err=True)


def install_command(as_json: bool = _JSON) -> None:
    """Install the pre-push and post-commit hooks and the notes configuration.

    An existing hook is kept and run first; git is configured to keep receipts
    across amend and rebase and to merge them. Plain `git log` stays short (an
    older install's notes.displayRef is removed); `git log --notes=gpu-proof`
    shows the receipts.
    """
    with errors_as_exit():
        report = install(open_repo(needs_commits=False))
    print_report(report, as_json)


def uninstall_command(as_json: bool = _JSON) -> None:
    """Remove gitproof's hooks and the configuration install added.

    The hooks they chained are restored; receipts are kept.
    """
    with errors_as_exit():
        report = uninstall(open_repo(needs_commits=False))
    print_report(report, as_json)


def register(app: typer.Typer) -> None:
    app.command("install")(install_command)
    app.command("uninstall")(uninstall_command)
