"""`git gpu-proof log`: git's commit filters, --trust-ref, the JSON fields, and --audit; the real
command in real repositories with back-dated commits and real keys."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pygit2
import pytest

from gitproof import git as plumbing
from tests.helpers import git, run_tool, write_files
from tests.verify.test_audit import DAY, Team, commit_at

START = datetime.now(timezone.utc).replace(microsecond=0) - 10 * DAY


@pytest.fixture
def keys(keygen):
    return {name: keygen("ed25519", name) for name in ("alice", "bob", "mallory")}


@pytest.fixture
def team(tmp_path: Path, keys) -> Team:
    return Team(tmp_path / "team", keys, start=START)


def log_json(root: Path, *args: str) -> list[dict]:
    result = run_tool(root, "log", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["commits"]


def listed(root: Path, *args: str) -> list[str]:
    return [c["commit"] for c in log_json(root, *args)]


def rev_list(root: Path, *args: str) -> list[str]:
    return git(root, "rev-list", *args).split()


def test_the_json_adds_date_author_subject_and_the_validating_receipt(team, keys):
    signed = team.attach("HEAD", "alice", START + DAY / 2)
    team.commit({"README.md": "docs\n"}, START + DAY, "docs: more")
    newest, oldest = log_json(team.root)
    for key in ("commit", "state", "valid", "trees", "receipt", "validated_by", "reasons", "subject"):
        assert key in newest  # the existing keys stay
    assert newest["subject"] == "docs: more" and newest["state"] == "unchanged"
    assert newest["date"] == git(team.root, "log", "-1", "--format=%cI")
    assert newest["author"] == {"name": "Test Runner", "email": "runner@example.com"}
    [run] = newest["runs"]
    assert run["signer"] == "alice@example.com" and run["key"] == keys["alice"].fingerprint
    assert run["gpus"] == ["NVIDIA H100 80GB HBM3"] and run["mode"] == "local" and run["dirty"] is False
    assert run["counts"]["passed"] == 2 and run["counts"]["failed"] == 0
    assert run["note_commit"] == team.base and run["made_on"] == signed.receipt.commit
    assert run["relation"] == "ancestor" and oldest["runs"][0]["relation"] == "this commit"


def test_since_until_and_max_count_mean_what_they_mean_to_git(team):
    for n in range(4):
        team.commit({"README.md": f"{n}\n"}, START + (n + 1) * DAY, f"change {n}")
    since = (START + 2 * DAY).isoformat()
    until = (START + 3 * DAY).isoformat()
    assert listed(team.root, "--since", since) == rev_list(team.root, f"--since={since}", "HEAD")
    assert len(listed(team.root, "--since", since)) == 3
    assert listed(team.root, "--since", since, "--until", until) == rev_list(
        team.root, f"--since={since}", f"--until={until}", "HEAD")
    assert listed(team.root, "-n", "2", "HEAD~3..") == rev_list(team.root, "-n", "2", "HEAD~3..HEAD")
    assert listed(team.root, "--since", "yesterday") == []


def test_author_filters_by_pattern(team):
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bob Builder", "GIT_AUTHOR_EMAIL": "bob@example.com"}
    write_files(team.root, {"README.md": "bob\n"})
    git(team.root, "add", "-A")
    subprocess.run(["git", "commit", "-q", "-m", "by bob"], cwd=team.root, env=env, check=True)
    [bob] = log_json(team.root, "--author", "^Bob")
    assert bob["subject"] == "by bob" and bob["author"] == {"name": "Bob Builder", "email": "bob@example.com"}
    assert len(listed(team.root, "--author", "runner@")) == 1


def test_first_parent_leaves_out_the_merged_branch(team):
    git(team.root, "checkout", "-q", "-b", "topic")
    side = team.commit({"README.md": "side\n"}, START + DAY, "side")
    git(team.root, "checkout", "-q", "main")
    env = {**os.environ, "GIT_COMMITTER_DATE": (START + 2 * DAY).isoformat()}
    subprocess.run(["git", "merge", "-q", "--no-ff", "-m", "merge topic", "topic"], cwd=team.root, env=env,
                   check=True)
    assert side in listed(team.root)
    assert side not in listed(team.root, "--first-parent")
    assert listed(team.root, "--first-parent") == rev_list(team.root, "--first-parent", "HEAD")


def test_trust_ref_reads_the_signers_from_that_revision(team):
    team.attach("HEAD", "mallory", START + DAY)
    mallory = team.keys["mallory"]
    with (team.root / ".gpu-proof" / "allowed_signers").open("a") as f:  # uncommitted: the working tree only
        f.write(f'mallory@example.com namespaces="gpu-proof" {mallory.public_line}\n')
    assert log_json(team.root)[0]["state"] == "validated"
    [judged] = log_json(team.root, "--trust-ref", "main")
    assert judged["state"] == "unvalidated" and judged["reasons"][0]["code"] == "signer-not-allowed"


def test_audit_text_names_each_status(team):
    team.attach("HEAD", "alice", START + DAY / 2)
    team.commit({"README.md": "docs\n"}, START + DAY, "docs")
    team.trust(["bob"], START + 2 * DAY, "rotate: bob replaces alice")
    team.commit({"src/kernels.py": "def add(a, b):\n    return b + a\n"}, START + 3 * DAY, "kernel: swap")
    team.attach("HEAD", "bob", START + 3 * DAY + DAY / 2)
    team.commit({"src/kernels.py": "def add(a, b):\n    return a + b + 0\n"}, START + 4 * DAY, "kernel: again")
    result = run_tool(team.root, "log", "--audit")
    assert result.returncode == 0, result.stderr
    again, swap, rotate, docs, base = result.stdout.splitlines()
    assert again.split()[1] == "never-valid" and "src/kernels.py" in again
    assert swap.split()[1] == "valid" and "bob@example.com" in swap
    for line in (rotate, docs, base):
        assert line.split()[1] == "was-valid" and "alice@example.com" in line and "since removed" in line
        assert f"trusted at {team.base[:10]}" in line
    assert f"(receipt on {team.base[:10]})" in rotate and "(receipt on" not in base


def test_audit_json_carries_the_status_and_the_signer(team, keys):
    team.attach("HEAD", "alice", START + DAY / 2)
    team.trust(["bob"], START + 2 * DAY, "rotate")
    first = log_json(team.root, "--audit", "-n", "1")[0]
    assert first["status"] == "was-valid" and first["audit"]["status"] == "was-valid"
    [scope] = first["audit"]["scopes"]
    assert scope["signer"] == "alice@example.com" and scope["key"] == keys["alice"].fingerprint
    assert scope["trusted_at"] == team.base and first["state"] == "unvalidated"
    assert "date" in first and "author" in first and first["runs"] == []


def test_audit_ignores_the_age_rule(tmp_path, keys):
    team = Team(tmp_path / "old", keys, start=START - 60 * DAY)
    team.attach("HEAD", "alice", START - 59 * DAY)
    assert log_json(team.root)[0]["reasons"][0]["code"] == "too-old"
    assert log_json(team.root, "--audit")[0]["status"] == "valid"


@pytest.mark.parametrize("args, message", [
    (["--since", "garbage"], "--since 'garbage' is not a date git understands"),
    (["--until", ""], "--until '' is not a date git understands"),
    (["nothing..HEAD"], "cannot list the commits of 'nothing..HEAD'"),
    (["--", "-n"], "cannot list the commits of '-n'"),
    (["--author", "a["], "cannot list the commits of 'HEAD'"),
    (["--trust-ref", "no-such-ref"], "no-such-ref"),
    (["-n", "0"], "at least 1"),
])
@pytest.mark.parametrize("audit", [[], ["--audit"]])
def test_refusals_exit_2_with_one_clear_line(team, args, message, audit):
    result = run_tool(team.root, "log", *audit, *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_trust_ref_without_allowed_signers_is_refused(team):
    commit_at(team.root, "orphan", START + DAY)
    git(team.root, "checkout", "-q", "--orphan", "bare-trust")
    git(team.root, "rm", "-rq", "--cached", ".")
    write_files(team.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = "missing"\n'})
    git(team.root, "add", "pyproject.toml")
    commit_at(team.root, "no signers", START + DAY)
    git(team.root, "checkout", "-q", "-f", "main")
    result = run_tool(team.root, "log", "--audit", "--trust-ref", "bare-trust")
    assert result.returncode == 2 and "missing does not exist at trusted revision" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_new_options(tmp_path):
    result = run_tool(tmp_path, "log", "--help")
    assert result.returncode == 0
    for option in ("--since", "--until", "--first-parent", "--author", "--trust-ref", "--audit", "--json"):
        assert option in result.stdout


# -- the plumbing: gitproof.git ---------------------------------------------------------------


def test_rev_list_is_git_rev_list(team):
    for n in range(3):
        team.commit({"README.md": f"{n}\n"}, START + (n + 1) * DAY, f"change {n}")
    repo = pygit2.Repository(str(team.root))
    limits = plumbing.CommitFilter(limit=2, since=(START + DAY).isoformat())
    listed = plumbing.rev_list(repo, "HEAD", limits)
    assert [str(c.id) for c in listed] == rev_list(team.root, "-n", "2", f"--since={(START + DAY).isoformat()}", "HEAD")
    with pytest.raises(plumbing.GitCommandError, match="--until 'someday' is not a date git understands"):
        plumbing.rev_list(repo, "HEAD", plumbing.CommitFilter(until="someday"))
    with pytest.raises(plumbing.GitCommandError, match="bad revision '--all'"):
        plumbing.rev_list(repo, "--all", plumbing.CommitFilter())


def test_commit_date_keeps_the_committers_offset(team):
    env = {**os.environ, "GIT_COMMITTER_DATE": "2024-05-01T12:00:00+05:30", "GIT_AUTHOR_NAME": "Zoë"}
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "offset"], cwd=team.root, env=env, check=True)
    head = pygit2.Repository(str(team.root)).head.peel(pygit2.Commit)
    assert plumbing.commit_date(head) == "2024-05-01T12:00:00+05:30" == git(team.root, "log", "-1", "--format=%cI")
    assert plumbing.author_of(head) == {"name": "Zoë", "email": "runner@example.com"}
