"""``git gpu-proof run``: run the GPU-marked tests and record a signed receipt."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from gitproof.cli.common import fail, open_repo
from gitproof.record import MODES


def build_pytest_args(key: str | None, principal: str | None, mode: str,
                      extra: list[str], *, key_env: str | None = None,
                      unsigned: bool = False, fail_on_skip: bool = False,
                      shard: str | None = None, kernels: bool = False) -> list[str]:
    # "--opt=value" in one argument: pytest would take a bare path argument (the key)
    # into account when choosing its root directory. Only the key variable's *name*
    # is passed (and so recorded in pytest-args), never its value.
    args = ["--gpu-proof", f"--gpu-proof-mode={mode}"]
    if key:
        args.append(f"--gpu-proof-key={key}")
    if key_env:
        args.append(f"--gpu-proof-key-env={key_env}")
    if principal:
        args.append(f"--gpu-proof-principal={principal}")
    if shard:
        args.append(f"--gpu-proof-shard={shard}")
    if unsigned:
        args.append("--gpu-proof-unsigned")
    if fail_on_skip:
        args.append("--gpu-proof-fail-on-skip")
    if kernels:
        args.append("--gpu-proof-kernels")
    return args + list(extra)


def command(
    ctx: typer.Context,
    key: Optional[str] = typer.Option(None, "--key", help="Signing key: a private key path, a .pub "
                                      "whose key is in ssh-agent, or key::<public key>. "
                                      "Default: git config user.signingKey."),
    key_env: Optional[str] = typer.Option(
        None, "--key-env", metavar="VAR",
        help="Sign with the OpenSSH private key whose text is in environment variable VAR "
             "(a CI secret). It goes to disk only as a 0600 file in a private temporary "
             "directory while signing, and is removed afterwards; VAR is hidden from the tests. "
             "Refused before any test runs if VAR is unset, empty or not a usable key."),
    principal: Optional[str] = typer.Option(None, "--principal",
                                            help="Signer identity to record. Default: user.email."),
    mode: str = typer.Option("local", "--mode", help=f"One of: {', '.join(MODES)}."),
    shard: Optional[str] = typer.Option(
        None, "--shard", metavar="NAME",
        help="Run one shard of [tool.gpu_proof.shards]: only its tests, fingerprinting only its "
             "paths; the receipt names the shard. Refused if the policy does not define NAME."),
    fail_on_skip: bool = typer.Option(
        False, "--fail-on-skip",
        help="A skipped GPU test (or a test module skipped while collecting) fails the run, and "
             "the receipt is recorded with verdict failed. Also [tool.gpu_proof] fail_on_skip = true."),
    kernels: bool = typer.Option(
        False, "--kernels",
        help="Also record, per test, the GPU kernels the test body launched and the copies and "
             "memsets that ran meanwhile, as CUPTI traced them (needs libcupti: the nvidia-cuda-cupti wheel or the CUDA toolkit). "
             "Also [tool.gpu_proof] record_kernels = true. Needed by --require-gpu-kernels."),
    unsigned: bool = typer.Option(
        False, "--unsigned",
        help="Dry run: record an UNSIGNED receipt, no signing key needed. Verification rejects "
             "it unless --allow-unsigned (or allow_unsigned = true)."),
) -> None:
    """Run the tests marked gpu_proof and attach a signed receipt to HEAD.

    Arguments after `--` go to pytest unchanged (pytest-xdist's `-n 4` works:
    one receipt, made by the controller). Exit status is pytest's; a failing
    run is recorded too (verdict failed) but validates nothing. When the
    fingerprint paths differ from HEAD, the receipt is kept as pending until a
    commit records exactly that content. In GitHub Actions and GitLab CI the
    job's identity is recorded in the receipt's `ci:` line.
    """
    import pytest  # only `run` needs pytest loaded

    repo = open_repo()
    if repo.workdir is None:
        fail("run needs a working tree, not a bare repository")
    os.chdir(Path(repo.workdir))
    code = pytest.main(build_pytest_args(key, principal, mode, ctx.args, key_env=key_env,
                                         unsigned=unsigned, fail_on_skip=fail_on_skip,
                                         shard=shard, kernels=kernels))
    raise typer.Exit(int(code))


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(command)
