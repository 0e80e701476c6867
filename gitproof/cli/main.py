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

# gitproof.cli modules, in the order `--help` lists their commands
COMMAND_MODULES = ("run", "verify", "plan", "show", "log", "export", "status", "push", "fetch", "install",
                   "doctor", "hook", "demo", "signers", "migrate")
_MODULE_OF = {"uninstall": "install"}  # commands registered by a module of another name


def build_app(command: str | None = None) -> typer.Typer:
    """The typer application with every command registered, or only ``command``'s.

    One process runs one command, so ``main`` registers just that one: importing
    every command module (pytest for ``run``, http for ``signers``) would cost a
    quick ``status`` more than its own work. ``--help`` and completion get all.
    """
    import importlib

    import typer

    from gitproof import __version__

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
    names = COMMAND_MODULES if command is None else (_MODULE_OF.get(command, command),)
    for name in names:
        importlib.import_module(f"gitproof.cli.{name}").register(app)
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
    build_app(_command_named(sys.argv[1:]))(prog_name=_program_name(sys.argv[1:]),
                                            complete_var=COMPLETION_VARIABLE)


def _command_named(argv: list[str]) -> str | None:
    """The command ``argv`` runs, when it names a known one and no completion is asked for.

    The root takes no option with a value, so the first word not starting with ``-``
    is the command; a help option before it asks for the root's help, which lists them all.
    """
    if os.environ.get(COMPLETION_VARIABLE):
        return None
    for arg in argv:
        if arg in ("-h", "--help"):
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMAND_MODULES or arg in _MODULE_OF else None
    return None
