"""``git gpu-proof plan``: which shards still hold for a commit, and which must run again."""
from __future__ import annotations

import typer

from gitproof.cli.common import (EXIT_OK, EXIT_UNVALIDATED, emit_json, errors_as_exit, open_repo,
                                 resolve_commit, short, styled, warn_about_trust)
from gitproof.cli.describe import receipt_brief
from gitproof.verify.plan import Step, make_plan, must_rerun


def command(
    rev: str = typer.Argument("HEAD", metavar="REV", help="The commit to plan for."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (see docs/policy.md)."),
) -> None:
    """Say which shards' receipts still hold for REV and which must run again, with the command.

    Exit status: 0 nothing required must run again, 1 something must, 2 usage or configuration error.
    """
    repo = open_repo()
    commit = resolve_commit(repo, rev)
    with errors_as_exit():
        steps, verifier = make_plan(repo, commit)
        warn_about_trust(verifier)
    rerun = must_rerun(steps)
    if as_json:
        emit_json({"rev": rev, "commit": str(commit.id), "sharded": steps[0].sharded,
                   "ok": not rerun, "rerun": rerun, "shards": [s.to_json() for s in steps]})
    else:
        for line in _text(rev, str(commit.id), steps, rerun):
            typer.echo(line)
    raise typer.Exit(EXIT_UNVALIDATED if rerun else EXIT_OK)


def _text(rev: str, commit: str, steps: list[Step], rerun: list[str]) -> list[str]:
    todo = f"{len(rerun)} must run again" if rerun else "nothing to run"
    scope = f"{len(steps)} shard(s)" if steps[0].sharded else "no shards"
    lines = [f"plan for {short(commit)} ({rev}): {scope}, {todo}"]
    width = max(len(s.name) for s in steps)
    for step in steps:
        name = step.name.ljust(width)
        receipt = step.verdict.receipt
        if step.verdict.ok and receipt is not None:  # a valid verdict always has its receipt
            where = short(receipt.note_commit)
            how = (f"carried forward from {where} (its paths did not change since)" if step.carried
                   else f"receipt on {where}")
            brief = receipt_brief(receipt.signed.receipt) if receipt.signed else ""
            lines.append(f"  {name}  {styled('valid'.ljust(8), True)} {how}: {brief}")
            continue
        label = "run" if step.required else "optional"
        lines.append(f"  {name}  {styled(label.ljust(8), False if step.required else None)} "
                     f"{step.command}" + ("" if step.required else "  (not in required_shards)"))
        lines += [f"  {' ' * width}  {'':8} why: {r.message}" for r in step.verdict.reasons]
    return lines


def register(app: typer.Typer) -> None:
    app.command("plan")(command)
