"""Each verification policy both accepts and rejects: real repos, real keys, real signatures."""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gitproof.receipt import TestResult
from tests.helpers import commit_all, git, write_files
from tests.receipts import POLICY, Project
from tests.remotes import gp

PASS = TestResult("tests/test_k.py::test_a", "passed", 0.1)
SKIP = TestResult("tests/test_k.py::test_b", "skipped", 0.0)
XFAIL = TestResult("tests/test_k.py::test_c", "xfailed", 0.0)
XPASS = TestResult("tests/test_k.py::test_d", "xpassed", 0.0)


@pytest.fixture
def project(repo: Path, keygen) -> Project:
    return Project(repo, keygen("ed25519"))


def codes(verdict) -> list[str]:
    return [r.code for r in verdict.reasons]


def test_skips_are_rejected_by_default_and_accepted_when_allowed(project):
    project.attach(tests=[PASS, SKIP])
    assert codes(project.verify()) == ["skipped-tests"]
    allowed = project.verify(policy=replace(POLICY, allow_skipped=True))
    assert allowed.ok and any("skipped" in w for w in allowed.receipt.warnings)


def test_expected_skips_must_match_exactly(project):
    project.attach(tests=[PASS, SKIP])
    exact = replace(POLICY, expected_skips=[SKIP.nodeid])
    assert project.verify(policy=exact).ok
    assert codes(project.verify(policy=replace(POLICY, expected_skips=[]))) == ["unexpected-skip"]
    stale = replace(POLICY, expected_skips=[SKIP.nodeid, PASS.nodeid])
    assert codes(project.verify(policy=stale)) == ["stale-skip-baseline"]
    gone = replace(POLICY, expected_skips=[SKIP.nodeid, "tests/test_k.py::test_removed"])
    assert codes(project.verify(policy=gone)) == ["stale-skip-baseline"]


def test_xfail_is_fine_nonstrict_xpass_counts_as_passed(project):
    project.attach(tests=[PASS, XFAIL, XPASS])
    assert project.verify().ok


def test_required_tests_manifest(project):
    project.attach(tests=[PASS])
    assert project.verify(required_tests=[PASS.nodeid]).ok
    verdict = project.verify(required_tests=[PASS.nodeid, "tests/test_k.py::test_other"])
    assert codes(verdict) == ["required-tests"] and "not in the run" in verdict.reasons[0].message
    extra = project.verify(required_tests=["tests/test_k.py::test_other"])
    assert "not in the required manifest" in extra.reasons[0].message


def _times(days_ago: float = 0, minutes_ahead: float = 0):
    start = datetime.now(timezone.utc) - timedelta(days=days_ago) + timedelta(minutes=minutes_ahead)
    return {"started": start, "finished": start + timedelta(seconds=5)}


def test_max_age(project):
    old = {**os.environ, "GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}
    subprocess.run(["git", "commit", "-q", "--amend", "--no-edit"], cwd=project.root, env=old, check=True)
    project.attach(**_times(days_ago=40))
    assert codes(project.verify()) == ["too-old"]
    assert project.verify(policy=replace(POLICY, max_age_days=60)).ok
    assert codes(project.verify(policy=replace(POLICY, max_age_days=0))) == ["too-old"]


def test_max_age_zero_accepts_today(project):
    now = datetime.now(timezone.utc)
    finished = max(now - timedelta(seconds=1), now.replace(hour=0, minute=0, second=0, microsecond=0))
    project.attach(started=finished, finished=finished)  # today, whatever the hour (midnight included)
    assert project.verify(policy=replace(POLICY, max_age_days=0)).ok


def test_future_receipts_are_rejected_beyond_clock_skew(project):
    project.attach(**_times(minutes_ahead=30))
    assert codes(project.verify()) == ["future-receipt"]
    project.attach(**_times(minutes_ahead=2))
    assert project.verify().ok


def test_run_that_started_before_its_commit_existed(project):
    project.attach(**_times(days_ago=1))
    assert codes(project.verify()) == ["before-commit"]


def test_signers_and_key_fingerprints_narrow_the_trust_root(project, keygen):
    project.attach()
    assert project.verify(policy=replace(POLICY, signers=["*@example.com"])).ok
    assert codes(project.verify(policy=replace(POLICY, signers=["bob@example.com"]))) == ["signer-not-allowed"]
    mine = project.key.fingerprint
    assert project.verify(policy=replace(POLICY, key_fingerprints=[mine])).ok
    both = replace(POLICY, signers=["alice@example.com"], key_fingerprints=["SHA256:someoneelse"])
    assert codes(project.verify(policy=both)) == ["signer-not-allowed"]


def test_mode_gpu_and_clean_requirements(project):
    project.attach(gpus=[], dirty_outside=True)
    assert project.verify().ok
    assert codes(project.verify(policy=replace(POLICY, require_mode="ci-gpu"))) == ["wrong-mode"]
    assert codes(project.verify(policy=replace(POLICY, require_gpu=True))) == ["no-gpu"]
    assert codes(project.verify(policy=replace(POLICY, require_clean=True))) == ["dirty"]
    project.attach(mode="ci-gpu")
    assert project.verify(policy=replace(POLICY, require_mode="ci-gpu", require_gpu=True)).ok


def _attach_unsigned(project: Project) -> None:
    from gitproof.notes import NotesStore
    from gitproof.receipt import UNSIGNED_TRAILER, SignedReceipt, serialize_payload
    from tests.factories import make_receipt

    trees = {p: git(project.root, "rev-parse", f"HEAD:{p}") for p in ("src", "tests")}
    receipt = make_receipt(key_fingerprint="unsigned", trees=trees, signer=project.principal,
                           commit=git(project.root, "rev-parse", "HEAD"), **_times())
    signed = SignedReceipt(receipt, serialize_payload(receipt), UNSIGNED_TRAILER + "\n")
    NotesStore(project.repo).add(str(project.repo.head.target), signed)


def test_unsigned_receipts_only_with_allow_unsigned_and_never_restricted(project):
    _attach_unsigned(project)
    assert codes(project.verify()) == ["unsigned"]
    accepted = project.verify(policy=replace(POLICY, allow_unsigned=True))
    assert accepted.ok and any("UNSIGNED" in w for w in accepted.receipt.warnings)
    from gitproof.policy import PolicyError

    with pytest.raises(PolicyError, match="never accepts unsigned"):
        POLICY.overridden({"signer_mode": "restricted", "signers": ["alice@example.com"],
                           "allow_unsigned": True}, "flags")


# -- the same controls from the command line ---------------------------------------

@pytest.fixture
def cli_project(project: Project) -> Project:
    write_files(project.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    commit_all(project.root, "policy")
    return project


def test_verify_flags_accept_and_reject(cli_project, tmp_path):
    cli_project.attach(tests=[PASS, SKIP], gpus=[])
    root = cli_project.root
    assert gp(root, "verify").returncode == 1
    allowed = gp(root, "verify", "--allow-skipped")
    assert allowed.returncode == 0 and "warning: accepted 1 skipped test" in allowed.stderr
    baseline = tmp_path / "skips.txt"
    baseline.write_text(SKIP.nodeid + "\n")
    assert gp(root, "verify", "--expected-skips", str(baseline)).returncode == 0
    both = gp(root, "verify", "--allow-skipped", "--expected-skips", str(baseline))
    assert both.returncode == 2 and "exclude each other" in both.stderr
    assert gp(root, "verify", "--allow-skipped", "--require-gpu").returncode == 1
    unbound = gp(root, "verify", "--allow-skipped", "--require-mode", "ci-gpu")
    assert unbound.returncode == 2 and "needs [tool.gpu_proof.modes.ci-gpu]" in unbound.stderr
    assert gp(root, "verify", "--allow-skipped", "--max-age-days", "-1").returncode == 2
    bad_mode = gp(root, "verify", "--require-mode", "cloud")
    assert bad_mode.returncode == 2 and "require_mode must be one of" in bad_mode.stderr


def test_precedence_flags_over_policy_file_over_pyproject(cli_project, tmp_path):
    cli_project.attach(tests=[PASS, SKIP])
    root = cli_project.root
    write_files(root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
                                         'allow_skipped = true\n'})
    assert gp(root, "verify").returncode == 0
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"expected_skips": []}))
    assert gp(root, "verify", "--policy", str(strict)).returncode == 1
    assert gp(root, "verify", "--policy", str(strict), "--allow-skipped").returncode == 0
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"allow_skiped": True}))
    result = gp(root, "verify", "--policy", str(typo))
    assert result.returncode == 2 and "unknown policy key 'allow_skiped'" in result.stderr


def test_the_hook_applies_the_same_policy(cli_project):
    cli_project.attach(tests=[PASS, SKIP])
    sha = git(cli_project.root, "rev-parse", "HEAD")
    line = f"refs/heads/main {sha} refs/heads/main {'0' * 40}\n"
    refused = gp(cli_project.root, "hook", "pre-push", "nowhere", input=line)
    assert refused.returncode == 1 and "skipped" in refused.stderr


# -- modes are bound to keys -------------------------------------------------------------------

def test_a_mode_claim_counts_only_from_the_keys_bound_to_it(project, keygen):
    from gitproof.policy import ModeBinding

    bound = replace(POLICY, require_mode="ci-gpu",
                    modes={"ci-gpu": ModeBinding("ci-gpu", key_fingerprints=[project.key.fingerprint])})
    project.attach(mode="ci-gpu")
    assert project.verify(policy=bound).ok
    by_name = replace(POLICY, modes={"ci-gpu": ModeBinding("ci-gpu", signers=["ci-*@example.org"])})
    verdict = project.verify(policy=by_name)  # alice claims ci-gpu; only ci-* may, require_mode or not
    assert codes(verdict) == ["mode-not-allowed"]
    assert "may not claim mode ci-gpu (modes.ci-gpu.signers)" in verdict.reasons[0].message


def test_mode_bindings_in_pyproject_are_checked_on_the_command_line(cli_project):
    root = cli_project.root
    cli_project.attach(tests=[PASS], mode="ci-gpu")
    base = '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\nrequire_mode = "ci-gpu"\n'
    write_files(root, {"pyproject.toml": base + '[tool.gpu_proof.modes.ci-gpu]\nsigners = ["ci@example.org"]\n'})
    refused = gp(root, "verify", "--json")
    assert refused.returncode == 1
    assert [r["code"] for r in json.loads(refused.stdout)["results"][0]["reasons"]] == ["mode-not-allowed"]
    write_files(root, {"pyproject.toml": base + '[tool.gpu_proof.modes.ci-gpu]\nsigners = ["alice@example.com"]\n'})
    assert gp(root, "verify").returncode == 0


@pytest.mark.parametrize("table, says", [
    ('require_mode = "ci-gpu"\n', "require_mode = 'ci-gpu' needs [tool.gpu_proof.modes.ci-gpu]"),
    ('[tool.gpu_proof.modes.cloud]\nsigners = ["x"]\n', "unknown mode 'cloud'"),
    ('[tool.gpu_proof.modes.ci-gpu]\n', "needs signers = [...] and/or key_fingerprints"),
    ('[tool.gpu_proof.modes.ci-gpu]\nsigners = []\n', "needs signers = [...] and/or key_fingerprints"),
    ('[tool.gpu_proof.modes.ci-gpu]\nkeys = ["x"]\n', "unknown key 'keys' in modes.ci-gpu"),
    ('[tool.gpu_proof.modes.ci-gpu]\nkey_fingerprints = ["MD5:x"]\n', "SHA256:"),
    ('[tool.gpu_proof.modes.ci-gpu]\nsigners = "ci@example.org"\n', "needs signers = [...]"),
])
def test_malformed_mode_bindings_are_policy_errors(table, says):
    from gitproof.policy import PolicyError, policy_from_toml

    with pytest.raises(PolicyError, match=re.escape(says)):
        policy_from_toml("[tool.gpu_proof]\n" + table, "pyproject.toml")


def test_a_pull_request_cannot_add_its_own_expected_skips_under_trust_ref(cli_project):
    root = cli_project.root
    cli_project.attach(tests=[PASS, SKIP])
    base = '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
    write_files(root, {"pyproject.toml": base})
    commit_all(root, "main: no skips allowed")
    git(root, "branch", "protected")
    write_files(root, {"pyproject.toml": base + f'expected_skips = ["{SKIP.nodeid}"]\n'})
    commit_all(root, "pull request: this skip is fine, trust me")
    cli_project.attach(tests=[PASS, SKIP])
    assert gp(root, "verify").returncode == 0  # the pull request's own policy
    trusted = gp(root, "verify", "--trust-ref", "refs/heads/protected", "--json")
    assert trusted.returncode == 1
    assert "skipped-tests" in [r["code"] for r in json.loads(trusted.stdout)["results"][0]["reasons"]]
