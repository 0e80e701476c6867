"""``git gpu-proof log``: one line per commit, validated or not; ``--audit``: valid, was-valid,
revoked or never-valid, judged for history rather than for a merge gate."""
from __future__ import annotations

from typing import Optional

import typer

from gitproof.cli.common import (emit_json, errors_as_exit, fail, open_repo, short, styled, trusted_commit,
                                 warn_about_trust)
from gitproof.cli.describe import commit_line, receipt_brief
from gitproof.export import Audited, audit_commits, audit_record, commit_record
from gitproof.git import CommitFilter, rev_list, subject
from gitproof.text import printable
from gitproof.verify import SELF, open_verifier
from gitproof.verify.audit import REVOKED, VALID, WAS_VALID, ScopeAudit, open_auditor

RANGE_HELP = "A revision (everything reachable from it) or A..B, as git rev-list takes it."
SINCE_HELP = "Only commits made (committer date) after DATE, in git's date syntax, e.g. 2024-05-01, \"2 weeks ago\"."
UNTIL_HELP = "Only commits made (committer date) before DATE."
AUTHOR_HELP = "Only commits whose author matches PATTERN (a regular expression, as git log --author)."
FIRST_PARENT_HELP = "Follow only the first parent of merges (the commits of the branch itself)."
TRUST_REF_HELP = ("Read [tool.gpu_proof] and the allowed_signers file from REV (e.g. origin/main), not the "
                  "working tree; --audit also reads the history of allowed_signers along REV's first parents.")


def command(
    range_: str = typer.Argument("HEAD", metavar="RANGE", help=RANGE_HELP),
    max_count: int = typer.Option(30, "-n", "--max-count", metavar="N",
                                  help="Show at most this many commits."),
    since: Optional[str] = typer.Option(None, "--since", metavar="DATE", help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, "--until", metavar="DATE", help=UNTIL_HELP),
    first_parent: bool = typer.Option(False, "--first-parent", help=FIRST_PARENT_HELP),
    author: Optional[str] = typer.Option(None, "--author", metavar="PATTERN", help=AUTHOR_HELP),
    trust_ref: Optional[str] = typer.Option(None, "--trust-ref", metavar="REV", help=TRUST_REF_HELP),
    audit: bool = typer.Option(False, "--audit",
                               help="Say for each commit: valid, was-valid (its signer was trusted when the "
                                    "receipt was made, and has since been removed), revoked or never-valid. "
                                    "The age rule (max_age_days) does not apply."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (see docs/cli.md)."),
) -> None:
    """One line per commit: validated, unchanged (a valid receipt for the same GPU code on another
    commit: an ancestor, or the commit a squash, rebase or cherry-pick came from), or unvalidated."""
    if max_count < 1:
        fail("--max-count must be at least 1")
    repo = open_repo()
    trust_ref = trusted_commit(repo, trust_ref)
    limits = CommitFilter(max_count, since, until, author, first_parent)
    with errors_as_exit():
        commits = rev_list(repo, range_, limits)
        if audit:
            auditor = open_auditor(repo, trust_ref)
            warn_about_trust(auditor.verifier)
            _show_audit(audit_commits(auditor, commits), as_json)
            return
        verifier = open_verifier(repo, trust_rev=trust_ref)
        warn_about_trust(verifier)
        verdicts = verifier.verify_all(commits)
    if as_json:
        emit_json({"commits": [commit_record(c, v) for c, v in zip(commits, verdicts, strict=True)]})
        return
    lines = [commit_line(verdict, subject(commit)) for commit, verdict in zip(commits, verdicts, strict=True)]
    if lines:
        typer.echo("\n".join(lines))  # one write: a long log pays per call, not per line


def _show_audit(audited: list[Audited], as_json: bool) -> None:
    if as_json:
        emit_json({"commits": [audit_record(a) for a in audited]})
        return
    for row in audited:
        typer.echo(audit_line(row))


def audit_line(row: Audited) -> str:
    status = row.audit.status
    ok = {VALID: True, WAS_VALID: None}.get(status, False)
    scopes = row.audit.scopes
    if len(scopes) == 1 and scopes[0].shard is None:
        detail = scope_detail(scopes[0])
    else:
        detail = "; ".join(f"shard {printable(s.shard or '')} {s.status}: {scope_detail(s)}" for s in scopes)
    title = printable(subject(row.commit))
    return f"{short(str(row.commit.id))} {styled(status.ljust(11), ok)} {title + ' - ' if title else ''}{detail}"


def scope_detail(scope: ScopeAudit) -> str:
    """What stands behind one scope's status, on one line."""
    signed = scope.receipt.signed if scope.receipt else None
    if signed is None:
        return "; ".join(r.message for r in scope.reasons) or "no receipt"
    r = signed.receipt
    holder = scope.receipt.note_commit if scope.receipt else ""
    where = "" if scope.relation == SELF else f" (receipt on {short(holder)})"
    if scope.status == VALID:
        return receipt_brief(r) + where
    if scope.status == WAS_VALID:
        landed = f" and when the commit landed ({short(scope.landed_at)})" if scope.landed_at else ""
        return (f"signed by {printable(r.signer)} ({printable(r.key_fingerprint)}), trusted at "
                f"{short(scope.trusted_at or '')} when the receipt was made{landed}, since removed from "
                f"allowed_signers{where}")
    if scope.status == REVOKED:
        return f"signed by {printable(r.signer)} with a revoked key ({printable(r.key_fingerprint)}){where}"
    return "; ".join(f.message for f in scope.reasons)


def register(app: typer.Typer) -> None:
    app.command("log")(command)
