"""The GitHub Action's driver: ``action.yml`` runs ``python -m gitproof.github_action``.

It reads what GitHub hands a job step (the event's JSON at ``$GITHUB_EVENT_PATH``, its
name in ``$GITHUB_EVENT_NAME``) and the action's inputs (``GPU_PROOF_INPUT_*``, set by
action.yml from ``inputs``), and decides:

* which commits to verify: a pull request's own commits (head first), a push's range
  ``before..after`` (from the default branch for a new branch; after a force push, the new
  commits when the old tip is still known, else the head alone), or the workflow's commit;
* which ref the policy and allowed_signers are read from, by full ref name: the pull
  request's *base* branch (never the pull request's own files), a pushed branch's own ref,
  the queue's base branch for a merge group, the default branch otherwise;
* what to fetch first: that ref, the pull request's head (``refs/pull/N/head``), the
  history a shallow checkout lacks, and the receipts (a fork's too).

Then it runs ``git gpu-proof verify --format json`` once, and writes what it found as a
Markdown job summary (``$GITHUB_STEP_SUMMARY``), annotations (``::error::`` when the head
is unvalidated, ``::warning::`` for other unvalidated commits) and step outputs
(``$GITHUB_OUTPUT``). Exit status: 0 the head is validated, 1 it is not, 2 the check could
not run (a missing or malformed event, a failed fetch, a configuration error).

The event's JSON is input like any other: every field used is checked for type and form
before it reaches a command line, and a bad one is one clear error, never a traceback.
Untrusted text in the log is printed with workflow commands stopped, so a commit subject
cannot issue one. This module is in the foundation layer: it drives the CLI in a
subprocess and imports nothing of gitproof.verify.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import tempfile
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pygit2

from gitproof import report
from gitproof.errors import GitproofError
from gitproof.git import subject

EXIT_OK, EXIT_UNVALIDATED, EXIT_ERROR = 0, 1, 2
MAX_EVENT_BYTES = 64 * 1024 * 1024  # GitHub's own payloads stay far below this
MAX_COMMITS = 50  # commits listed (and verified) per run, newest first; the head always among them
REMOTE = "origin"  # what actions/checkout names the repository's remote
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ZERO = re.compile(r"0{40}|0{64}")
_URL_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
INPUT_PREFIX = "GPU_PROOF_INPUT_"


class ActionError(GitproofError):
    """The check cannot run; the message says why and what to do."""


# -- inputs and the plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """The action's inputs, as action.yml passes them (an empty string is "not given")."""

    policy: str | None = None
    trust_ref: str | None = None
    range: str | None = None
    fetch_depth: int = 0  # 0: all history, when the checkout is shallow
    path: str | None = None  # the checkout, relative to the workspace

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Inputs:
        def text(name: str) -> str | None:
            value = env.get(INPUT_PREFIX + name, "").strip()
            if value.startswith("-") or "\n" in value:
                raise ActionError(f"input {name.lower().replace('_', '-')}: {value!r} is not accepted")
            return value or None

        depth = text("FETCH_DEPTH") or "0"
        if not depth.isdigit():
            raise ActionError(f"input fetch-depth: {depth!r} is not a whole number (0 = all history)")
        return cls(text("POLICY"), text("TRUST_REF"), text("RANGE"), int(depth), text("PATH"))


@dataclass(frozen=True)
class Plan:
    """What one event asks for."""

    event: str
    description: str  # one sentence, plain text built from checked values only
    head: str | None  # the commit whose verdict decides; None when there is nothing to verify
    trust_ref: str
    refspecs: tuple[str, ...] = ()  # fetched from origin first (with the history a shallow clone lacks)
    head_refspec: str | None = None  # fetched too when the head is not in the clone
    exclude: tuple[str, ...] = ()  # commits reachable from these are not listed
    fork_url: str | None = None  # another repository holding the pull request's receipts


def read_event(env: Mapping[str, str]) -> tuple[str, Mapping[str, Any]]:
    """``$GITHUB_EVENT_NAME`` and the JSON object at ``$GITHUB_EVENT_PATH``."""
    name = env.get("GITHUB_EVENT_NAME", "")
    path = env.get("GITHUB_EVENT_PATH", "")
    if not name or not path:
        raise ActionError("GITHUB_EVENT_NAME and GITHUB_EVENT_PATH are not set: this runs as a step of a "
                          "GitHub Actions job")
    if not re.fullmatch(r"[a-z_]{1,64}", name):
        raise ActionError(f"GITHUB_EVENT_NAME {name!r} is not an event name")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_EVENT_BYTES + 1)
    except OSError as exc:
        raise ActionError(f"cannot read the event at GITHUB_EVENT_PATH ({path}): {exc.strerror or exc}") from None
    if len(data) > MAX_EVENT_BYTES:
        raise ActionError(f"the event at {path} is over {MAX_EVENT_BYTES // (1024 * 1024)} MiB")
    try:
        event = json.loads(data.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON
        raise ActionError(f"the event at {path} is not JSON: {report.safe(str(exc), 200)}") from None
    except RecursionError:
        raise ActionError(f"the event at {path} is nested too deeply") from None
    if not isinstance(event, dict):
        raise ActionError(f"the event at {path} is not a JSON object")
    return name, event


def plan_for(event_name: str, event: Mapping[str, Any], inputs: Inputs, env: Mapping[str, str]) -> Plan:
    """Which commits to verify against which trusted ref, for this event."""
    if event_name in ("pull_request", "pull_request_target"):
        return _pull_request(event_name, event, inputs)
    if event_name == "push":
        return _push(event, inputs)
    if event_name == "merge_group":
        return _merge_group(event, inputs)
    return _other(event_name, event, inputs, env)


def _pull_request(name: str, event: Mapping[str, Any], inputs: Inputs) -> Plan:
    pr = _object(event, "pull_request")
    number = pr.get("number", event.get("number"))
    if type(number) is not int or not 0 < number < 2**31:
        raise ActionError("event: pull_request.number is not a pull request number")
    head = _object(pr, "head", "pull_request.")
    base = _object(pr, "base", "pull_request.")
    head_sha = _sha(head.get("sha"), "pull_request.head.sha")
    base_branch = _branch(base.get("ref"), "pull_request.base.ref")
    tracking = f"refs/remotes/{REMOTE}/{base_branch}"
    fork_url = None
    head_repo, base_repo = head.get("repo"), base.get("repo")
    if isinstance(head_repo, Mapping) and isinstance(base_repo, Mapping) and \
            head_repo.get("full_name") != base_repo.get("full_name"):
        fork_url = _url(head_repo.get("clone_url"), "pull_request.head.repo.clone_url")
    return Plan(name, f"pull request #{number}: its head {head_sha[:10]} and the commits it adds to "
                      f"{base_branch}",
                head_sha, inputs.trust_ref or tracking,
                refspecs=(f"+refs/heads/{base_branch}:{tracking}",),
                head_refspec=f"+refs/pull/{number}/head:refs/remotes/pull/{number}/head",
                exclude=(tracking,), fork_url=fork_url)


def _push(event: Mapping[str, Any], inputs: Inputs) -> Plan:
    ref = event.get("ref")
    if not isinstance(ref, str) or not ref.startswith(("refs/heads/", "refs/tags/")):
        raise ActionError("event: push.ref is not a branch or tag ref name")
    kind, _, name = ref[len("refs/"):].partition("/")
    name = _branch(name, "push.ref")
    after = _sha(event.get("after"), "push.after")
    before = _sha(event.get("before"), "push.before")
    if event.get("deleted") is True or _ZERO.fullmatch(after):
        return Plan("push", f"nothing: the push deleted {ref}", None, inputs.trust_ref or "")
    created = bool(_ZERO.fullmatch(before))
    default = _default_branch(event, required=kind == "tags" or created)
    default_tracking = f"refs/remotes/{REMOTE}/{default}"
    default_spec = f"+refs/heads/{default}:{default_tracking}"
    if kind == "tags":  # a tag has no policy of its own: the default branch's
        return Plan("push", f"the commit that tag {name} points to", after, inputs.trust_ref or default_tracking,
                    refspecs=(default_spec,))
    own = f"refs/remotes/{REMOTE}/{name}"
    refspecs = [f"+refs/heads/{name}:{own}"]
    if created:
        if default is None or default == name:
            return Plan("push", f"the head of the new branch {name}", after, inputs.trust_ref or own,
                        refspecs=tuple(refspecs))
        return Plan("push", f"the commits of the new branch {name} that {default} does not have", after,
                    inputs.trust_ref or own, refspecs=(*refspecs, default_spec), exclude=(default_tracking,))
    forced = ", a forced push" if event.get("forced") is True else ""
    return Plan("push", f"the commits pushed to {name} ({before[:10]}..{after[:10]}{forced})", after,
                inputs.trust_ref or own, refspecs=tuple(refspecs), exclude=(before,))


def _merge_group(event: Mapping[str, Any], inputs: Inputs) -> Plan:
    group = _object(event, "merge_group")
    head_sha = _sha(group.get("head_sha"), "merge_group.head_sha")
    base_ref = group.get("base_ref")
    if not isinstance(base_ref, str) or not base_ref.startswith("refs/heads/"):
        raise ActionError("event: merge_group.base_ref is not a branch ref name")
    base = _branch(base_ref[len("refs/heads/"):], "merge_group.base_ref")
    tracking = f"refs/remotes/{REMOTE}/{base}"
    return Plan("merge_group", f"the merge queue's commit {head_sha[:10]} for {base}", head_sha,
                inputs.trust_ref or tracking, refspecs=(f"+refs/heads/{base}:{tracking}",), exclude=(tracking,))


def _other(event_name: str, event: Mapping[str, Any], inputs: Inputs, env: Mapping[str, str]) -> Plan:
    sha = _sha(env.get("GITHUB_SHA"), "GITHUB_SHA", where="")
    default = _default_branch(event, required=inputs.trust_ref is None)
    description = f"the workflow's commit {sha[:10]} ({event_name})"
    if default is None:
        assert inputs.trust_ref is not None
        return Plan(event_name, description, sha, inputs.trust_ref)
    tracking = f"refs/remotes/{REMOTE}/{default}"
    return Plan(event_name, description, sha, inputs.trust_ref or tracking,
                refspecs=(f"+refs/heads/{default}:{tracking}",))


def _object(data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ActionError(f"event: {prefix}{key} is missing or not an object")
    return value


def _sha(value: Any, what: str, where: str = "event: ") -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise ActionError(f"{where}{what} is not a full commit id")
    return value


def _branch(value: Any, what: str) -> str:
    """A branch name that git accepts and that cannot be read as an option or a refspec."""
    if (not isinstance(value, str) or not value or value.startswith("-") or ":" in value
            or not pygit2.reference_is_valid_name(f"refs/heads/{value}")):
        raise ActionError(f"event: {what} is not a valid branch name")
    return value


def _default_branch(event: Mapping[str, Any], required: bool) -> str | None:
    repository = event.get("repository")
    value = repository.get("default_branch") if isinstance(repository, Mapping) else None
    if value is None and not required:
        return None
    return _branch(value, "repository.default_branch")


def _url(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(_URL_SCHEMES) or any(c.isspace() for c in value):
        raise ActionError(f"event: {what} is not a repository URL")
    return value


# -- running it ------------------------------------------------------------------------------


@dataclass
class Outcome:
    plan: Plan
    head: str | None  # the commit that decides: the plan's, or the tip of the range input
    reports: list[report.CommitReport]
    listed: int  # commits in the range, before MAX_COMMITS
    notes: list[str]

    @property
    def head_report(self) -> report.CommitReport | None:
        return next((r for r in self.reports if r.commit == self.head), None)

    @property
    def verdict(self) -> str:
        head = self.head_report
        return head.state if head is not None else "skipped"

    @property
    def ok(self) -> bool:
        head = self.head_report
        return head.ok if head is not None else self.head is None


class Git:
    """git and ``git gpu-proof`` in the workspace, each as a list of arguments (never a shell)."""

    def __init__(self, root: Path, log: TextIO) -> None:
        self.root, self.log = root, log

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True,
                                    errors="replace", stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise ActionError(f"cannot run git: {exc.strerror or exc}") from None
        if check and result.returncode != 0:
            raise ActionError(f"git {args[0]} failed: {report.safe(result.stderr.strip(), 1000)}")
        return result

    def gpu_proof(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-I", "-m", "gitproof", *args], cwd=self.root, capture_output=True,
                              text=True, errors="replace", stdin=subprocess.DEVNULL)

    def has_commit(self, rev: str) -> bool:
        return self.run("cat-file", "-e", f"{rev}^{{commit}}", check=False).returncode == 0

    def shallow(self) -> bool:
        return self.run("rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def execute(plan: Plan, inputs: Inputs, git: Git) -> Outcome:
    """Fetch what the plan needs, verify, and return the reports (writes nothing else)."""
    notes: list[str] = []
    if plan.head is None:
        return Outcome(plan, None, [], 0, notes)
    depth: list[str] = []
    if git.shallow():
        depth = ["--unshallow"] if inputs.fetch_depth == 0 else [f"--depth={inputs.fetch_depth}"]
    if plan.refspecs or depth:
        git.run("fetch", "--no-tags", "--quiet", *depth, REMOTE, *plan.refspecs)
    if not git.has_commit(plan.head) and plan.head_refspec:
        git.run("fetch", "--no-tags", "--quiet", REMOTE, plan.head_refspec)
    if not git.has_commit(plan.head):
        raise ActionError(f"commit {plan.head} is not in the clone, even after fetching; check the "
                          "repository out with actions/checkout before this step")
    commits, listed = _commits(plan, inputs, git, notes)
    head = commits[0]
    if plan.fork_url:
        fetched = git.gpu_proof("fetch", plan.fork_url)
        if fetched.returncode != 0:
            notes.append("the receipts of the pull request's own repository could not be fetched: "
                         + report.safe(fetched.stderr.strip(), 500))
    args = ["verify", "--format", "json", "--fetch", REMOTE, "--trust-ref", plan.trust_ref]
    with tempfile.TemporaryDirectory(prefix="gpu-proof-policy-") as scratch:
        if inputs.policy:
            args += ["--policy", _trusted_policy(git, plan.trust_ref, inputs.policy, Path(scratch))]
        verified = git.gpu_proof(*args, *commits)
    _quoted(git.log, verified.stderr)
    if verified.returncode not in (EXIT_OK, EXIT_UNVALIDATED):
        raise ActionError("git gpu-proof verify could not check the receipts: "
                          + report.safe(verified.stderr.strip() or f"exit status {verified.returncode}", 1000))
    try:
        results = json.loads(verified.stdout)["results"]
        repo = pygit2.Repository(str(git.root))
        subjects = {sha: subject(repo[sha].peel(pygit2.Commit)) for sha in commits}
        reports = report.commit_reports(results, subjects)
    except (ValueError, KeyError, TypeError, pygit2.GitError) as exc:
        raise ActionError(f"git gpu-proof verify gave output this action cannot read: {exc}") from None
    return Outcome(plan, head, reports, listed, notes)


def _trusted_policy(git: Git, trust_ref: str, path: str, scratch: Path) -> str:
    """The ``policy`` input's file as the trusted ref has it, copied to ``scratch``.

    The checkout is the pull request's: a policy file read from it could turn rules off
    (allow_unsigned, signers, fingerprint_paths), so, like [tool.gpu_proof] and allowed_signers,
    it is read from the trusted ref. The path is relative to the repository's root.
    """
    relative = path.replace("\\", "/").lstrip("/")
    while relative.startswith("./"):
        relative = relative[2:]
    if not relative or any(part == ".." for part in relative.split("/")):
        raise ActionError(f"input policy: {path!r} is not a path inside the repository")
    shown = git.run("cat-file", "blob", f"{trust_ref}:{relative}", check=False)
    if shown.returncode != 0:
        raise ActionError(f"input policy: {relative} is not a file in {trust_ref}; the policy file is read from "
                          "the trusted ref, not from the checkout, so commit it there first")
    copy = scratch / Path(relative).name
    copy.write_text(shown.stdout, encoding="utf-8")
    return str(copy)


def _commits(plan: Plan, inputs: Inputs, git: Git, notes: list[str]) -> tuple[list[str], int]:
    """The commits to verify, newest first, the one that decides first; and how many the range had."""
    assert plan.head is not None
    if inputs.range:
        tip, sep, start = _split_range(inputs.range)
        return _list(git, _resolve(git, tip), [_resolve(git, start)] if sep else None, notes)
    head = _peeled(git, plan.head)  # a pushed annotated tag names the tag object
    if not plan.exclude:  # a tag, a new branch that is the default one, other events: the commit alone
        return [head], 1
    exclude = [rev for rev in plan.exclude if git.has_commit(rev)]
    if len(exclude) < len(plan.exclude):
        notes.append("the previous tip is not in the clone (a forced push, or a shallow clone), so only "
                     "the pushed head was verified")
        return [head], 1
    return _list(git, head, exclude, notes)


def _peeled(git: Git, rev: str) -> str:
    return git.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}").stdout.strip()


def _split_range(text: str) -> tuple[str, str, str]:
    """``A..B`` as (B, "..", A); one revision ``B`` as (B, "", "")."""
    if "..." in text:
        raise ActionError(f"input range: {text!r}: give A..B or one revision, not A...B")
    start, sep, tip = text.partition("..")
    if not sep:
        return text, "", ""
    return tip or "HEAD", sep, start or "HEAD"


def _resolve(git: Git, rev: str) -> str:
    result = git.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
    if result.returncode != 0:
        raise ActionError(f"input range: {rev!r} is not a commit in the clone")
    return result.stdout.strip()


def _list(git: Git, tip: str, exclude: Sequence[str] | None, notes: list[str]) -> tuple[list[str], int]:
    if exclude is None:
        return [tip], 1
    listed = git.run("rev-list", tip, "--not", *exclude, "--").stdout.split()
    if not listed:
        return [tip], 1  # nothing new (say a pull request whose head is already on its base)
    if len(listed) > MAX_COMMITS:
        notes.append(f"the range has {len(listed)} commits; the newest {MAX_COMMITS} were verified")
    return listed[:MAX_COMMITS], len(listed)


# -- what the job shows ---------------------------------------------------------------------


def _quoted(log: TextIO, text: str) -> None:
    """Text from elsewhere (git, verify's warnings), printed with workflow commands stopped."""
    if not text.strip():
        return
    token = secrets.token_hex(16)
    log.write(f"::stop-commands::{token}\n")
    log.write(text if text.endswith("\n") else text + "\n")
    log.write(f"::{token}::\n")


def summary(outcome: Outcome) -> str:
    plan = outcome.plan
    context = [report.md_text(f"Verified {plan.description}.")]
    context += [f"- {report.md_text(note)}" for note in outcome.notes]
    if outcome.head is None:
        return "\n".join(["### gpu-proof: nothing to verify", "", *context]) + "\n"
    return report.markdown(outcome.reports, trust_ref=plan.trust_ref, heading="gpu-proof", context=context)


def annotation_commands(outcome: Outcome) -> str:
    head = outcome.head
    text = report.github(outcome.reports, severity=lambda r: "error" if r.commit == head else "warning")
    return text + "".join(report.workflow_command("warning", report.safe(note), "gpu-proof")
                          + "\n" for note in outcome.notes)


def outputs(outcome: Outcome | None, plan: Plan | None) -> dict[str, str]:
    if outcome is None:
        return {"verdict": "error", "head": (plan.head or "") if plan else "",
                "trust-ref": plan.trust_ref if plan else "", "checked": "0", "unvalidated": "0"}
    return {"verdict": outcome.verdict, "head": outcome.head or "", "trust-ref": outcome.plan.trust_ref,
            "checked": str(len(outcome.reports)), "unvalidated": str(sum(not r.ok for r in outcome.reports))}


def _append(path: str | None, text: str) -> None:
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ActionError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_outputs(env: Mapping[str, str], values: Mapping[str, str]) -> None:
    lines = []
    for name, value in values.items():
        if "\n" in value or "\r" in value:  # never: each is a word, a commit id or a checked ref name
            raise ActionError(f"output {name} would span lines")
        lines.append(f"{name}={value}\n")
    _append(env.get("GITHUB_OUTPUT"), "".join(lines))


def main(env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """The step: decide, fetch, verify, report. Returns the exit status."""
    env = os.environ if env is None else env
    out = sys.stdout if out is None else out
    plan: Plan | None = None
    try:
        inputs = Inputs.from_env(env)
        name, event = read_event(env)
        plan = plan_for(name, event, inputs, env)
        root = Path(env.get("GITHUB_WORKSPACE") or ".") / (inputs.path or "")
        outcome = execute(plan, inputs, Git(root, out))
    except GitproofError as exc:
        message = report.safe(str(exc))
        out.write(report.workflow_command("error", message, "gpu-proof: the check could not run") + "\n")
        try:
            _append(env.get("GITHUB_STEP_SUMMARY"),
                    f"### gpu-proof: the check could not run\n\n{report.md_text(message)}\n")
            _write_outputs(env, outputs(None, plan))
        except GitproofError:
            pass
        return EXIT_ERROR
    _quoted(out, "\n".join(f"gpu-proof: {line}" for line in report.log_lines(outcome.reports)) or
            f"gpu-proof: {plan.description}")
    out.write(annotation_commands(outcome))
    try:
        _append(env.get("GITHUB_STEP_SUMMARY"), summary(outcome))
        _write_outputs(env, outputs(outcome, plan))
    except GitproofError as exc:
        out.write(report.workflow_command("error", report.safe(str(exc)), "gpu-proof") + "\n")
        return EXIT_ERROR
    return EXIT_OK if outcome.ok else EXIT_UNVALIDATED


if __name__ == "__main__":
    sys.exit(main())
