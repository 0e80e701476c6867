"""``git gpu-proof status``: fingerprint now, what is validated, what needs a run."""
from __future__ import annotations

import typer

from gitproof.cli.common import emit_json, errors_as_exit, open_repo, short, styled, warn_about_trust
from gitproof.cli.describe import commit_line
from gitproof.pending import PendingStore
from gitproof.verify import open_verifier
from gitproof.verify.worktree import judge_worktree


def command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show what is validated now and what would need a run.

    Prints the current fingerprint trees, whether HEAD and the working tree
    are validated, and the pending receipts.
    """
    repo = open_repo()
    if repo.is_bare:
        typer.echo("gpu-proof: error: status needs a working tree", err=True)
        raise typer.Exit(2)
    with errors_as_exit():
        verifier = open_verifier(repo, require_trust=False)
        warn_about_trust(verifier)
        paths = verifier.all_paths
        worktree = judge_worktree(repo, verifier, ((p.ref, p.signed) for p in PendingStore(repo).list()))
    state, head, pending, worktree_ok = worktree.state, worktree.head, worktree.pending, worktree.validated
    if as_json:
        emit_json({
            "fingerprint_paths": paths, "trees": state.trees, "head_trees": state.head_trees,
            "worktree_matches_head": state.matches_head, "changed_files": state.changed_paths,
            "dirty_outside_paths": state.dirty_outside, "head": head.to_json(),
            "worktree_validated": worktree_ok,
            "pending": [{"ref": ref, **v.to_json()} for ref, v in pending],
            "needs_run": not worktree_ok,
        })
        return
    typer.echo(f"fingerprint paths: {', '.join(paths)}")
    for path in paths:
        now, then = state.trees[path], state.head_trees[path]
        note = "" if now == then else f"  (HEAD: {then or 'absent'})"
        typer.echo(f"  {path:20} {now or 'absent'}{note}")
    typer.echo("HEAD:         " + commit_line(head))
    if state.matches_head:
        typer.echo("working tree: same GPU code as HEAD")
    else:
        typer.echo(f"working tree: {styled('validated' if worktree_ok else 'differs from HEAD', worktree_ok)}"
                   f" ({len(state.changed_paths)} changed file(s) under the fingerprint paths)")
    for ref, verdict in pending:
        label = "matches working tree" if verdict.ok else "; ".join(f.message for f in verdict.failures)
        typer.echo(f"pending receipt {short(ref.rsplit('/', 1)[-1])}: {label}")
    if not worktree_ok:
        typer.echo("next: git gpu-proof run")


def register(app: typer.Typer) -> None:
    app.command("status")(command)
