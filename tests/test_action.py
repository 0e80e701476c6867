"""The GitHub Action (action.yml) and its driver, gitproof.github_action.

The action's steps are read from action.yml and run with bash the way the Actions runner
runs a composite action's steps: each expression in a step's ``env:`` evaluated (inputs,
``github.action_path``, earlier steps' outputs), with ``GITHUB_EVENT_PATH`` holding a
``pull_request`` or ``push`` event shaped like GitHub's, ``GITHUB_STEP_SUMMARY`` and
``GITHUB_OUTPUT`` as files, in a checkout made the way actions/checkout makes one
(depth 1, detached) from a bare remote that plays GitHub (``refs/pull/N/head`` and
``refs/pull/N/merge``). The install step is left out there (the package is installed in
this virtualenv already) and tested on its own with a stand-in interpreter.

The docs/ci.md GitLab template is run here too, line by line, and its JUnit report read
with junitparser.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import junitparser
import pygit2
import pytest
import yaml

from gitproof import github_action
from gitproof.github_action import ActionError, Inputs, plan_for
from gitproof.notes import NotesStore
from gitproof.receipt import UNSIGNED_KEY, UNSIGNED_TRAILER, SignedReceipt, serialize_payload
from tests.factories import make_receipt
from tests.helpers import change_kernel, commit_all, generate_key, git, write_files
from tests.receipts import attach_receipt
from tests.remotes import World, gp, tool_env

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
DOC = ROOT / "docs" / "ci.md"
ALICE = "alice@example.com"
ZERO = "0" * 40
REPO = "octo-org/kernels"


# -- events shaped like GitHub's -------------------------------------------------------------


def user(login: str) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**7, "node_id": "U_kgDOAbc", "type": "User",
            "site_admin": False, "html_url": f"https://github.com/{login}"}


def repository(full_name: str = REPO, clone_url: str = "https://github.com/octo-org/kernels.git",
               fork: bool = False) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {"id": 700001, "node_id": "R_kgDOKx", "name": name, "full_name": full_name, "private": False,
            "owner": user(owner), "html_url": f"https://github.com/{full_name}", "fork": fork,
            "url": f"https://api.github.com/repos/{full_name}", "clone_url": clone_url,
            "git_url": f"git://github.com/{full_name}.git", "ssh_url": f"git@github.com:{full_name}.git",
            "default_branch": "main", "visibility": "public", "archived": False}


def pull_request_event(number: int, head_sha: str, base_sha: str, merge_sha: str | None = None,
                       head_ref: str = "pr", base_ref: str = "main", head_repo: dict | None = None,
                       title: str = "Faster kernels") -> dict[str, Any]:
    base_repo = repository()
    head_repo = head_repo or base_repo
    return {
        "action": "synchronize", "number": number, "before": base_sha, "after": head_sha,
        "pull_request": {
            "url": f"https://api.github.com/repos/{REPO}/pulls/{number}", "id": 1900000 + number,
            "node_id": "PR_kwDOKx", "html_url": f"https://github.com/{REPO}/pull/{number}",
            "diff_url": f"https://github.com/{REPO}/pull/{number}.diff", "number": number, "state": "open",
            "locked": False, "title": title, "user": user("contributor"), "body": None,
            "created_at": "2026-11-30T10:00:00Z", "updated_at": "2026-11-30T10:05:00Z", "closed_at": None,
            "merged_at": None, "merge_commit_sha": merge_sha, "draft": False,
            "head": {"label": f"{head_repo['owner']['login']}:{head_ref}", "ref": head_ref, "sha": head_sha,
                     "user": head_repo["owner"], "repo": head_repo},
            "base": {"label": f"octo-org:{base_ref}", "ref": base_ref, "sha": base_sha,
                     "user": base_repo["owner"], "repo": base_repo},
            "author_association": "CONTRIBUTOR", "merged": False, "mergeable": None, "commits": 2,
            "additions": 3, "deletions": 1, "changed_files": 1,
        },
        "repository": base_repo, "sender": user("contributor"),
    }


def push_event(ref: str, before: str, after: str, forced: bool = False, commits: list[str] = ()) -> dict[str, Any]:
    def commit(sha: str) -> dict[str, Any]:
        return {"id": sha, "tree_id": "1" * 40, "distinct": True, "message": "change",
                "timestamp": "2026-11-30T10:00:00Z", "url": f"https://github.com/{REPO}/commit/{sha}",
                "author": {"name": "alice", "email": ALICE}, "committer": {"name": "alice", "email": ALICE},
                "added": [], "removed": [], "modified": ["src/kernels.py"]}

    created, deleted = before == ZERO, after == ZERO
    return {
        "ref": ref, "before": before, "after": after, "repository": {**repository(), "master_branch": "main"},
        "pusher": {"name": "alice", "email": ALICE}, "sender": user("alice"), "created": created,
        "deleted": deleted, "forced": forced, "base_ref": None,
        "compare": f"https://github.com/{REPO}/compare/{before[:12]}...{after[:12]}",
        "commits": [commit(sha) for sha in commits], "head_commit": None if deleted else commit(after),
    }


# -- the plan, from events alone ---------------------------------------------------------------

A, B, C = "a" * 40, "b" * 40, "c" * 40


def test_a_pull_request_is_verified_against_its_base_branch():
    plan = plan_for("pull_request", pull_request_event(7, A, B, C), Inputs(), {})
    assert plan.head == A and plan.trust_ref == "refs/remotes/origin/main"
    assert plan.refspecs == ("+refs/heads/main:refs/remotes/origin/main",)
    assert plan.head_refspec == "+refs/pull/7/head:refs/remotes/pull/7/head"
    assert plan.exclude == ("refs/remotes/origin/main",) and plan.fork_url is None
    fork = repository("contributor/kernels", "https://github.com/contributor/kernels.git", fork=True)
    assert plan_for("pull_request_target", pull_request_event(7, A, B, head_repo=fork), Inputs(), {}).fork_url == \
        "https://github.com/contributor/kernels.git"
    pinned = plan_for("pull_request", pull_request_event(7, A, B), Inputs(trust_ref="refs/tags/policy-v1"), {})
    assert pinned.trust_ref == "refs/tags/policy-v1"


def test_a_push_is_verified_against_the_branch_itself():
    plan = plan_for("push", push_event("refs/heads/release", A, B, commits=[B]), Inputs(), {})
    assert (plan.head, plan.trust_ref, plan.exclude) == (B, "refs/remotes/origin/release", (A,))
    assert plan.refspecs == ("+refs/heads/release:refs/remotes/origin/release",)
    new = plan_for("push", push_event("refs/heads/topic", ZERO, B), Inputs(), {})
    assert (new.trust_ref, new.exclude) == ("refs/remotes/origin/topic", ("refs/remotes/origin/main",))
    assert "+refs/heads/main:refs/remotes/origin/main" in new.refspecs
    new_main = plan_for("push", push_event("refs/heads/main", ZERO, B), Inputs(), {})
    assert new_main.exclude == ()
    deleted = plan_for("push", push_event("refs/heads/topic", B, ZERO), Inputs(), {})
    assert deleted.head is None
    forced = plan_for("push", push_event("refs/heads/main", A, B, forced=True), Inputs(), {})
    assert forced.exclude == (A,) and "forced" in forced.description
    tag = plan_for("push", push_event("refs/tags/v1.0", ZERO, B), Inputs(), {})
    assert (tag.head, tag.trust_ref, tag.exclude) == (B, "refs/remotes/origin/main", ())


def test_merge_groups_and_other_events():
    group = {"merge_group": {"head_sha": A, "head_ref": "refs/heads/gh-readonly-queue/main/pr-7-" + B,
                             "base_sha": B, "base_ref": "refs/heads/main"}, "repository": repository()}
    plan = plan_for("merge_group", group, Inputs(), {})
    assert (plan.head, plan.trust_ref, plan.exclude) == (A, "refs/remotes/origin/main", ("refs/remotes/origin/main",))
    manual = plan_for("workflow_dispatch", {"repository": repository(), "ref": "refs/heads/x"}, Inputs(),
                      {"GITHUB_SHA": C})
    assert (manual.head, manual.trust_ref) == (C, "refs/remotes/origin/main")


def test_a_tag_or_another_event_verifies_its_commit_alone(repo):
    """No range to list: the one commit, and for a pushed annotated tag the commit it points to."""
    change_kernel(repo, "return a + b + 1", "second")
    head = change_kernel(repo, "return a + b + 2", "third")
    git(repo, "tag", "-a", "-m", "release", "v1")
    tag = git(repo, "rev-parse", "v1")
    assert tag != head
    git_ = github_action.Git(repo, io.StringIO())
    for event, sha in (("push", tag), ("workflow_dispatch", head)):
        plan = github_action.Plan(event, "it", sha, "refs/heads/main")
        assert github_action._commits(plan, Inputs(), git_, []) == ([head], 1)


def hostile(event: dict, path: str, value: Any) -> dict:
    event = json.loads(json.dumps(event))
    *keys, last = path.split(".")
    target = event
    for key in keys:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return event


@pytest.mark.parametrize("path, value, says", [
    ("pull_request", KeyError, "pull_request is missing or not an object"),
    ("pull_request", [], "pull_request is missing or not an object"),
    ("pull_request.head.sha", "HEAD", "pull_request.head.sha is not a full commit id"),
    ("pull_request.head.sha", "--output=/tmp/x", "pull_request.head.sha is not a full commit id"),
    ("pull_request.base.ref", "-f", "pull_request.base.ref is not a valid branch name"),
    ("pull_request.base.ref", "main:refs/heads/evil", "pull_request.base.ref is not a valid branch name"),
    ("pull_request.base.ref", "a..b", "pull_request.base.ref is not a valid branch name"),
    ("pull_request.base.ref", "main\n::error::x", "pull_request.base.ref is not a valid branch name"),
    ("pull_request.base.ref", None, "pull_request.base.ref is not a valid branch name"),
    ("pull_request.number", "7; rm -rf /", "pull_request.number is not a pull request number"),
    ("pull_request.number", True, "pull_request.number is not a pull request number"),
    ("pull_request.head.repo", repository("evil/fork", "ext::sh -c touch% /tmp/pwned"),
     "pull_request.head.repo.clone_url is not a repository URL"),
])
def test_hostile_pull_request_events_are_refused_clearly(path, value, says):
    event = hostile(pull_request_event(7, A, B), path, value)
    with pytest.raises(ActionError, match=re.escape(says)):
        plan_for("pull_request", event, Inputs(), {})


@pytest.mark.parametrize("event, says", [
    (push_event("refs/heads/main", A, "nope"), "push.after is not a full commit id"),
    (push_event("refs/remotes/origin/main", A, B), "push.ref is not a branch or tag ref name"),
    (hostile(push_event("refs/heads/topic", ZERO, B), "repository", KeyError),
     "repository.default_branch is not a valid branch name"),
    (hostile(push_event("refs/tags/v1", ZERO, B), "repository.default_branch", "--upload-pack=x"),
     "repository.default_branch is not a valid branch name"),
])
def test_hostile_push_events_are_refused_clearly(event, says):
    with pytest.raises(ActionError, match=re.escape(says)):
        plan_for("push", event, Inputs(), {})


@dataclass
class Step:
    code: int
    out: str
    summary: str
    outputs: dict[str, str]


def run_main(tmp_path: Path, event_text: str | None, name: str = "pull_request", **extra: str) -> Step:
    env = {"GITHUB_EVENT_NAME": name, "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
           "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_WORKSPACE": str(tmp_path), **extra}
    if event_text is not None:
        (tmp_path / "event.json").write_bytes(event_text.encode("utf-8", "surrogatepass"))
        env["GITHUB_EVENT_PATH"] = str(tmp_path / "event.json")
    out = io.StringIO()
    code = github_action.main(env, out)
    read = lambda p: p.read_text() if p.exists() else ""  # noqa: E731
    outputs = dict(line.split("=", 1) for line in read(tmp_path / "output").splitlines())
    return Step(code, out.getvalue(), read(tmp_path / "summary.md"), outputs)


@pytest.mark.parametrize("event_text, extra, says", [
    (None, {}, "GITHUB_EVENT_NAME and GITHUB_EVENT_PATH are not set"),
    ("{not json", {}, "is not JSON"),
    ("\udcff", {}, "is not JSON"),
    ("[1, 2]", {}, "is not a JSON object"),
    ("[" * 100000 + "]" * 100000, {}, "is nested too deeply"),
    ("{}", {}, "pull_request is missing or not an object"),
    ("{}", {"GITHUB_EVENT_NAME": "pull request!"}, "is not an event name"),
    ("{}", {"GPU_PROOF_INPUT_FETCH_DEPTH": "all"}, "input fetch-depth: 'all' is not a whole number"),
    ("{}", {"GPU_PROOF_INPUT_RANGE": "--output=x"}, "input range: '--output=x' is not accepted"),
])
def test_a_bad_event_or_input_is_one_error_annotation(tmp_path, event_text, extra, says):
    step = run_main(tmp_path, event_text, **extra)
    assert step.code == 2
    lines = step.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("::error title=gpu-proof%3A the check could not run::")
    assert says in lines[0].replace("%25", "%")
    assert "### gpu-proof: the check could not run" in step.summary
    assert step.outputs["verdict"] == "error"


def test_a_missing_event_file_is_one_error(tmp_path):
    step = run_main(tmp_path, None, GITHUB_EVENT_PATH=str(tmp_path / "absent.json"))
    assert step.code == 2 and "cannot read the event at GITHUB_EVENT_PATH" in step.out


# -- action.yml itself ---------------------------------------------------------------------


def action() -> dict[str, Any]:
    return yaml.safe_load(ACTION.read_text())


def test_action_yml_is_valid_against_the_github_action_schema():
    checker = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(checker), "--builtin-schema", "vendor.github-actions", str(ACTION)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_action_scripts_get_inputs_only_through_the_environment():
    spec = action()
    assert spec["runs"]["using"] == "composite"
    assert set(spec["inputs"]) == {"policy", "trust-ref", "range", "fetch-depth", "path", "python", "install"}
    used = set()
    for step in spec["runs"]["steps"]:
        assert step["shell"] == "bash"
        assert "${{" not in step["run"], "an expression spliced into a script could change what it runs"
        for value in step.get("env", {}).values():
            used.update(re.findall(r"inputs\.([\w-]+)", value))
    assert used == set(spec["inputs"]) - {"install"}  # install is the install step's `if:`
    assert [s["id"] for s in spec["runs"]["steps"]] == ["install", "verify"]
    assert set(spec["outputs"]) == {"verdict", "head", "trust-ref", "checked", "unvalidated"}


def test_the_install_step_installs_the_actions_own_files(tmp_path):
    """The install step with a stand-in interpreter that records what it is asked to do."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\necho "$PWD: $0 $*" >> "$CALLS"\n'
                    'if [ "$2 $3" = "-m venv" ]; then mkdir -p "$4/bin" && cp "$0" "$4/bin/python"; fi\n')
    fake.chmod(0o755)
    temp = tmp_path / "temp"
    temp.mkdir()
    ran = ActionRun(tmp_path, temp).steps(inputs={"python": str(fake)}, only="install", CALLS=str(log))
    venv = temp / "git-gpu-proof-venv"
    assert ran["install"] == {"python": f"{venv}/bin/python"}
    # -I and a directory outside the checkout: nothing a pull request adds there is imported
    assert log.read_text().splitlines() == [
        f"{temp}: {fake} -I -m venv {venv}",
        f"{temp}: {venv}/bin/python -I -m pip install --quiet --disable-pip-version-check {ROOT}",
    ]


def test_python_dash_capital_i_never_imports_a_venv_py_from_the_current_directory(tmp_path):
    """Why the install step needs -I (or another directory): `python -m venv` in a checkout
    whose root has a venv.py would run the pull request's venv.py."""
    marker = tmp_path / "pwned"
    (tmp_path / "venv.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    plain = subprocess.run([sys.executable, "-m", "venv", "--help"], cwd=tmp_path, capture_output=True)
    assert marker.exists() and plain.returncode == 0  # the trap works without -I
    marker.unlink()
    isolated = subprocess.run([sys.executable, "-I", "-m", "venv", "--help"], cwd=tmp_path, capture_output=True)
    assert isolated.returncode == 0 and not marker.exists()


# -- the action's steps in a simulated job ------------------------------------------------------


class ActionRun:
    """Runs action.yml's steps as the Actions runner would, in ``workspace``."""

    EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

    def __init__(self, workspace: Path, temp: Path) -> None:
        self.workspace, self.temp = workspace, temp
        self.spec = action()
        self.stdout = self.stderr = self.summary = ""
        self.code = 0

    def value(self, expression: str, inputs: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
        for operand in (part.strip() for part in expression.split("||")):
            if operand.startswith("inputs."):
                value = inputs[operand[len("inputs."):]]
            elif operand == "github.action_path":
                value = str(ROOT)
            elif operand == "runner.temp":
                value = str(self.temp)
            elif m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", operand):
                value = outputs.get(m[1], {}).get(m[2], "")
            else:
                raise AssertionError(f"the simulated runner does not know {operand!r}")
            if value:
                return value
        return ""

    def steps(self, event_name: str = "push", event: dict | None = None, inputs: dict[str, str] | None = None,
              only: str | None = None, **extra: str) -> dict[str, dict[str, str]]:
        given = {name: spec.get("default", "") for name, spec in self.spec["inputs"].items()}
        given.update({"python": sys.executable, "install": "false"})
        given.update(inputs or {})
        event_path = self.temp / "event.json"
        event_path.write_text(json.dumps(event or {}))
        outputs: dict[str, dict[str, str]] = {}
        summaries = []
        for number, step in enumerate(self.spec["runs"]["steps"]):
            if (only and step["id"] != only) or (not only and step["id"] == "install"):
                continue  # the package is installed in this virtualenv already
            env = {key: self.value(m[1], given, outputs) if (m := self.EXPRESSION.fullmatch(value)) else value
                   for key, value in step.get("env", {}).items()}
            output, summary = self.temp / f"output-{number}", self.temp / f"summary-{number}"
            output.touch()
            summary.touch()
            script = self.temp / f"step-{number}.sh"
            script.write_text(step["run"])
            where = step.get("working-directory")
            cwd = self.value(self.EXPRESSION.fullmatch(where)[1], given, outputs) if where else self.workspace
            result = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd,
                env=tool_env(**{"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event_name,
                                 "GITHUB_EVENT_PATH": str(event_path), "GITHUB_OUTPUT": str(output),
                                 "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_WORKSPACE": str(self.workspace),
                                 "GITHUB_REPOSITORY": REPO, "GITHUB_ACTION_PATH": str(ROOT),
                                 "RUNNER_TEMP": str(self.temp), **env, **extra}),
                capture_output=True, text=True, timeout=300)
            self.stdout += result.stdout
            self.stderr += result.stderr
            outputs[step["id"]] = dict(line.split("=", 1) for line in output.read_text().splitlines())
            summaries.append(summary.read_text())
            self.code = result.returncode
            if result.returncode != 0:
                break
        self.summary = "".join(summaries)
        self.outputs = {name: self.value(self.EXPRESSION.fullmatch(spec["value"])[1], given, outputs)
                        for name, spec in self.spec["outputs"].items()}
        return outputs

    def rows(self) -> list[str]:
        """The summary table's rows (not its header)."""
        lines = self.summary.splitlines()
        start = lines.index("| Commit | Verdict | Signer | GPU | Tests |") + 2
        return [line for line in lines[start:] if line.startswith("|")]

    def annotations(self) -> list[str]:
        """The workflow commands in the log, outside ``::stop-commands::`` blocks."""
        found, stop = [], None
        for line in self.stdout.splitlines():
            if stop is not None:
                stop = None if line == f"::{stop}::" else stop
                continue
            if line.lstrip().startswith("::stop-commands::"):
                stop = line.split("::")[2]
            elif line.lstrip().startswith("::") or "##[" in line:
                found.append(line)
        return found


class GitHub:
    """The bare remote of a World, playing GitHub: pull request refs, and what actions/checkout does."""

    def __init__(self, world: World) -> None:
        self.world = world
        git(world.remote, "config", "uploadpack.allowAnySHA1InWant", "true")  # GitHub serves reachable commits

    def open_pull_request(self, number: int, head: str, base: str = "main") -> str:
        """refs/pull/N/head, and refs/pull/N/merge: GitHub's test merge of the head into its base."""
        git(self.world.remote, "update-ref", f"refs/pull/{number}/head", head)
        merger = self.world.root / f"merger-{number}"
        git(self.world.root, "clone", "-q", str(self.world.remote), str(merger))
        git(merger, "fetch", "-q", "origin", f"refs/pull/{number}/head")
        git(merger, "-c", "user.name=GitHub", "-c", "user.email=noreply@github.com", "merge", "-q", "--no-ff",
            "-m", f"Merge {head} into {base}", "FETCH_HEAD")
        git(merger, "push", "-q", "origin", f"HEAD:refs/pull/{number}/merge")
        return git(merger, "rev-parse", "HEAD")

    def checkout(self, name: str, sha: str, ref: str) -> Path:
        """actions/checkout@v4 with its defaults: one commit deep, no tags, detached (a PR) or on the branch."""
        path = self.world.root / name
        git(self.world.root, "init", "-q", str(path))
        git(path, "remote", "add", "origin", self.world.remote.as_uri())
        target = (f"refs/remotes/pull/{ref.split('/')[2]}/merge" if ref.startswith("refs/pull/")
                  else f"refs/remotes/origin/{ref.removeprefix('refs/heads/')}")
        git(path, "fetch", "-q", "--no-tags", "--depth=1", "origin", f"+{sha}:{target}")
        if ref.startswith("refs/pull/"):
            git(path, "checkout", "-q", "--detach", target)
        else:
            git(path, "checkout", "-q", "-B", ref.removeprefix("refs/heads/"), target)
        assert git(path, "rev-parse", "--is-shallow-repository") == "true"
        return path

    def run_pull_request(self, number: int, branch: str, head: str | None = None,
                         inputs: dict[str, str] | None = None, **kwargs: Any) -> ActionRun:
        """The action on a pull request of ``branch`` (a branch of the remote, or of a fork whose
        ``head`` GitHub copied to refs/pull/N/head)."""
        head = head or git(self.world.remote, "rev-parse", f"refs/heads/{branch}")
        merge = self.open_pull_request(number, head)
        base = git(self.world.remote, "rev-parse", "refs/heads/main")
        workspace = self.checkout(f"job-pr-{number}", merge, f"refs/pull/{number}/merge")
        temp = self.world.root / f"runner-temp-{number}"
        temp.mkdir()
        run = ActionRun(workspace, temp)
        run.steps("pull_request", pull_request_event(number, head, base, merge, head_ref=branch, **kwargs),
                  inputs=inputs, GITHUB_SHA=merge, GITHUB_REF=f"refs/pull/{number}/merge")
        return run

    def run_push(self, name: str, ref: str, before: str, after: str, forced: bool = False,
                 inputs: dict[str, str] | None = None) -> ActionRun:
        """The action on a push; with a ``path`` input, checked out in that subdirectory of the workspace."""
        inputs = inputs or {}
        workspace = self.checkout(name, after, ref)
        if inputs.get("path"):
            parent = self.world.root / f"{name}-workspace"
            parent.mkdir()
            workspace.rename(parent / inputs["path"])
            workspace = parent
        temp = self.world.root / f"{name}-temp"
        temp.mkdir()
        run = ActionRun(workspace, temp)
        run.steps("push", push_event(ref, before, after, forced), inputs=inputs, GITHUB_SHA=after, GITHUB_REF=ref)
        return run


@pytest.fixture
def github(tmp_path: Path) -> GitHub:
    return GitHub(World(tmp_path))



def pull_request_branch(github: GitHub, receipt_on_head: bool = True, name: str = "pr") -> tuple[Path, list[str]]:
    """A branch of two commits: a kernel change with its receipt, then a docs change (or a second,
    untested kernel change); pushed with its receipts."""
    contributor = github.world.clone(f"contributor-{name}", hook=False)
    git(contributor, "switch", "-q", "-c", name)
    first = change_kernel(contributor, "return a + b + 1", "kernel: faster add")
    attach_receipt(contributor, github.world.key(ALICE))
    if receipt_on_head:
        write_files(contributor, {"README.md": "how to use the faster add\n"})
        second = commit_all(contributor, "docs: the faster add")
    else:
        second = change_kernel(contributor, "return a + b + 2", "kernel: untested tweak")
    pushed = gp(contributor, "push", "origin", name)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    return contributor, [second, first]


@pytest.mark.slow
@pytest.mark.parametrize("depth", ["0", "1"])
def test_a_validated_pull_request_passes_with_a_row_per_commit(github, depth):
    _, (head, first) = pull_request_branch(github)
    run = github.run_pull_request(1, "pr", inputs={"fetch-depth": depth})
    assert run.code == 0, run.stdout + run.stderr
    assert run.outputs == {"verdict": "unchanged", "head": head, "trust-ref": "refs/remotes/origin/main",
                           "checked": "2", "unvalidated": "0"}
    assert run.summary.startswith("### gpu-proof: 2 commits validated\n")
    assert "Verified pull request \\#1: its head" in run.summary
    assert "Policy and allowed signers read from `refs/remotes/origin/main`." in run.summary
    rows = run.rows()
    assert len(rows) == 2
    assert rows[0].startswith(f"| `{head[:10]}` docs: the faster add | ✅ unchanged | {ALICE} |")
    assert rows[1].startswith(f"| `{first[:10]}` kernel: faster add | ✅ validated | {ALICE} |")
    assert run.annotations() == ["::notice title=gpu-proof::2 commits validated"]
    shallow = git(run.workspace, "rev-parse", "--is-shallow-repository")
    assert shallow == ("false" if depth == "0" else "true")


@pytest.mark.slow
def test_an_unvalidated_head_fails_with_an_error_annotation_and_a_row(github):
    _, (head, first) = pull_request_branch(github, receipt_on_head=False)
    run = github.run_pull_request(2, "pr")
    assert run.code == 1, run.stdout + run.stderr
    assert run.outputs["verdict"] == "unvalidated" and run.outputs["unvalidated"] == "1"
    (error,) = run.annotations()
    assert error.startswith(f"::error title=gpu-proof%3A {head[:10]} unvalidated::{head[:10]} kernel: untested tweak")
    assert "fingerprint-changed: GPU code changed since the receipt on" in error
    rows = run.rows()
    assert rows[0].startswith(f"| `{head[:10]}` kernel: untested tweak | ❌ unvalidated |")
    assert rows[1].startswith(f"| `{first[:10]}` kernel: faster add | ✅ validated |")
    assert f"#### ❌ `{head[:10]}` kernel: untested tweak" in run.summary
    assert f"- Run: `git switch --detach {head[:10]} && git gpu-proof run" in run.summary


@pytest.mark.slow
def test_a_pull_request_that_trusts_its_own_key_is_refused(github):
    contributor = github.world.clone("contributor", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    mallory = generate_key(github.world.root / "keys", "ed25519", "mallory")
    with (contributor / ".gpu-proof" / "allowed_signers").open("a") as handle:
        handle.write(f'mallory@example.com namespaces="gpu-proof" {mallory.public_line}\n')
    head = change_kernel(contributor, "return a - -b", "kernel change, self-signed")
    attach_receipt(contributor, mallory, principal="mallory@example.com")
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    run = github.run_pull_request(3, "pr")
    assert run.code == 1, run.stdout + run.stderr
    assert run.outputs["verdict"] == "unvalidated" and run.outputs["trust-ref"] == "refs/remotes/origin/main"
    assert "`signer-not-allowed`" in run.summary
    (error,) = run.annotations()
    assert f"{head[:10]} unvalidated" in error and "signer-not-allowed" in error


@pytest.mark.slow
def test_a_pull_request_cannot_stand_in_its_own_gitproof(github):
    """The checkout is the workspace the action runs in: a `gitproof` package there must not be
    the one that runs (python -m puts the current directory first on sys.path unless -I)."""
    contributor = github.world.clone("impostor", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    fake = ("import os, sys\n"
            "open(os.environ['GITHUB_OUTPUT'], 'a').write('verdict=validated\\n')\n"
            "print('all validated'); sys.exit(0)\n")
    write_files(contributor, {"gitproof/__init__.py": "", "gitproof/__main__.py": fake,
                              "gitproof/github_action.py": fake})
    head = change_kernel(contributor, "return a * b", "kernel change, untested, with an impostor")
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    run = github.run_pull_request(4, "pr")
    assert run.code == 1, run.stdout + run.stderr
    assert run.outputs["verdict"] == "unvalidated"
    assert any(f"{head[:10]} unvalidated" in a for a in run.annotations())


@pytest.mark.slow
def test_a_fork_pull_request_gets_its_receipts_from_the_fork(github):
    world = github.world
    fork = world.root / "fork.git"
    git(world.root, "clone", "-q", "--bare", str(world.remote), str(fork))
    contributor = world.clone("contributor", hook=False)
    git(contributor, "remote", "set-url", "origin", str(fork))
    git(contributor, "switch", "-q", "-c", "pr")
    head = change_kernel(contributor, "return a + b + 3", "kernel from a fork")
    attach_receipt(contributor, world.key(ALICE))
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    git(contributor, "push", "-q", str(world.remote), "pr:refs/pull/4/head")  # what GitHub does for a fork
    forked = repository("contributor/kernels", fork.as_uri(), fork=True)
    run = github.run_pull_request(4, "pr", head=head, head_repo=forked)
    assert run.code == 0, run.stdout + run.stderr
    assert run.outputs["verdict"] == "validated" and run.outputs["head"] == head
    assert world.remote_notes() == "", "the receipts came from the fork, not from origin"


@pytest.mark.slow
def test_hostile_commit_subjects_reach_no_workflow_command(github):
    contributor = github.world.clone("contributor", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    subject = "x ::set-output name=verdict::validated %0A::error::forged ##[add-mask]y | <img src=x> \x1b[2J"
    head = change_kernel(contributor, "return a * b", subject)
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    run = github.run_pull_request(5, "pr")
    assert run.code == 1
    (error,) = run.annotations()  # the only command outside the stopped blocks: ours
    assert error.startswith(f"::error title=gpu-proof%3A {head[:10]} unvalidated::")
    assert "::set-output" in error and "%25250A::error::forged" in error  # inside its message, as text
    assert run.outputs["verdict"] == "unvalidated"
    row = run.rows()[0]
    assert "&lt;img src=x&gt;" in row and "\\| " in row and "\x1b" not in run.summary


@pytest.mark.slow
def test_a_push_verifies_the_pushed_range_against_the_branch(github):
    world = github.world
    before = git(world.remote, "rev-parse", "main")
    dev = world.clone("dev", hook=False)
    first = change_kernel(dev, "return a + b + 1", "kernel: faster add")
    attach_receipt(dev, world.key(ALICE))
    write_files(dev, {"README.md": "docs\n"})
    after = commit_all(dev, "docs")
    assert gp(dev, "push", "origin", "main").returncode == 0
    run = github.run_push("job-push", "refs/heads/main", before, after)
    assert run.code == 0, run.stdout + run.stderr
    assert run.outputs == {"verdict": "unchanged", "head": after, "trust-ref": "refs/remotes/origin/main",
                           "checked": "2", "unvalidated": "0"}
    assert [row.split("|")[1].strip() for row in run.rows()] == [f"`{after[:10]}` docs",
                                                                    f"`{first[:10]}` kernel: faster add"]

    # A forced push whose old tip the clone cannot have: only the new head is verified, and said so.
    write_files(dev, {"src/kernels.py": "def add(a, b):\n    return b + a + 1\n"})
    git(dev, "commit", "-q", "--amend", "-am", "docs and a kernel tweak")
    forced = git(dev, "rev-parse", "HEAD")
    assert subprocess.run(["git", "push", "-q", "--force", "origin", "main"], cwd=dev, env=tool_env()).returncode == 0
    run = github.run_push("job-forced", "refs/heads/main", after, forced, forced=True)  # after: unreachable now
    assert run.code == 1 and run.outputs["checked"] == "1" and run.outputs["head"] == forced
    assert "only the pushed head was verified" in run.summary
    assert any(a.startswith("::warning title=gpu-proof::the previous tip is not in the clone")
               for a in run.annotations())

    # The range input replaces what the event names; its tip decides.
    ranged = github.run_push("job-range", "refs/heads/main", after, forced, inputs={"range": first})
    assert ranged.code == 0, ranged.stdout + ranged.stderr
    assert ranged.outputs["head"] == first and ranged.outputs["checked"] == "1"
    # A configuration error (here a policy file the trusted ref does not have) is exit 2, one annotation.
    broken = github.run_push("job-policy", "refs/heads/main", after, forced, inputs={"policy": "absent.toml"})
    assert broken.code == 2 and broken.outputs["verdict"] == "error"
    (error,) = broken.annotations()
    assert error.startswith("::error title=gpu-proof%3A the check could not run::input policy: absent.toml is "
                            "not a file in refs/remotes/origin/main")
    assert "Traceback" not in broken.stdout + broken.stderr


@pytest.mark.slow
def test_the_policy_input_is_read_from_the_trusted_ref_not_the_pull_request(github):
    """A pull request that edits the policy file the workflow names (to accept unsigned receipts)
    is judged by the base branch's copy of that file."""
    world = github.world
    seed = world.clone("seed-policy", hook=False)
    write_files(seed, {"ci/gpu-proof.toml": "require_clean = false\n"})
    commit_all(seed, "ci: the action's policy file")
    git(seed, "push", "-q", "--no-verify", "origin", "main")
    contributor = world.clone("contributor-policy", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    write_files(contributor, {"ci/gpu-proof.toml": "allow_unsigned = true\n"})
    head = change_kernel(contributor, "return 'untested'", "kernel: untested, an unsigned receipt")
    repo = pygit2.Repository(str(contributor))
    commit = repo.revparse_single("HEAD").peel(pygit2.Commit)
    now = datetime.now(timezone.utc)
    receipt = make_receipt(signer="mallory", key_fingerprint=UNSIGNED_KEY, commit=head,
                           trees={p: str(commit.tree[p].id) for p in ("src", "tests")},
                           started=now - timedelta(seconds=5), finished=now - timedelta(seconds=4))
    NotesStore(repo).add(head, SignedReceipt(receipt, serialize_payload(receipt), UNSIGNED_TRAILER + "\n"))
    git(contributor, "push", "-q", "--no-verify", "origin", "pr", "refs/notes/gpu-proof")
    run = github.run_pull_request(6, "pr", head=head, inputs={"policy": "ci/gpu-proof.toml"})
    assert run.code == 1, run.stdout + run.stderr
    assert run.outputs["verdict"] == "unvalidated"
    assert "- `unsigned`: receipt on " in run.summary  # the base branch's policy file decided


@pytest.mark.slow
def test_a_new_branch_lists_what_the_default_branch_lacks_and_a_deleted_one_nothing(github):
    world = github.world
    dev = world.clone("dev", hook=False)
    git(dev, "switch", "-q", "-c", "topic")
    head = change_kernel(dev, "return a + b + 5", "kernel on a topic branch")
    attach_receipt(dev, world.key(ALICE))
    assert gp(dev, "push", "origin", "topic").returncode == 0
    run = github.run_push("job-new", "refs/heads/topic", ZERO, head, inputs={"path": "checkout"})
    assert run.code == 0, run.stdout + run.stderr  # run in the workspace; the repository is in checkout/
    assert run.outputs["checked"] == "1" and run.outputs["trust-ref"] == "refs/remotes/origin/topic"
    assert len(run.rows()) == 1

    git(world.remote, "branch", "-D", "topic")
    workspace = world.root / "job-deleted"
    git(world.root, "clone", "-q", str(world.remote), str(workspace))
    (world.root / "deleted-temp").mkdir()
    deleted = ActionRun(workspace, world.root / "deleted-temp")
    deleted.steps("push", push_event("refs/heads/topic", head, ZERO), GITHUB_SHA=ZERO, GITHUB_REF="refs/heads/topic")
    assert deleted.code == 0 and deleted.outputs["verdict"] == "skipped"
    assert deleted.summary.startswith("### gpu-proof: nothing to verify")


# -- docs/ci.md ------------------------------------------------------------------------------------


def doc_block(marker: str) -> str:
    """The fenced block that follows ``marker`` in docs/ci.md."""
    text = DOC.read_text(encoding="utf-8")
    at = text.index(marker)
    start = text.rindex("\n```", 0, at)
    start = text.index("\n", start + 1) + 1
    return text[start:text.index("\n```", at) + 1]


def test_the_documented_workflow_uses_the_actions_inputs():
    workflow = yaml.safe_load(doc_block("# .github/workflows/gpu-proof-action.yml"))
    steps = workflow["jobs"]["gpu-proof"]["steps"]
    uses = [step for step in steps if step.get("uses", "").startswith("OWNER/gitproof@")]
    assert len(uses) == 1
    assert set(uses[0].get("with", {})) <= set(action()["inputs"])
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in steps)
    assert workflow["permissions"] == {"contents": "read"}


@pytest.mark.slow
def test_the_gitlab_template_writes_a_junit_report(github, tmp_path):
    template = yaml.safe_load(doc_block("# .gitlab/gpu-proof.yml"))
    job = template["gpu-proof"]
    assert job["artifacts"]["reports"]["junit"] == "gpu-proof-junit.xml"
    assert job["artifacts"]["when"] == "always"
    script = [line for line in job["script"] if "pip install" not in line]  # installed here already
    world = github.world
    contributor, (head, first) = pull_request_branch(github, receipt_on_head=False)
    ci = world.root / "gitlab-ci"
    git(world.root, "clone", "-q", "--depth=1", "--no-single-branch", world.remote.as_uri(), str(ci))
    git(ci, "checkout", "-q", "--detach", head)
    gitlab = {"CI": "true", "GITLAB_CI": "true", "CI_DEFAULT_BRANCH": "main", "CI_COMMIT_SHA": head,
              "CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
              "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": head, **job.get("variables", {})}
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(script)], cwd=ci,
                            env=tool_env(**gitlab), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr  # the job fails: the head is unvalidated
    assert f"{head[:10]} unvalidated" in result.stdout  # the log shows the text verdict
    xml = junitparser.JUnitXml.fromfile(str(ci / "gpu-proof-junit.xml"))
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    (suite,) = suites
    assert (suite.tests, suite.failures) == (1, 1)
    (case,) = suite
    assert case.name == f"{head[:10]} kernel: untested tweak" and "fingerprint-changed" in case.result[0].message
    assert git(ci, "rev-parse", "--is-shallow-repository") == "false"


@pytest.mark.parametrize("path", ["../outside.toml", "ci/../../outside.toml", "/", "./"])
def test_a_policy_path_outside_the_repository_is_refused(repo, tmp_path, path):
    git_ = github_action.Git(repo, io.StringIO())
    with pytest.raises(ActionError, match="is not a path inside the repository"):
        github_action._trusted_policy(git_, "HEAD", path, tmp_path)


def test_a_policy_file_is_copied_from_the_trusted_ref_not_the_working_tree(repo, tmp_path):
    write_files(repo, {"ci/policy.toml": "require_clean = true\n"})
    commit_all(repo, "policy")
    write_files(repo, {"ci/policy.toml": "allow_unsigned = true\n"})  # uncommitted: the checkout's own
    copy = github_action._trusted_policy(github_action.Git(repo, io.StringIO()), "HEAD", "./ci/policy.toml",
                                         tmp_path)
    assert Path(copy).read_text() == "require_clean = true\n"
