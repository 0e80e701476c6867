"""Entry point: ``git gpu-proof`` / ``git-gpu-proof`` / ``python -m gitproof``.

``main`` hands ``hook ...`` to a lean path first: the pre-push hook runs on
every push, and importing the CLI framework and pytest would double its cost.
"""
from __future__ import annotations

import sys


def build_app():
    """The typer application with every command registered."""
    import typer

    from gitproof import __version__
    from gitproof.cli import (demo, doctor, fetch, hook, install, log, plan, push, run, show, signers,
                             status, verify)

    app = typer.Typer(
        name="git gpu-proof",
        help="Signed receipts that your GPU tests ran and passed, stored as git notes "
             "(refs/notes/gpu-proof) and checkable on any CPU-only machine.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # help texts mention [tool.gpu_proof]; it is not markup
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for module in (run, verify, plan, show, log, status, push, fetch, install, doctor, hook, demo, signers):
        module.register(app)

    def show_version(value: bool) -> None:
        if value:
            typer.echo(f"git-gpu-proof {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
        """Signed GPU-test receipts in git notes."""

    return app


def main() -> None:
    if sys.argv[1:2] == ["hook"]:
        from gitproof.cli.hook import fast_main

        code = fast_main(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    build_app()(prog_name="git gpu-proof")
