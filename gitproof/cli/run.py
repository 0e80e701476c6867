"""``git gpu-proof run``: run the GPU-marked tests and record a signed receipt."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from gitproof.cli.common import fail, open_repo
from gitproof.record import MODES


def build_pytest_args(key: str | None, principal: str | None, mode: str,
                      extra: list[str]) -> list[str]:
    # "--opt=value" in one argument: pytest would take a bare path argument (the key)
    # into account when choosing its root directory.
    args = ["--gpu-proof", f"--gpu-proof-mode={mode}"]
    if key:
        args.append(f"--gpu-proof-key={key}")
    if principal:
        args.append(f"--gpu-proof-principal={principal}")
    return args + list(extra)


def command(
    ctx: typer.Context,
    key: Optional[str] = typer.Option(None, "--key", help="Signing key: a private key path, a .pub "
                                      "whose key is in ssh-agent, or key::<public key>. "
                                      "Default: git config user.signingKey."),
    principal: Optional[str] = typer.Option(None, "--principal",
                                            help="Signer identity to record. Default: user.email."),
    mode: str = typer.Option("local", "--mode", help=f"One of: {', '.join(MODES)}."),
) -> None:
    """Run the tests marked gpu_proof and attach a signed receipt to HEAD.

    Arguments after `--` go to pytest unchanged. Exit status is pytest's;
    a failing run is recorded too (verdict failed) but validates nothing.
    When the fingerprint paths differ from HEAD, the receipt is kept as
    pending until a commit records exactly that content.
    """
    import pytest  # only `run` needs pytest loaded

    repo = open_repo()
    if repo.workdir is None:
        fail("run needs a working tree, not a bare repository")
    os.chdir(Path(repo.workdir))
    code = pytest.main(build_pytest_args(key, principal, mode, ctx.args))
    raise typer.Exit(int(code))


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(command)
