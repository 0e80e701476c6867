"""``git gpu-proof demo``: the whole job end to end in a throwaway repository."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gitproof.cli.common import fail
from gitproof.demo import run_demo


def command(
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where to create the demo "
                                             "repository (must not exist). Default: a new temp dir."),
) -> None:
    """Run the whole job end to end in a throwaway demo repository.

    Creates a small project with GPU-marked tests, a throwaway key and
    allowed_signers, then runs, verifies, checks the signature with
    ssh-keygen, shows the audit trail and what invalidates a receipt.
    """
    if directory is not None and directory.exists():
        fail(f"{directory} already exists; pick a new directory for the demo")
    raise typer.Exit(run_demo(directory, typer.echo))


def register(app: typer.Typer) -> None:
    app.command("demo")(command)
