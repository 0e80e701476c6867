"""Entry point: ``git gpu-proof`` / ``git-gpu-proof`` / ``python -m gitproof``.

``main`` hands ``hook ...`` to a lean path first: the pre-push hook runs on
every push, and importing the CLI framework and pytest would double its cost.

Shell completion (``--install-completion``, ``--show-completion``) completes
the ``git-gpu-proof`` command; ``NO_COLOR`` (non-empty) turns every colour off.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import typer

COMPLETION_NAME = "git-gpu-proof"  # what a shell completes: the executable, not `git gpu-proof`
COMPLETION_VARIABLE = "_GIT_GPU_PROOF_COMPLETE"


def build_app() -> typer.Typer:
    """The typer application with every command registered."""
    import typer

    from gitproof import __version__
    from gitproof.cli import (
        demo,
        doctor,
        export,
        fetch,
        hook,
        install,
        log,
        migrate,
        plan,
        push,
        run,
        show,
        signers,
        status,
        verify,
    )

    app = typer.Typer(
        name="git gpu-proof",
        help="Signed receipts that your GPU tests ran and passed, stored as git notes "
             "(refs/notes/gpu-proof) and checkable on any CPU-only machine.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # help texts mention [tool.gpu_proof]; it is not markup
        context_settings=_context_settings(),
    )
    for module in (run, verify, plan, show, log, export, status, push, fetch, install, doctor, hook, demo,
                   signers, migrate):
        module.register(app)
    _plain_help(app)

    def show_version(value: bool) -> None:
        if value:
            typer.echo(f"git-gpu-proof {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
        """Signed GPU-test receipts in git notes."""

    return app


def _context_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
    if os.environ.get("NO_COLOR"):
        settings["color"] = False  # every echo of every command strips ANSI styles
    return settings


def _plain_help(app: typer.Typer) -> None:
    """Every command's help without typer's type annotations (see common.Command)."""
    from typer.core import TyperCommand

    from gitproof.cli.common import Command

    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = Command
    for group in app.registered_groups:
        _plain_help(cast("typer.Typer", group.typer_instance))  # add_typer always sets it


def _program_name(argv: list[str]) -> str:
    completing = os.environ.get(COMPLETION_VARIABLE) or any(
        arg.startswith(("--install-completion", "--show-completion")) for arg in argv)
    return COMPLETION_NAME if completing else "git gpu-proof"


def main() -> None:
    if sys.argv[1:2] == ["hook"]:
        from gitproof.cli.hook import fast_main

        code = fast_main(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    build_app()(prog_name=_program_name(sys.argv[1:]), complete_var=COMPLETION_VARIABLE)
