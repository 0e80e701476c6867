"""`git gpu-proof doctor`: every check on a configured, an unconfigured and a broken repository."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gitproof.doctor import FAIL, OK, WARN, doctor
from gitproof.git import open_repository
from gitproof.notes import NOTES_REF
from tests.helpers import commit_all, git, write_files
from tests.remotes import gp


def path_without_gitproof() -> str:
    """PATH minus every directory holding a git-gpu-proof command."""
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / "git-gpu-proof").exists())


def add_foreign_hook(hooks: Path, name: str) -> Path:
    path = hooks / name
    path.write_text("#!/bin/sh\n# someone else's hook\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def configured(repo, keygen) -> Path:
    key = keygen("ed25519")
    git(repo, "config", "user.signingKey", str(key.private))
    write_files(repo, {
        ".gpu-proof/allowed_signers": f'runner@example.com namespaces="gpu-proof" {key.public_line}\n',
        "pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n',
    })
    commit_all(repo, "trust")
    assert gp(repo, "install").returncode == 0
    return repo


def test_doctor_on_a_configured_repository(configured):
    git(configured, "notes", "--ref=gpu-proof", "add", "-m", "x", "HEAD")
    result = gp(configured, "doctor")
    assert result.returncode == 0, result.stdout
    assert "0 failing, 0 warning(s)" in result.stdout
    data = json.loads(gp(configured, "doctor", "--json").stdout)
    assert data["ok"] is True and data["receipts"] == 1 and data["pending"] == 0
    assert {c["status"] for c in data["checks"]} == {"ok"}
    names = [c["name"] for c in data["checks"]]
    assert names[:2] == ["pre-push hook", "post-commit hook"]
    assert {"notes.displayRef", "notes.rewriteRef", "notes.gpu-proof.mergeStrategy", "fetch refspecs",
            "signing key", "policy", "allowed signers", "git-gpu-proof", "receipts",
            "pending receipts"} <= set(names)


def test_doctor_on_an_unconfigured_repository(repo):
    result = gp(repo, "doctor")
    assert result.returncode == 1
    assert "fix: git gpu-proof install" in result.stdout
    data = json.loads(gp(repo, "doctor", "--json").stdout)
    status = {c["name"]: c["status"] for c in data["checks"]}
    assert data["ok"] is False
    assert status["pre-push hook"] == "fail" and status["post-commit hook"] == "warn"
    assert status["notes.rewriteRef"] == "ok"  # not needed: receipts are found by their trees
    assert status["notes.displayRef"] == "ok"  # not needed: plain git log stays short
    assert status["notes.gpu-proof.mergeStrategy"] == "warn"
    assert status["signing key"] == "warn" and status["allowed signers"] == "fail"
    assert status["policy"] == "ok" and status["git-gpu-proof"] == "ok"
    assert all(c["fix"] for c in data["checks"] if c["status"] != "ok")


def test_doctor_notices_problems_after_install(configured):
    hooks = configured / ".git" / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\nexit 0\n")  # another tool took over
    add_foreign_hook(hooks, "post-commit.chained").chmod(0o644)
    write_files(configured, {"pyproject.toml": "[tool.gpu_proof]\nno_such_key = 1\n"})
    git(configured, "config", "notes.gpu-proof.mergeStrategy", "cat_sort_uniq")
    status = {c.name: c.status for c in doctor(open_repository(configured)).checks}
    assert status["pre-push hook"] == FAIL
    assert status["post-commit hook"] == WARN  # the chained hook would be skipped
    assert status["policy"] == status["allowed signers"] == FAIL
    assert status["notes.gpu-proof.mergeStrategy"] == FAIL


@pytest.mark.parametrize("key,says", [("notes.rewriteRef", "races"), ("notes.displayRef", "every receipt")])
def test_doctor_warns_about_what_an_older_install_set(configured, key, says):
    git(configured, "config", "--add", key, NOTES_REF)
    data = json.loads(gp(configured, "doctor", "--json").stdout)
    [check] = [c for c in data["checks"] if c["name"] == key]
    assert check["status"] == "warn" and says in check["message"]
    assert check["fix"] == "git gpu-proof install"
    assert gp(configured, "install").returncode == 0
    assert git(configured, "config", "--get-all", key, check=False) == ""
    data = json.loads(gp(configured, "doctor", "--json").stdout)
    assert [c["status"] for c in data["checks"] if c["name"] == key] == ["ok"]


def test_doctor_without_the_command_on_path(configured):
    result = gp(configured, "doctor", "--json")
    assert result.returncode == 0
    data = json.loads(subprocess.run(
        [sys.executable, "-m", "gitproof", "doctor", "--json"], cwd=configured, capture_output=True,
        text=True, env={**os.environ, "PATH": path_without_gitproof()}).stdout)
    assert next(c for c in data["checks"] if c["name"] == "git-gpu-proof")["status"] == "fail"


def test_doctor_outside_a_repository(tmp_path):
    result = gp(tmp_path, "doctor")
    assert result.returncode == 2 and "not inside a git repository" in result.stderr


def _gpu_check(repo: Path, **env: str) -> dict:
    data = json.loads(gp(repo, "doctor", "--json", **env).stdout)
    return next(c for c in data["checks"] if c["name"] == "gpu facts")


def test_doctor_reports_where_gpu_facts_come_from(configured, tmp_path):
    from tests import nvml_fake

    none = _gpu_check(configured)
    assert none["status"] == "ok" and "no GPU seen here: fine for verifying" in none["message"]
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, GPU-1, 550.54.15, 81559, 9.0, "
                   "00000000:18:00.0, Disabled'\n")
    smi.chmod(0o755)
    via_smi = _gpu_check(configured, GITPROOF_NVIDIA_SMI=str(smi))
    assert via_smi["status"] == "warn" and "NVIDIA H100 80GB HBM3 via nvidia-smi" in via_smi["message"]
    assert via_smi["fix"] == "pip install 'git-gpu-proof[nvml]'"
    state = nvml_fake.write(tmp_path / "nvml.json", nvml_fake.machine(nvml_fake.device()))
    env = nvml_fake.child_env(state)
    via_nvml = _gpu_check(configured, PYTHONPATH=env["PYTHONPATH"], GITPROOF_FAKE_NVML=str(state),
                          GITPROOF_NVML="on")
    assert via_nvml == {**via_nvml, "status": "ok", "message": "NVIDIA H100 80GB HBM3 via nvml"}


@pytest.mark.parametrize("refspec,status", [
    ("+refs/notes/*:refs/notes/*", FAIL),
    ("+refs/notes/gpu-proof:refs/notes/gpu-proof", FAIL),
    ("refs/notes/*:refs/notes/*", OK),
    ("+refs/notes/*:refs/remotes/origin/notes/*", OK),
])
def test_a_forced_fetch_into_the_notes_ref_fails(repo, tmp_path, refspec, status):
    git(tmp_path, "init", "-q", "--bare", str(tmp_path / "remote.git"))
    git(repo, "remote", "add", "origin", str(tmp_path / "remote.git"))
    git(repo, "config", "--add", "remote.origin.fetch", refspec)
    check = next(c for c in doctor(open_repository(repo)).checks if c.name == "fetch refspecs")
    assert check.status == status
    assert (check.fix == f"git config --fixed-value --unset remote.origin.fetch '{refspec}'") is (status == FAIL)


def test_the_report_counts_failures_and_warnings(repo):
    report = doctor(open_repository(repo))
    assert report.failing == sum(c.status == FAIL for c in report.checks) > 0
    assert report.warnings == sum(c.status == WARN for c in report.checks) > 0
    assert report.ok is False and report.to_json()["ok"] is False
    statuses = [c["status"] for c in json.loads(gp(repo, "doctor", "--json").stdout)["checks"]]
    summary = f"{statuses.count(FAIL)} failing, {statuses.count(WARN)} warning(s)"
    assert gp(repo, "doctor").stdout.splitlines()[-1] == summary
