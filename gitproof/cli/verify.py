"""``git gpu-proof verify``: exit 0 only when every revision has a valid receipt."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer

from gitproof.cli.common import (EXIT_OK, EXIT_UNVALIDATED, emit_json, errors_as_exit, fail,
                                 open_repo, resolve_commit, trusted_commit, warn_about_trust)
from gitproof.cli.describe import commit_line
from gitproof.git import subject
from gitproof.policy import read_node_ids
from gitproof.receipt import MODES
from gitproof.sync import fetch
from gitproof.verify import accepted_warnings, effective_policy, open_verifier


class Format(str, Enum):
    """What ``--format`` accepts (gitproof.report.FORMATS, which a test keeps equal)."""

    text = "text"
    json = "json"
    junit = "junit"
    github = "github"
    markdown = "markdown"


def command(
    revs: Optional[List[str]] = typer.Argument(None, metavar="REV", help="Revisions to check (default: HEAD)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (see docs/cli.md); "
                                                       "the same as --format json."),
    output_format: Optional[Format] = typer.Option(
        None, "--format", metavar="FORMAT",
        help="text (default), json, junit (JUnit XML: a test case per commit and shard), github "
             "(workflow commands: an ::error annotation per unvalidated commit) or markdown (a summary "
             "table for a CI job page)."),
    fetch_from: Optional[str] = typer.Option(None, "--fetch", metavar="REMOTE",
                                             help="First fetch and merge the receipts of REMOTE "
                                                  "(works in a fresh clone)."),
    trust_ref: Optional[str] = typer.Option(None, "--trust-ref", metavar="REV",
                                            help="Read [tool.gpu_proof] and the allowed_signers file "
                                                 "from REV (e.g. origin/main), not the working tree, "
                                                 "so the code under review cannot change them."),
    policy_file: Optional[Path] = typer.Option(None, "--policy", metavar="FILE",
                                               help="A policy file (TOML or JSON) over [tool.gpu_proof]."),
    allow_skipped: bool = typer.Option(False, "--allow-skipped",
                                       help="Accept receipts with skipped tests (warned)."),
    expected_skips: Optional[Path] = typer.Option(None, "--expected-skips", metavar="FILE",
                                                  help="The exact set of tests allowed to skip, one node "
                                                       "id per line; new and stale skips both fail."),
    max_age_days: Optional[int] = typer.Option(None, "--max-age-days", metavar="N",
                                               help="Oldest acceptable receipt in days (0 = today only; "
                                                    "default 30)."),
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned",
                                        help="Accept unsigned dry-run receipts (loudly warned; never "
                                             "under a restricted policy)."),
    require_gpu: bool = typer.Option(False, "--require-gpu",
                                     help="Receipts must list a GPU device visible to the tests."),
    require_gpu_use: bool = typer.Option(
        False, "--require-gpu-use",
        help="Every passing test must show evidence that it used a GPU (self-reported by the "
             "test process, not hardware attestation); unknown evidence does not count."),
    require_gpu_kernels: bool = typer.Option(
        False, "--require-gpu-kernels",
        help="Every passing test must have launched a GPU kernel, as CUPTI traced it (a receipt "
             "recorded with --kernels); a test that only copied data to the GPU fails."),
    require_mode: Optional[str] = typer.Option(None, "--require-mode", metavar="MODE",
                                               help=f"Receipts must have this mode: {', '.join(MODES)}."),
    require_clean: bool = typer.Option(False, "--require-clean",
                                       help="Reject runs with uncommitted changes outside the fingerprint paths."),
    attestations: bool = typer.Option(False, "--attestations",
                                      help="Also require, for the receipt that validates each commit, a DSSE "
                                           "envelope (in-toto test-result statement) signed by the same key, "
                                           "in refs/notes/gpu-proof-attestations (`run --attest` writes it)."),
) -> None:
    """Check that each revision's GPU code is covered by a valid signed receipt.

    Exit status: 0 all validated, 1 some not validated, 2 usage or configuration error.
    """
    fmt = output_format.value if output_format is not None else ("json" if as_json else "text")
    if as_json and fmt != "json":
        fail(f"--json and --format {fmt} ask for different outputs; give one of them")
    repo = open_repo()
    revs = revs or ["HEAD"]
    commits = [(rev, resolve_commit(repo, rev)) for rev in revs]
    trust_ref = trusted_commit(repo, trust_ref)  # one full ref name (or commit id), never ambiguous
    flags: dict[str, Any] = {
        "allow_skipped": allow_skipped or None, "max_age_days": max_age_days,
        "allow_unsigned": allow_unsigned or None, "require_gpu": require_gpu or None,
        "require_gpu_use": require_gpu_use or None,
        "require_gpu_kernels": require_gpu_kernels or None,
        "require_mode": require_mode, "require_clean": require_clean or None,
    }
    with errors_as_exit():
        if expected_skips is not None:
            flags["expected_skips"] = read_node_ids(expected_skips)
        policy = effective_policy(repo, trust_ref, policy_file, flags)
        if fetch_from:
            merged = fetch(repo, fetch_from)
            typer.echo(f"gpu-proof: {merged.describe()}", err=True)
        verifier = open_verifier(repo, policy, trust_rev=trust_ref)
        warn_about_trust(verifier)
        verdicts = [(rev, verifier.verify(commit), commit) for rev, commit in commits]
        if attestations:
            from gitproof.verify.attestations import require_attestations

            verdicts = [(rev, require_attestations(verifier, commit), commit) for rev, _, commit in verdicts]
    ok = all(v.ok for _, v, _ in verdicts)
    warnings = accepted_warnings(v for _, v, _ in verdicts)
    if fmt != "github":  # there, each warning is a ::warning command on stdout
        for warning in warnings:
            typer.secho(f"gpu-proof: warning: {warning}", fg=typer.colors.YELLOW, bold=True, err=True)
    if fmt == "json":
        emit_json({"ok": ok, "results": [{"rev": rev, **v.to_json()} for rev, v, _ in verdicts]})
    elif fmt != "text":
        from gitproof import report  # only for the CI reports: text and JSON need none of it

        reports = report.commit_reports([{"rev": rev, **v.to_json()} for rev, v, _ in verdicts],
                                        {str(commit.id): subject(commit) for _, _, commit in verdicts})
        typer.echo(report.render(fmt, reports, trust_ref=trust_ref, warnings=warnings), nl=False)
    else:
        for _, verdict, commit in verdicts:
            typer.echo(commit_line(verdict, subject(commit)))
        if not ok and verifier.policy.shards:
            typer.echo("To validate: `git gpu-proof plan` lists the shards to re-run.")
        elif not ok:
            typer.echo("To validate: run the GPU tests on this code with `git gpu-proof run`.")
    raise typer.Exit(EXIT_OK if ok else EXIT_UNVALIDATED)


def register(app: typer.Typer) -> None:
    app.command("verify")(command)
