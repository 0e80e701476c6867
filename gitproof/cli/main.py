"""Entry point: ``git gpu-proof`` / ``git-gpu-proof`` / ``python -m gitproof``."""
from __future__ import annotations

import typer

from gitproof import __version__
from gitproof.cli import demo, log, run, show, status, verify

app = typer.Typer(
    name="git gpu-proof",
    help="Signed receipts that your GPU tests ran and passed, stored as git notes "
         "(refs/notes/gpu-proof) and checkable on any CPU-only machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for module in (run, verify, show, log, status, demo):
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"git-gpu-proof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Signed GPU-test receipts in git notes."""


def main() -> None:
    app(prog_name="git gpu-proof")
