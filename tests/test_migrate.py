"""`git gpu-proof migrate`: pytest-gpu-proof's configuration rewritten into gitproof's.

The planning function on text, and the real command in real repositories,
fetching keys from a real HTTP server standing in for GitHub.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gitproof.migrate import DEFAULT_SIGNERS_FILE, MigrateError, plan
from gitproof.policy import policy_from_toml
from tests.helpers import commit_all, write_files, init_repo

BIN = str(Path(sys.executable).parent)

PEER = """\
[project]
name = "demo"

# receipts for the GPU tests
[tool.gpu_proof]
mode = "ci-gpu"
output = "gpu-proof.json"
fingerprint_paths = "src,tests"   # the code under test
fingerprint_extra_paths = ["generated/table.cuh"]
fingerprint_excluded_paths = ["gpu-proof.json"]
signing_backend = "ed25519"
record_gpu_uuid = false
shard_name = "kernels"
shard_fingerprint_paths = "src/kernels,tests/kernels"
shard_fingerprint_extra_paths = ["generated"]
best_effort = false
max_age_days = 14

[tool.other]
keep = "me"
"""


def table(text: str) -> dict:
    return tomllib.loads(text)["tool"]["gpu_proof"]


def test_plan_converts_every_peer_key():
    migration = plan(PEER, "pyproject.toml")
    new = table(migration.new_text)
    assert new == {"mode": "ci-gpu", "fingerprint_paths": ["src", "tests"], "include_gpu_uuid": False,
                   "max_age_days": 14, "shards": {"kernels": {"paths": ["src/kernels", "tests/kernels"]}}}
    removed = {c.key for c in migration.no_equivalent}
    assert removed == {"output", "fingerprint_extra_paths", "fingerprint_excluded_paths", "signing_backend",
                       "shard_fingerprint_extra_paths", "best_effort"}
    assert all(c.detail for c in migration.changes)
    policy_from_toml(migration.new_text, "migrated")  # gitproof reads the result without notes
    assert policy_from_toml(migration.new_text, "migrated").notes == ()


def test_plan_keeps_comments_and_other_tables():
    new_text = plan(PEER, "pyproject.toml").new_text
    assert "# receipts for the GPU tests" in new_text and "# the code under test" in new_text
    assert tomllib.loads(new_text)["tool"]["other"] == {"keep": "me"}
    assert new_text.startswith('[project]\nname = "demo"\n')


def test_plan_twice_changes_nothing_more():
    once = plan(PEER, "pyproject.toml").new_text
    again = plan(once, "pyproject.toml")
    assert again.new_text == once and not again.changed


def test_a_missing_fingerprint_paths_becomes_the_peers_whole_repository_default():
    migration = plan('[tool.gpu_proof]\noutput = "gpu-proof.json"\n', "p")
    assert table(migration.new_text)["fingerprint_paths"] == ["."]
    assert [c.action for c in migration.changes if c.key == "fingerprint_paths"] == ["added"]


@pytest.mark.parametrize("text", [
    '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\nfingerprint_paths = ["src"]\n',
])
def test_nothing_to_migrate_leaves_the_text_alone(text):
    migration = plan(text, "p")
    assert not migration.changed and migration.changes == []


@pytest.mark.parametrize("text, message", [
    ('[tool.gpu_proof\n', "not valid TOML"),
    ('[tool]\ngpu_proof = 3\n', "must be a table"),
    ('[tool.gpu_proof]\nrecord_gpu_uuid = false\ninclude_gpu_uuid = true\n', "disagree"),
    ('[tool.gpu_proof]\ngithub_username = "a"\nallowed_signers = ["a", "b"]\n', "move the names to signers"),
    ('[tool.gpu_proof]\nshard_name = "a"\n[tool.gpu_proof.shards.a]\npaths = ["src"]\n', "already defined"),
    ('[tool.gpu_proof]\nshard_name = 3\n', "shard_name must be a non-empty string"),
])
def test_plan_refuses_what_it_cannot_convert(text, message):
    with pytest.raises(MigrateError, match=message):
        plan(text, "p")


def test_github_username_gets_an_allowed_signers_file():
    migration = plan('[tool.gpu_proof]\ngithub_username = "alice"\n', "p")
    assert table(migration.new_text)["allowed_signers"] == DEFAULT_SIGNERS_FILE
    assert (migration.github_user, migration.signers_file) == ("alice", DEFAULT_SIGNERS_FILE)
    configured = plan('[tool.gpu_proof]\ngithub_username = "alice"\n', "p", signers_configured=True)
    assert "allowed_signers" not in table(configured.new_text) and configured.signers_file is None


# -- the command ---------------------------------------------------------------------------

def gp(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["git", "gpu-proof", "migrate", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    init_repo(root, email="a@example.com", name="A")
    write_files(root, {"pyproject.toml": PEER,
                       "src/a.py": "A = 1\n", "gpu-proof.json": "{}\n"})
    commit_all(root, "peer project")
    return root


def with_user(root: Path, extra: str = "") -> None:
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(text.replace("[tool.gpu_proof]\n",
                                                      f'[tool.gpu_proof]\ngithub_username = "alice"\n{extra}'))


def test_dry_run_writes_nothing(project):
    with_user(project)
    before = (project / "pyproject.toml").read_bytes()
    result = gp(project, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run, nothing written" in result.stdout and "would add alice's public keys" in result.stdout
    assert (project / "pyproject.toml").read_bytes() == before
    assert not (project / DEFAULT_SIGNERS_FILE).exists()


def test_migrate_writes_the_policy_and_the_signers(project, server, keygen):
    alice = keygen("ed25519")
    server.publish("alice", alice)
    with_user(project, f'github_url = "{server.url}"\n')
    result = gp(project, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["written"] and report["signers"]["principal"] == "alice"
    assert report["leftover_files"] == ["gpu-proof.json"]
    assert {c["key"] for c in report["no_equivalent"]} >= {"output", "best_effort"}
    signers = (project / DEFAULT_SIGNERS_FILE).read_text()
    assert signers == f'alice namespaces="gpu-proof" {alice.public_line.rsplit(" ", 1)[0]}\n'
    policy = policy_from_toml((project / "pyproject.toml").read_text(), "migrated")
    assert policy.allowed_signers == DEFAULT_SIGNERS_FILE and policy.personal.principal == "alice"
    assert server.requests == ["/alice.keys"]


def test_keys_that_cannot_be_read_leave_everything_unwritten(project, tmp_path):
    with_user(project)
    before = (project / "pyproject.toml").read_bytes()
    result = gp(project, "--from", str(tmp_path / "missing.keys"))
    assert result.returncode == 2 and "cannot read keys file" in result.stderr
    assert (project / "pyproject.toml").read_bytes() == before
    assert not (project / DEFAULT_SIGNERS_FILE).exists()


def test_a_file_it_cannot_convert_is_an_error_naming_it(project):
    (project / "pyproject.toml").write_text("[tool.gpu_proof\n")
    result = gp(project)
    assert result.returncode == 2 and "not valid TOML" in result.stderr and "Traceback" not in result.stderr


def test_no_pyproject_is_an_error(project):
    (project / "pyproject.toml").unlink()
    result = gp(project)
    assert result.returncode == 2 and "pyproject.toml" in result.stderr


def test_nothing_to_migrate_says_so(project):
    (project / "pyproject.toml").write_text('[tool.gpu_proof]\nfingerprint_paths = ["src"]\n'
                                            'allowed_signers = "s"\n')
    result = gp(project)
    assert result.returncode == 0 and "needs no migration" in result.stdout


@pytest.mark.parametrize("text", [
    '[tool]\ngpu_proof.shard_name = "a"\ngpu_proof.shard_fingerprint_paths = "src,tests"\n',
    '[tool]\ngpu_proof = {output = "x", shard_name = "a"}\n',
])
def test_layouts_it_cannot_rewrite_faithfully_are_refused(text):
    with pytest.raises(MigrateError, match="plain \\[tool.gpu_proof\\] section"):
        plan(text, "p")


def test_no_table_gets_the_peers_defaults():
    migration = plan('[project]\nname = "x"\n', "p")
    assert table(migration.new_text) == {"fingerprint_paths": ["."]}


def test_an_allowed_signers_path_outside_the_repository_is_refused(project, tmp_path):
    with_user(project, f'allowed_signers = "{tmp_path / "elsewhere"}"\n')
    result = gp(project, "--from", str(tmp_path / "k.keys"))
    assert result.returncode == 2 and "not a path inside the repository" in result.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_second_migrate_says_nothing_changed(project, keygen, tmp_path):
    key = keygen("ed25519")
    with_user(project)
    assert gp(project, "--from", str(key.public)).returncode == 0
    again = gp(project, "--from", str(key.public))
    assert again.returncode == 0 and "already converted; nothing in it changed" in again.stdout
    assert "0 key(s) of alice added" in again.stdout
