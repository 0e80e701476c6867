"""``git gpu-proof hook pre-push|post-commit|pre-receive``: what the git hooks run.

pre-push and post-commit are installed in clones by ``git gpu-proof install``;
pre-receive is the server's (hooks/pre-receive in a bare repository, see
docs/hooks.md). Every push pays for this command, so it avoids the CLI
framework: ``main`` dispatches here before typer (or pytest) is imported, and
the typer commands registered below are only for ``--help`` and discoverability.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Callable, cast

from gitproof.text import printable, terminal_safe

if TYPE_CHECKING:
    import pygit2
    import typer

    from gitproof.hook import HookResult
    from gitproof.receive import ReceiveResult

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
_PUSH_AGAIN = "Then push again. (`git push --no-verify` skips this check; CI verification will still fail.)"
_PUSH_WITH_RECEIPTS = ("Then push the branch and its receipts together: `git gpu-proof push <remote> <branch>` "
                       "(or `git push --atomic <remote> <branch> refs/notes/gpu-proof`). This check runs on "
                       "the server: --no-verify does not skip it.")


def _say(text: str = "", red: bool = False) -> None:
    """One line on stderr, made safe for the terminal first; bold red there unless NO_COLOR."""
    line = terminal_safe(text)
    if red and sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        line = f"\033[1;31m{line}\033[0m"
    print(line, file=sys.stderr)


def pre_push(remote: str = "origin", mode: str | None = None, stdin_text: str | None = None) -> int:
    """Refuse the push when pushed GPU code has no valid receipt; otherwise send receipts first."""
    from gitproof.sync import IN_SYNC_ENV

    if os.environ.get(IN_SYNC_ENV):
        return EXIT_OK  # gitproof's own push of the notes ref: nothing to check
    if stdin_text is None:
        stdin_text = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    return _guarded(lambda: _pre_push(remote, mode, stdin_text))


def _pre_push(remote: str, mode: str | None, stdin_text: str) -> int:
    from gitproof.attestation_notes import ATTESTATIONS_REF
    from gitproof.git import open_repository
    from gitproof.hook import PushCheck, notes_ref_in_push, parse_updates, receipts_lost, updates_from_pre_commit_env
    from gitproof.notes import NOTES_REF
    from gitproof.sync import SyncError, push_notes
    from gitproof.verify import open_verifier

    repo = open_repository()
    updates = parse_updates(stdin_text) or updates_from_pre_commit_env(repo=repo)
    verifier = open_verifier(repo)
    for warning in verifier.trust.warnings:
        _say(f"gpu-proof: warning: {warning}")
    losses = receipts_lost(repo, updates, NOTES_REF) + receipts_lost(repo, updates, ATTESTATIONS_REF)
    if losses:
        _say(f"gpu-proof: push refused: it would lose receipts on {remote}", red=True)
        for loss in losses:
            _say(f"  {loss}")
        _say("(`git push --no-verify` skips this check, but clones that hold these receipts "
             "will push them back.)")
        return EXIT_REFUSED
    policy = verifier.policy
    result = PushCheck(repo, verifier, remote, mode or policy.push_check, tuple(policy.push_refs)).run(updates)
    if not result.ok:
        _refuse(result)
        return EXIT_REFUSED
    message = _accepted_line(result)
    if (result.checked or result.unchanged) and not notes_ref_in_push(updates, NOTES_REF):
        try:
            pushed = push_notes(repo, remote)
        except SyncError as exc:
            _say(f"gpu-proof: error: {exc}\nThe push was stopped so the branch does not reach "
                 f"{remote} without its receipts.")
            return EXIT_REFUSED
        message += f"; receipts sent to {remote}"
        for warning in pushed.warnings:
            _say(f"gpu-proof: warning: {warning}")
    _say(message)
    return EXIT_OK


def _guarded(action: Callable[[], int]) -> int:
    """Known problems become one clear line and exit status 2, never a traceback."""
    from gitproof.errors import GitproofError

    try:
        return action()
    except GitproofError as exc:
        _say(f"gpu-proof: error: {exc}")
        return EXIT_USAGE


def _accepted_line(result: HookResult) -> str:
    parts = []
    if result.checked:
        parts.append(f"{len(result.checked)} ref(s) with GPU changes validated")
    if result.unchanged:
        parts.append(f"{len(result.unchanged)} ref(s) without GPU changes")
    if result.attached:
        parts.append(f"{result.attached} pending receipt(s) attached")
    return "gpu-proof: " + (", ".join(parts) or "nothing to check")


def _refuse(result: HookResult | ReceiveResult, then: str = _PUSH_AGAIN) -> None:
    _say("gpu-proof: push refused: GPU code without a valid receipt", red=True)
    for problem in result.problems:
        _say(f"  {problem.commit[:10]} {printable(problem.subject)!r} -> {printable(problem.remote_ref)}")
        for reason in problem.verdict.reasons:
            _say(f"    why: {reason.message}")
        if problem.changed_paths:
            shown = ", ".join(printable(path) for path in problem.changed_paths[:8])
            more = f" (+{len(problem.changed_paths) - 8} more)" if len(problem.changed_paths) > 8 else ""
            _say(f"    GPU paths changed: {shown}{more}")
        _say(f"    run: {problem.command}")
    _say(then)


def pre_receive(stdin_text: str | None = None) -> int:
    """On a server: refuse a push that puts GPU code without a valid receipt on a protected
    branch, or that takes receipts from the server. Fails closed: whatever stops the check
    (input that is not git's, a bug) refuses the push too, in one line, never a traceback."""
    if stdin_text is None:
        if sys.stdin is None or sys.stdin.isatty():
            _say("gpu-proof: error: `hook pre-receive` is what a server repository's hooks/pre-receive runs; "
                 "it reads git's '<old id> <new id> <ref>' lines on standard input")
            return EXIT_USAGE
        stdin_text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")  # ref names are bytes to git
    text = stdin_text
    try:
        return _guarded(lambda: _pre_receive(text))
    except Exception as exc:  # noqa: BLE001 - a server hook fails closed, and shows no traceback to pushers
        _say(f"gpu-proof: error: the check failed ({type(exc).__name__}: {exc}), so the push is refused; "
             "please report this to the server's administrator")
        return EXIT_USAGE


def _pre_receive(stdin_text: str) -> int:
    from gitproof.receive import check_push

    result = check_push(stdin_text)
    for warning in result.warnings:
        _say(f"gpu-proof: warning: {warning}")
    if result.losses:
        _say("gpu-proof: push refused: it would lose receipts on this server", red=True)
        for loss in result.losses:
            _say(f"  {loss}")
        return EXIT_REFUSED
    if result.refusals:
        _say("gpu-proof: push refused", red=True)
        for refusal in result.refusals:
            _say(f"  {refusal}")
        if result.problems:
            _say()
    if result.problems:
        _refuse(result, _PUSH_WITH_RECEIPTS)
    if not result.ok:
        if os.environ.get("GL_PROTOCOL") == "web":  # GitLab shows only GL-HOOK-ERR lines in its web UI
            print(f"GL-HOOK-ERR: {terminal_safe(_one_line_summary(result))}", file=sys.stderr)
        return EXIT_REFUSED
    if result.checked or result.unchanged:
        parts = []
        if result.checked:
            parts.append(f"{len(result.checked)} protected ref(s) with GPU changes validated")
        if result.unchanged:
            parts.append(f"{len(result.unchanged)} protected ref(s) without GPU changes")
        _say("gpu-proof: " + ", ".join(parts))
    return EXIT_OK


def _one_line_summary(result: ReceiveResult) -> str:
    if result.refusals:
        return f"gpu-proof: {result.refusals[0]}"
    problem = result.problems[0]
    why = problem.verdict.reasons[0].message if problem.verdict.reasons else "no valid receipt"
    more = f" (+{len(result.problems) - 1} more commit(s))" if len(result.problems) > 1 else ""
    return (f"gpu-proof: {problem.commit[:10]} -> {problem.remote_ref} has GPU code without a valid receipt: "
            f"{why}{more}. Push its receipts (git gpu-proof push REMOTE refs/notes/gpu-proof), then try again.")


def post_commit() -> int:
    """Attach pending receipts whose content the new commit records. Never fails the commit."""
    return _guarded(_post_commit) and EXIT_OK


def _post_commit() -> int:
    from gitproof.git import open_repository
    from gitproof.pending import attach_pending
    from gitproof.policy import load_policy

    repo = open_repository()
    if repo.head_is_unborn:
        return EXIT_OK
    attached = attach_pending(repo, load_policy(repo), [cast("pygit2.Commit", repo.head.peel())])
    for item in attached:
        _say(f"gpu-proof: attached pending receipt ({item.signed.receipt.verdict}) to {item.commit[:10]}")
    return EXIT_OK


def fast_main(args: list[str]) -> int | None:
    """Handle ``hook ...`` without the CLI framework; None means "let typer handle it"."""
    if any(a in ("-h", "--help") for a in args) or not args:
        return None
    name, rest = args[0], args[1:]
    if name == "post-commit" and not rest:
        return post_commit()
    if name == "pre-receive" and not rest:
        return pre_receive()
    if name != "pre-push":
        return None
    from gitproof.policy import PUSH_CHECKS

    mode = None
    if "--mode" in rest:
        at = rest.index("--mode")
        if at + 1 >= len(rest) or rest[at + 1] not in PUSH_CHECKS:
            _say(f"gpu-proof: error: --mode takes one of: {', '.join(PUSH_CHECKS)}")
            return EXIT_USAGE
        mode = rest[at + 1]
        rest = rest[:at] + rest[at + 2:]
    remote = rest[0] if rest else os.environ.get("PRE_COMMIT_REMOTE_NAME", "origin")
    return pre_push(remote, mode)


def register(root: typer.Typer) -> None:
    import typer

    from gitproof.policy import PUSH_CHECKS

    app = typer.Typer(help="Entry points for the git hooks: pre-push and post-commit (set up by "
                      "`git gpu-proof install`) and pre-receive (on a server).",
                      no_args_is_help=True)

    @app.command("pre-push")
    def pre_push_command(
        remote: str = typer.Argument("origin", metavar="REMOTE", help="Remote name (git passes it)."),
        url: str = typer.Argument("", metavar="URL", show_default=False, help="Remote URL (git passes it; unused)."),
        mode: str = typer.Option(None, "--mode", metavar="MODE", help=f"Which commits need receipts: "
                                 f"{', '.join(PUSH_CHECKS)} (default: [tool.gpu_proof] push_check, else tip)."),
    ) -> None:
        """Refuse the push when pushed GPU code has no valid receipt; otherwise send receipts first.

        Reads git's pre-push input (`<local ref> <local sha> <remote ref> <remote sha>`
        lines) on stdin, or the PRE_COMMIT_* variables of the pre-commit framework.
        """
        raise typer.Exit(pre_push(remote, mode))

    @app.command("pre-receive")
    def pre_receive_command() -> None:
        """On a git server: refuse GPU code without a valid receipt on protected branches.

        Run by a bare repository's hooks/pre-receive (see docs/hooks.md). Reads git's
        `<old id> <new id> <ref>` lines on stdin. Protected: git config gpu-proof.protect
        (ref or branch patterns; default: the branch HEAD names). Trust: the policy and
        allowed_signers of the branch's current tip on the server, or of git config
        gpu-proof.trustRef. Exit status: 0 accept, 1 refuse, 2 cannot check (refuses too).
        """
        raise typer.Exit(pre_receive())

    @app.command("post-commit")
    def post_commit_command() -> None:
        """Attach pending receipts whose content the new commit records. Never fails the commit."""
        raise typer.Exit(post_commit())

    root.add_typer(app, name="hook")
