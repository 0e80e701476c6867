"""``git gpu-proof run``: run the GPU-marked tests and record a signed receipt.

Before the tests: the project's interpreter is chosen and checked
(:mod:`gitproof.interpreter`), and the signing key signs a probe
(:mod:`gitproof.preflight`), so nothing that would fail at the end fails
after a long run. After them: the receipt the run added is judged under the
repository's policy (:mod:`gitproof.run_check`).
"""
from __future__ import annotations

import os

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pygit2
import typer

from gitproof.cli.common import Command, fail, open_repo, styled, warn
from gitproof.interpreter import Interpreter, InterpreterError, check, choose, run_pytest
from gitproof.receipt import MODES

if TYPE_CHECKING:  # loaded by `run` only, not by every command
    import click

    from gitproof.preflight import SigningPlan
    from gitproof.run_check import Before, Judged

EXIT_INTERRUPTED = 2  # pytest's own status for Ctrl-C and for collection errors
EXIT_REFUSED = 4  # pytest's usage-error status: the run was refused before any test ran
EXIT_POLICY = 6  # the tests passed and the receipt is recorded, but the policy rejects it


def build_pytest_args(key: str | None, principal: str | None, mode: str | None,
                      extra: list[str], *, key_env: str | None = None,
                      unsigned: bool = False, fail_on_skip: bool = False,
                      shard: str | None = None, kernels: bool = False,
                      attest: bool | None = None) -> list[str]:
    # "--opt=value" in one argument: pytest would take a bare path argument (the key)
    # into account when choosing its root directory. Only the key variable's *name*
    # is passed (and so recorded in pytest-args), never its value.
    args = ["--gpu-proof"] + ([f"--gpu-proof-mode={mode}"] if mode else [])
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
    if attest is not None:
        args.append("--gpu-proof-attest" if attest else "--gpu-proof-no-attest")
    return args + list(extra)


class RunCommand(Command):
    """Usage ends with ``[-- PYTEST_ARGS]...``: what follows ``--`` goes to pytest."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "[-- PYTEST_ARGS]..."]


def command(
    ctx: typer.Context,
    key: Optional[str] = typer.Option(None, "--key", metavar="KEY",
                                      help="Signing key: a private key path, a .pub whose key is in "
                                           "ssh-agent, or key::<public key>. Default: git config "
                                           "user.signingKey."),
    key_env: Optional[str] = typer.Option(
        None, "--key-env", metavar="VAR",
        help="Sign with the OpenSSH private key whose text is in environment variable VAR "
             "(a CI secret). It goes to disk only as a 0600 file in a private temporary "
             "directory while signing, and is removed afterwards; VAR is hidden from the tests. "
             "Refused before any test runs if VAR is unset, empty or not a usable key."),
    principal: Optional[str] = typer.Option(None, "--principal", metavar="PRINCIPAL",
                                            help="Signer identity to record. Default: user.email."),
    mode: Optional[str] = typer.Option(
        None, "--mode", metavar="MODE",
        help=f"One of: {', '.join(MODES)}. Default: [tool.gpu_proof] mode (pytest-gpu-proof's key), "
             "else local."),
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
             "memsets that ran meanwhile, as CUPTI traced them (needs libcupti: the nvidia-cuda-cupti wheel "
             "or the CUDA toolkit). "
             "Also [tool.gpu_proof] record_kernels = true. Needed by --require-gpu-kernels."),
    attest: Optional[bool] = typer.Option(
        None, "--attest/--no-attest",
        help="Also write an in-toto attestation: a DSSE envelope over the receipt's in-toto statement, "
             "signed with the same key, in refs/notes/gpu-proof-attestations (checked by `verify "
             "--attestations`). The private key must be usable in-process (a key file, --key-env, or "
             "a passphrase typed once); an ssh-agent-only key is refused before any test runs. "
             "Default: [tool.gpu_proof] attest."),
    unsigned: bool = typer.Option(
        False, "--unsigned",
        help="Dry run: record an UNSIGNED receipt, no signing key needed. Verification rejects "
             "it unless --allow-unsigned (or allow_unsigned = true)."),
    python: Optional[str] = typer.Option(
        None, "--python", metavar="PATH",
        help="The Python to run the tests with; it must have gitproof installed. Default: the "
             "active virtualenv ($VIRTUAL_ENV), else .venv at the repository root, else git config "
             "gpu-proof.python, else the Python gitproof runs in."),
    no_policy_check: bool = typer.Option(
        False, "--no-policy-check",
        help="Do not judge the new receipt under the repository's policy after the run (by "
             "default a passing run whose receipt the policy rejects exits with status 6)."),
) -> None:
    """Run the tests marked gpu_proof and attach a signed receipt to HEAD.

    Arguments after `--` go to pytest unchanged (pytest-xdist's `-n 4` works:
    one receipt, made by the controller). Before the tests, the signing key
    signs a probe (a passphrase is asked now, once) and the signer is checked
    against allowed_signers. After them, the new receipt is judged under the
    repository's policy. Exit status: pytest's (0 passed, 1 tests failed, 2
    interrupted or test modules failed to collect, 3 not recorded, 4 refused
    before running), 2 when the project's Python cannot run gitproof, 6 when
    the tests passed but the policy rejects the receipt. When the fingerprint
    paths differ from HEAD, the receipt is kept as pending until a commit
    records exactly that content.
    """
    try:
        code = _run(ctx.args, key, key_env, principal, mode, shard, fail_on_skip, kernels, unsigned,
                    python, not no_policy_check, attest)
    except KeyboardInterrupt:
        fail("interrupted; nothing recorded", EXIT_INTERRUPTED)
    raise typer.Exit(code)


def _run(extra: list[str], key: str | None, key_env: str | None, principal: str | None, mode: str | None,
         shard: str | None, fail_on_skip: bool, kernels: bool, unsigned: bool, python: str | None,
         policy_check: bool, attest: bool | None = None) -> int:
    repo = open_repo()
    if repo.workdir is None:
        fail("run needs a working tree, not a bare repository")
    key = _from_here(key)  # pytest runs in the repository root, not in this directory
    interpreter = _interpreter(repo, python)
    plan = _signing_plan(repo, key, key_env, principal) if not unsigned else None
    from gitproof import run_check

    before = run_check.before_run(repo)
    args = build_pytest_args(plan.key if plan else key, principal, mode, extra,
                             key_env=plan.key_env if plan else key_env, unsigned=unsigned,
                             fail_on_skip=fail_on_skip, shard=shard, kernels=kernels, attest=attest)
    code = run_pytest(interpreter, args, Path(repo.workdir), plan.environment if plan else None)
    if code != 0 or not policy_check:
        return code
    return _policy_check(pygit2.Repository(repo.path), before, unsigned)


def _interpreter(repo: pygit2.Repository, option: str | None) -> Interpreter:
    """The project's interpreter, checked; exit 2 when it cannot run gitproof."""
    from gitproof import __version__

    try:
        interpreter = choose(repo, option)
        version = check(interpreter)
    except InterpreterError as exc:
        fail(str(exc))
    typer.echo(f"gpu-proof: python {interpreter.describe()}")
    if version != __version__:
        warn(f"{interpreter.path} has gitproof {version} and this command is {__version__}: the "
             f"receipt is made by {version}'s plugin (to match: {interpreter.path} -m pip install "
             f"git-gpu-proof=={__version__})")
    return interpreter


def _from_here(key: str | None) -> str | None:
    """A relative key path, made absolute against the directory `run` was started in."""
    if not key or key.startswith("key::") or os.path.isabs(os.path.expanduser(key)):
        return key
    return os.path.abspath(key)


def _signing_plan(repo: pygit2.Repository, key: str | None, key_env: str | None,
                  principal: str | None) -> SigningPlan:
    """The key signs a probe now; exit 4 (refused, as pytest would) when it cannot."""
    from gitproof.preflight import plan_signing
    from gitproof.signing import SigningError

    try:
        plan = plan_signing(repo, key, key_env, principal, interactive=_interactive(),
                            say=lambda line: typer.echo(line, err=True))
    except SigningError as exc:
        fail(f"{exc}. Nothing ran, nothing recorded.", EXIT_REFUSED)
    for warning in plan.warnings:
        warn(warning)
    return plan


def _interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _policy_check(repo: pygit2.Repository, before: Before, unsigned: bool) -> int:
    """0 when every receipt the run added validates under the policy (pending: all but the commit)."""
    from gitproof.run_check import judge_new_receipts

    try:
        judged = judge_new_receipts(repo, before, unsigned)
    except KeyboardInterrupt:
        fail("interrupted during the policy check; the receipt is recorded: see `git gpu-proof "
             "verify`", EXIT_INTERRUPTED)
    for item in judged:
        _report(item, unsigned)
    if any(not item.ok for item in judged):
        typer.echo("Fix what it says, or see `git gpu-proof verify`; `--no-policy-check` skips this "
                   f"check (exit status {EXIT_POLICY}).")
        return EXIT_POLICY
    return 0


def _report(item: Judged, unsigned: bool) -> None:
    pending = (" (pending: the working tree differs from HEAD, so it cannot be checked against a "
               "commit yet; judged by every other rule)" if item.pending else "")
    dry = " (dry run: judged as if signed)" if unsigned else ""
    if item.ok:
        typer.echo(f"gpu-proof: policy check: {styled('ok', True)}, the receipt ({item.where}) "
                   f"satisfies the repository's policy{pending}{dry}")
        return
    typer.echo(f"gpu-proof: policy check: {styled('FAILED', False)}, the receipt ({item.where}) will "
               f"not validate under the repository's policy{pending}{dry}:")
    for failure in item.failures:
        typer.echo(f"  {failure.code}: {failure.message}")


def register(app: typer.Typer) -> None:
    app.command(
        "run",
        cls=RunCommand,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(command)
