"""``git gpu-proof demo``: the whole job end to end in a throwaway repository."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gitproof.cli.common import fail
from gitproof.demo import CUDA, VECADD, check_cuda, run_demo


def command(
    directory: Optional[Path] = typer.Option(None, "--dir", metavar="DIR",
                                             help="Where to create the demo "
                                             "repository (must not exist). Default: a new temp dir."),
    cuda: bool = typer.Option(False, "--cuda", help="Run the CUDA variant on a real NVIDIA GPU: "
                              "PyTorch matmul tests, per-test GPU-use evidence, and a planted bug "
                              "that require_gpu_use catches. Needs PyTorch with CUDA."),
) -> None:
    """Run the whole job end to end in a throwaway demo repository.

    Creates a small project with GPU-marked tests, a throwaway key and
    allowed_signers, then runs, verifies, checks the signature with
    ssh-keygen, shows the audit trail and what invalidates a receipt.
    With --cuda: runs real GPU tests, shows which tests used the GPU, has a
    receipt refused because one passing test never did, fixes the bug and
    verifies again.
    """
    if directory is not None and directory.exists():
        fail(f"{directory} already exists; pick a new directory for the demo")
    if cuda:
        found = check_cuda()
        if not found.ok:
            fail(found.detail)
        typer.echo(found.detail)
    raise typer.Exit(run_demo(directory, typer.echo, CUDA if cuda else VECADD))


def register(app: typer.Typer) -> None:
    app.command("demo")(command)
