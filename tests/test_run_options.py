"""`run` options: --fail-on-skip, --unsigned, --key-env, CI context, pytest-xdist, --shard.

Real pytest sessions (pytester, in-process) and the real `git gpu-proof`
command (subprocess), in real repositories with real ssh-keygen keys.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from gitproof import ci_context
from gitproof.notes import NOTES_REF, NotesStore
from gitproof.pending import PendingStore
from tests.helpers import Key, commit_all, generate_key, git, write_files, init_repo

pytest_plugins = ["pytester"]

BIN = str(Path(sys.executable).parent)
KEY_VAR = "GITPROOF_TEST_SIGNING_KEY"

GPU_MODULE = """
import pytest

@pytest.mark.gpu_proof
def test_ok(): pass

@pytest.mark.gpu_proof
def test_also_ok(): pass

def test_cpu_only(): pass
"""

SKIPPING_MODULE = """
import pytest

@pytest.mark.gpu_proof
def test_ok(): pass

@pytest.mark.gpu_proof
def test_no_device(): pytest.skip("needs a device")
"""


# -- fixtures and helpers -------------------------------------------------------

@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A committed repository with src/ and tests/, signing with a real key."""
    root = pytester.path
    init_repo(root, key_dir=root / ".git" / "test-keys")
    write_files(root, {
        ".gitignore": "__pycache__/\n.pytest_cache/\n",
        "src/kernel.py": "X = 1\n",
        "tests/test_gpu.py": GPU_MODULE,
    })
    commit_all(root, "initial")
    return root


def entries(root: Path, rev: str = "HEAD"):
    repo = pygit2.Repository(str(root))
    return NotesStore(repo).entries(str(repo.revparse_single(rev).peel(pygit2.Commit).id))


def only_receipt(root: Path):
    [entry] = entries(root)
    assert entry.signed is not None, entry.error
    return entry.signed


def note_text(root: Path) -> str:
    return git(root, "notes", "--ref=gpu-proof", "show", "HEAD")


def notes_ref(root: Path) -> str:
    return git(root, "rev-parse", "-q", "--verify", NOTES_REF, check=False)


def outcomes(signed) -> dict[str, str]:
    return {t.nodeid: t.outcome for t in signed.receipt.tests}


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def gp(cwd: Path, *args: str, env: dict[str, str] | None = None,
       timeout: int = 180) -> subprocess.CompletedProcess:
    full = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], **(env or {})}
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def verify_with_ssh_keygen(signed, key: Key, principal: str, tmp: Path) -> None:
    signers = tmp / "allowed_signers_check"
    signers.write_text(f'{principal} namespaces="gpu-proof" {key.public_line}\n')
    sig = tmp / "receipt.sig"
    sig.write_text(signed.signature)
    result = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", principal,
                             "-n", "gpu-proof", "-s", str(sig)], input=signed.payload, capture_output=True)
    assert result.returncode == 0, result.stderr


# -- --fail-on-skip ---------------------------------------------------------------

def test_a_skip_passes_without_fail_on_skip(pytester, project):
    (project / "tests" / "test_gpu.py").write_text(SKIPPING_MODULE)
    commit_all(project, "a skipping test")
    assert pytester.runpytest("--gpu-proof").ret == 0
    assert only_receipt(project).receipt.verdict == "passed"


@pytest.mark.parametrize("how", ["option", "pyproject"])
def test_fail_on_skip_fails_the_session_and_records_a_failed_receipt(pytester, project, how):
    (project / "tests" / "test_gpu.py").write_text(SKIPPING_MODULE)
    args = ["--gpu-proof"]
    if how == "option":
        args.append("--gpu-proof-fail-on-skip")
    else:
        (project / "pyproject.toml").write_text("[tool.gpu_proof]\nfail_on_skip = true\n")
    commit_all(project, "a skipping test")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*receipt failed (1 passed, 1 skipped)*",
        "*fail-on-skip: 1 GPU test(s) skipped, so the session fails*",
        "*tests/test_gpu.py::test_no_device: needs a device*",
    ])
    receipt = only_receipt(project).receipt
    assert receipt.verdict == "failed" and receipt.exit_status == 1
    assert outcomes(only_receipt(project))["tests/test_gpu.py::test_no_device"] == "skipped"


def test_fail_on_skip_without_skips_changes_nothing(pytester, project):
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-fail-on-skip")
    assert result.ret == 0
    assert "fail-on-skip" not in result.stdout.str()
    assert only_receipt(project).receipt.verdict == "passed"


def test_fail_on_skip_counts_xfail_as_no_skip(pytester, project):
    (project / "tests" / "test_gpu.py").write_text(
        "import pytest\n\n@pytest.mark.gpu_proof\ndef test_ok(): pass\n\n"
        "@pytest.mark.gpu_proof\n@pytest.mark.xfail(reason='known')\ndef test_known(): assert False\n")
    commit_all(project, "xfail")
    assert pytester.runpytest("--gpu-proof", "--gpu-proof-fail-on-skip").ret == 0


def test_fail_on_skip_catches_a_module_skipped_while_collecting(pytester, project):
    write_files(project, {"tests/test_cupy.py": (
        "import pytest\n\ncupy = pytest.importorskip('gitproof_no_such_module_xyz')\n\n"
        "@pytest.mark.gpu_proof\ndef test_on_device(): pass\n")})
    commit_all(project, "module that needs a missing package")
    assert pytester.runpytest("--gpu-proof").ret == 0  # the module's tests silently vanish
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-fail-on-skip")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*tests/test_cupy.py: skipped while collecting*gitproof_no_such_module_xyz*"])
    assert entries(project)[-1].signed.receipt.verdict == "failed"


def test_fail_on_skip_fails_a_plain_run_on_a_skipped_gpu_required_test(pytester, monkeypatch):
    from gitproof import gpu

    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(pytester.path / "absent-nvidia-smi"))
    gpu.gpu_visible.cache_clear()
    pytester.makepyfile(test_x=(
        "import pytest\n\n@pytest.mark.gpu_required\ndef test_needs_gpu(): pass\n\n"
        "def test_cpu(): pass\n\ndef test_optional(): pytest.skip('not today')\n"))
    try:
        plain = pytester.runpytest()
        strict = pytester.runpytest("--gpu-proof-fail-on-skip")
    finally:
        gpu.gpu_visible.cache_clear()
    assert plain.ret == 0
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*fail-on-skip: 1 GPU test(s) skipped*",
                                 "*test_x.py::test_needs_gpu: gpu_required: no GPU visible*"])
    assert "test_optional" not in strict.stdout.str().split("fail-on-skip")[1]  # not a GPU test


def test_cli_fail_on_skip_leaves_no_passing_receipt(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": SKIPPING_MODULE})
    commit_all(cli_project, "skip")
    run = gp(cli_project, "run", "--fail-on-skip")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "fail-on-skip" in run.stdout and "test_no_device: needs a device" in run.stdout
    assert gp(cli_project, "verify").returncode == 1
    assert "verdict: failed" in note_text(cli_project)


# -- --unsigned -------------------------------------------------------------------

def test_unsigned_dry_run_needs_no_key_and_says_so_loudly(pytester, project):
    git(project, "config", "--unset", "user.signingKey")
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-unsigned")
    assert result.ret == 0
    result.stdout.fnmatch_lines([
        "*UNSIGNED dry run*",  # in the header, before any test
        "*receipt passed (2 passed) UNSIGNED (principal runner@example.com) -> note on*",
        "*NOTE: UNSIGNED dry run*verify*rejects it unless --allow-unsigned*",
    ])
    signed = only_receipt(project)
    assert signed.unsigned and signed.signature == "-----UNSIGNED RECEIPT-----\n"
    assert signed.receipt.key_fingerprint == "unsigned"
    assert signed.receipt.signer == "runner@example.com"
    assert note_text(project).endswith("-----UNSIGNED RECEIPT-----")


def test_unsigned_takes_the_principal_option(pytester, project):
    assert pytester.runpytest("--gpu-proof", "--gpu-proof-unsigned",
                              "--gpu-proof-principal=dry@example.com").ret == 0
    assert only_receipt(project).receipt.signer == "dry@example.com"


def test_unsigned_principal_is_unknown_without_user_email(cli_project, tmp_path):
    git(cli_project, "config", "--unset", "user.signingKey")
    assert git(cli_project, "config", "--local", "user.email", check=False) == ""
    home = tmp_path / "empty-home"  # no global user.email either
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1"}
    assert gp(cli_project, "run", env=env).returncode == pytest.ExitCode.USAGE_ERROR  # signed: refused
    run = gp(cli_project, "run", "--unsigned", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "UNSIGNED (principal unknown)" in run.stdout
    assert "signer: unknown unsigned" in note_text(cli_project)


def test_cli_unsigned_receipt_is_rejected_unless_allowed(cli_project):
    run = gp(cli_project, "run", "--unsigned")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "UNSIGNED dry run" in run.stdout and "--allow-unsigned" in run.stdout
    rejected = gp(cli_project, "verify")
    assert rejected.returncode == 1 and "unsigned" in rejected.stdout
    assert gp(cli_project, "verify", "--allow-unsigned").returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--gpu-proof-unsigned", "--gpu-proof-key=/nonexistent"], "--unsigned records no signature"),
    (["--gpu-proof-unsigned", f"--gpu-proof-key-env={KEY_VAR}"], "--unsigned records no signature"),
    ([f"--gpu-proof-key-env={KEY_VAR}", "--gpu-proof-key=/nonexistent"], "--key and --key-env both"),
])
def test_contradictory_key_options_are_refused_before_running(pytester, project, args, message):
    result = pytester.runpytest("--gpu-proof", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*Nothing recorded*"])
    assert "passed" not in result.stdout.str() and notes_ref(project) == ""


# -- --key-env ---------------------------------------------------------------------

def slow_after_the_probe(probed: Path, started: Path) -> str:
    """Shell lines for a gpg.ssh.program: the probe `run` signs before the tests goes
    through at once; the receipt's signing, after them, says it started and takes 30 s."""
    return f"if [ -e {probed} ]; then touch {started}; sleep 30; else touch {probed}; fi"


def logging_signer(path: Path, log: Path, extra: str = "") -> Path:
    """A gpg.ssh.program that notes the key file it is given (mode, its directory's mode)."""
    return script(path, f"""
prev=""
for a in "$@"; do
  if [ "$prev" = "-f" ]; then
    echo "$1 $a $(stat -c %a "$a") $(stat -c %a "$(dirname "$a")")" >> {log}
  fi
  prev="$a"
done
{extra}
exec ssh-keygen "$@"
""")


@pytest.mark.parametrize("key_type, value_form", [
    ("ed25519", "no-final-newline"),
    ("ed25519", "crlf"),
    ("rsa-pem", "as-is"),  # the older PEM format: public half derived and written by ssh-keygen
])
def test_key_from_environment_signs_and_leaves_no_trace(pytester, project, monkeypatch,
                                                        key_type, value_form):
    keys = project / ".git" / "ci-keys"
    if key_type == "rsa-pem":
        keys.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", "rsa", "-b", "2048", "-m", "PEM",
                        "-f", str(keys / "rsa")], check=True, capture_output=True)
        key = Key(keys / "rsa", keys / "rsa.pub")
        assert key.private.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    else:
        key = generate_key(keys, key_type)
    secret = key.private.read_text()
    value = {"no-final-newline": secret.rstrip("\n"), "crlf": secret.replace("\n", "\r\n"),
             "as-is": secret}[value_form]
    monkeypatch.setenv(KEY_VAR, value)
    git(project, "config", "--unset", "user.signingKey")  # the environment is the only key
    log = project / ".git" / "signer.log"
    git(project, "config", "gpg.ssh.program", str(logging_signer(project / ".git" / "signer", log)))
    write_files(project, {"tests/test_env.py": (
        "import os, pytest\n\n@pytest.mark.gpu_proof\ndef test_key_is_hidden_from_tests():\n"
        f"    assert {KEY_VAR!r} not in os.environ\n")})
    commit_all(project, "a test that looks for the key")

    result = pytester.runpytest("--gpu-proof", f"--gpu-proof-key-env={KEY_VAR}")
    assert result.ret == 0, result.stdout.str()
    assert os.environ[KEY_VAR] == value  # given back after the session

    signed = only_receipt(project)
    assert signed.receipt.key_fingerprint == key.fingerprint
    verify_with_ssh_keygen(signed, key, "runner@example.com", project / ".git")
    assert f"--gpu-proof-key-env={KEY_VAR}" in signed.receipt.pytest_args  # the name, not the value
    body = [line for line in secret.splitlines() if line and not line.startswith("-----")]
    text = note_text(project)
    output = result.stdout.str() + result.stderr.str()
    assert not any(line in text or line in output for line in body)

    sign_calls = [line.split() for line in log.read_text().splitlines() if line.startswith("-Y ")]
    assert len(sign_calls) == 1
    _, key_file, file_mode, dir_mode = sign_calls[0]
    assert (file_mode, dir_mode) == ("600", "700")
    assert not Path(key_file).exists() and not Path(key_file).parent.exists()
    derive_calls = [line.split() for line in log.read_text().splitlines() if line.startswith("-y ")]
    assert len(derive_calls) == (1 if key_type == "rsa-pem" else 0)  # else derived in memory
    for _, path, file_mode, dir_mode in derive_calls:  # its own private directory, gone too
        assert (file_mode, dir_mode) == ("600", "700") and not Path(path).parent.exists()


def _encrypted_key(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-N", "a passphrase", "-t", "ed25519",
                    "-f", str(directory / "locked")], check=True, capture_output=True)
    return (directory / "locked").read_text()


@pytest.mark.parametrize("value, message", [
    (None, f"environment variable {KEY_VAR} is not set"),
    ("", f"environment variable {KEY_VAR} is empty"),
    ("  \n", f"environment variable {KEY_VAR} is empty"),
    ("~/.ssh/id_ed25519", f"{KEY_VAR} does not hold a private key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0g test", f"{KEY_VAR} does not hold a private key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n",
     f"could not read the private key in ${KEY_VAR}"),
    ("encrypted", "protected by a passphrase"),
])
def test_unusable_key_variable_is_refused_before_any_test_runs(pytester, project, monkeypatch,
                                                               value, message):
    if value is None:
        monkeypatch.delenv(KEY_VAR, raising=False)
    else:
        monkeypatch.setenv(KEY_VAR, _encrypted_key(project / ".git" / "k") if value == "encrypted" else value)
    result = pytester.runpytest("--gpu-proof", f"--gpu-proof-key-env={KEY_VAR}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--key-env {KEY_VAR}*"])
    assert message in result.stderr.str()
    assert "passed" not in result.stdout.str() and notes_ref(project) == ""


def test_cli_key_env_refuses_a_missing_variable(cli_project):
    env = {k: v for k, v in os.environ.items() if k != KEY_VAR}
    env["PATH"] = BIN + os.pathsep + env["PATH"]
    run = subprocess.run(["git", "gpu-proof", "run", "--key-env", KEY_VAR], cwd=cli_project, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"environment variable {KEY_VAR} is not set" in run.stderr
    assert "passed" not in run.stdout and notes_tip_empty(cli_project)


def notes_tip_empty(root: Path) -> bool:
    return notes_ref(root) == ""


def test_cli_key_env_signs_and_cleans_its_temporary_files(cli_project, keygen, tmp_path):
    key = generate_key(tmp_path / "ci-key")
    write_files(cli_project, {".gpu-proof/allowed_signers":
                              f'ci@example.com namespaces="gpu-proof" {key.public_line}\n'})
    commit_all(cli_project, "trust the CI key")
    git(cli_project, "config", "--unset", "user.signingKey")
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    run = gp(cli_project, "run", "--key-env", KEY_VAR, "--principal", "ci@example.com",
             env={KEY_VAR: key.private.read_text(), "TMPDIR": str(scratch)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "signed by ci@example.com" in run.stdout
    assert list(scratch.iterdir()) == []  # no key file, no directory left behind
    assert gp(cli_project, "verify").returncode == 0


def test_interrupt_while_signing_with_an_environment_key_removes_the_key_file(cli_project, tmp_path):
    key = generate_key(tmp_path / "ci-key")
    git(cli_project, "config", "--unset", "user.signingKey")
    log, started = cli_project / ".git" / "signer.log", cli_project / ".git" / "signer-started"
    slow = logging_signer(cli_project / ".git" / "slow-signer", log,
                          slow_after_the_probe(cli_project / ".git" / "probed", started))
    git(cli_project, "config", "gpg.ssh.program", str(slow))
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"],
           KEY_VAR: key.private.read_text(), "TMPDIR": str(scratch)}
    # git-gpu-proof itself, not through git: git passes a SIGINT on to its child, so the group's
    # one Ctrl-C would reach the command twice, the second at a moment the scheduler picks.
    proc = subprocess.Popen([str(Path(BIN) / "git-gpu-proof"), "run", "--key-env", KEY_VAR], cwd=cli_project,
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), "signer never started"
    key_file = Path(log.read_text().splitlines()[-1].split()[1])  # the receipt's signing, not the probe's
    assert key_file.exists()  # there while signing ...
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"interrupted while signing" in out, out + err
    assert not key_file.exists() and not key_file.parent.exists()  # ... and gone after Ctrl-C
    assert list(scratch.iterdir()) == []
    assert notes_tip_empty(cli_project)


# -- CI context ----------------------------------------------------------------------

GITHUB_ENV = {
    "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/kernels",
    "GITHUB_WORKFLOW_REF": "acme/kernels/.github/workflows/gpu.yml@refs/heads/main",
    "GITHUB_RUN_ID": "9876543210", "GITHUB_RUN_ATTEMPT": "2", "RUNNER_NAME": "gpu-box-1",
    "RUNNER_ENVIRONMENT": "self-hosted", "GITHUB_SHA": "a" * 40, "GITHUB_REF": "refs/heads/main",
    "CI": "true", "GITHUB_TOKEN": "must-not-be-recorded",
}
GITLAB_ENV = {
    "GITLAB_CI": "true", "CI_PROJECT_PATH": "acme/kernels", "CI_PIPELINE_ID": "1234",
    "CI_JOB_ID": "5678", "CI_JOB_URL": "https://gitlab.example.com/acme/kernels/-/jobs/5678",
    "CI_RUNNER_DESCRIPTION": "gpu runner", "CI_COMMIT_SHA": "b" * 40, "CI_COMMIT_REF_NAME": "main",
    "CI_JOB_TOKEN": "must-not-be-recorded",
}


def test_detect_github_actions():
    assert ci_context.detect(GITHUB_ENV) == {
        "provider": "github-actions", "repository": "acme/kernels",
        "workflow_ref": "acme/kernels/.github/workflows/gpu.yml@refs/heads/main",
        "run_id": "9876543210", "run_attempt": "2", "runner_name": "gpu-box-1",
        "runner_environment": "self-hosted", "sha": "a" * 40, "ref": "refs/heads/main",
    }


def test_detect_gitlab_ci():
    assert ci_context.detect(GITLAB_ENV) == {
        "provider": "gitlab-ci", "project_path": "acme/kernels", "pipeline_id": "1234",
        "job_id": "5678", "job_url": "https://gitlab.example.com/acme/kernels/-/jobs/5678",
        "runner_description": "gpu runner", "commit_sha": "b" * 40, "ref": "main",
    }


@pytest.mark.parametrize("environ", [
    {}, {"CI": "true"}, {"GITHUB_ACTIONS": "false", "GITHUB_RUN_ID": "1"},
    {"GITLAB_CI": "", "CI_JOB_ID": "1"}, dict(os.environ, GITHUB_ACTIONS="0", GITLAB_CI="no"),
])
def test_detect_nothing_outside_ci(environ):
    assert ci_context.detect(environ) is None


def test_detect_leaves_out_unset_values_and_control_characters():
    assert ci_context.detect({"GITHUB_ACTIONS": "true", "GITHUB_RUN_ID": "", "RUNNER_NAME": "a\nb\x7f"}) == {
        "provider": "github-actions", "runner_name": "ab"}


def _clear_ci(monkeypatch):
    for name in [*GITHUB_ENV, *GITLAB_ENV]:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("provider, environ", [("github-actions", GITHUB_ENV), ("gitlab-ci", GITLAB_ENV)])
def test_ci_context_is_recorded_in_the_receipt(pytester, project, monkeypatch, provider, environ):
    _clear_ci(monkeypatch)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert pytester.runpytest("--gpu-proof").ret == 0
    ci = only_receipt(project).receipt.ci
    assert ci == ci_context.detect(environ) and ci["provider"] == provider
    [line] = [line for line in note_text(project).splitlines() if line.startswith("ci: ")]
    assert json.loads(line[4:]) == ci
    assert "must-not-be-recorded" not in note_text(project)


def test_no_ci_line_outside_ci(pytester, project, monkeypatch):
    _clear_ci(monkeypatch)
    assert pytester.runpytest("--gpu-proof").ret == 0
    assert only_receipt(project).receipt.ci is None
    assert "\nci: " not in note_text(project)


def test_ci_context_is_recorded_in_unsigned_runs_too(pytester, project, monkeypatch):
    _clear_ci(monkeypatch)
    monkeypatch.setenv("GITLAB_CI", "true")
    monkeypatch.setenv("CI_JOB_ID", "77")
    assert pytester.runpytest("--gpu-proof", "--gpu-proof-unsigned").ret == 0
    assert only_receipt(project).receipt.ci == {"provider": "gitlab-ci", "job_id": "77"}


# -- pytest-xdist --------------------------------------------------------------------

XDIST_MODULE = """
import pytest

@pytest.fixture
def checked_in_setup(gpu_proof_check):
    gpu_proof_check("setup-check", lambda: 1, lambda: 1)

@pytest.mark.gpu_proof
@pytest.mark.parametrize("n", range(6))
def test_param(gpu_proof_check, n):
    gpu_proof_check(f"c{n}", lambda: n, lambda: n)
    gpu_proof_check(f"c{n}-again", lambda: [n, n], lambda: [n, n])

@pytest.mark.gpu_proof
def test_with_setup_check(checked_in_setup, gpu_proof_check):
    gpu_proof_check("call-check", lambda: 2.0, lambda: 2.0)

@pytest.mark.gpu_proof
def test_mismatch(gpu_proof_check):
    gpu_proof_check("far", lambda: 1.0, lambda: 2.0)

@pytest.mark.gpu_proof
def test_skipped(): pytest.skip("later")

def test_not_marked(): pass
"""

XDIST_OUTCOMES = {
    **{f"tests/test_kernels.py::test_param[{n}]": "passed" for n in range(6)},
    "tests/test_kernels.py::test_with_setup_check": "passed",
    "tests/test_kernels.py::test_mismatch": "failed",
    "tests/test_kernels.py::test_skipped": "skipped",
}


def _check_names(signed) -> list[str]:
    return sorted(c["name"] for c in signed.receipt.checks)


EXPECTED_CHECKS = sorted([*(f"c{n}" for n in range(6)), *(f"c{n}-again" for n in range(6)),
                          "setup-check", "call-check", "far"])


def test_check_records_travel_in_reports_exactly_once(pytester, project):
    (project / "tests" / "test_kernels.py").write_text(XDIST_MODULE)
    commit_all(project, "checks")
    result = pytester.runpytest("--gpu-proof", "tests/test_kernels.py")
    assert result.ret == 1
    signed = only_receipt(project)
    assert outcomes(signed) == XDIST_OUTCOMES
    assert _check_names(signed) == EXPECTED_CHECKS
    far = next(c for c in signed.receipt.checks if c["name"] == "far")
    assert not far["ok"] and far["test"] == "tests/test_kernels.py::test_mismatch"


def test_cli_run_with_xdist_makes_one_receipt_on_the_controller(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": XDIST_MODULE})
    commit_all(cli_project, "more tests")
    run = gp(cli_project, "run", "--", "-n", "2", "tests/test_kernels.py")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 workers" in run.stdout and "receipt failed (7 passed, 1 failed, 1 skipped)" in run.stdout
    [entry] = entries(cli_project)
    signed = entry.signed
    assert outcomes(signed) == XDIST_OUTCOMES
    assert _check_names(signed) == EXPECTED_CHECKS
    assert signed.receipt.pytest_args[-3:] == ["-n", "2", "tests/test_kernels.py"]


def test_cli_run_with_xdist_passing_validates(cli_project):
    write_files(cli_project, {"tests/test_more.py": GPU_MODULE})
    commit_all(cli_project, "more tests")
    run = gp(cli_project, "run", "--fail-on-skip", "--", "-n", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receipt passed (3 passed)" in run.stdout
    assert gp(cli_project, "verify").returncode == 0


# -- --shard -------------------------------------------------------------------------

SHARD_POLICY = """
[tool.gpu_proof]
fingerprint_paths = ["src", "tests"]

[tool.gpu_proof.shards.kernels]
paths = ["src/kernels", "tests/kernels"]
tests = ["tests/kernels"]

[tool.gpu_proof.shards.comm]
paths = ["src/comm", "tests/comm", "tests/test_top.py"]
tests = ["tests/comm/test_comm.py::test_allreduce", "tests/test_top.py"]

[tool.gpu_proof.shards.everything]
paths = ["src"]

[tool.gpu_proof.shards.nothing]
paths = ["src"]
tests = ["tests/no_such_dir"]
"""

def _marked(*names: str) -> str:
    return "import pytest\n\n" + "".join(f"@pytest.mark.gpu_proof\ndef {n}(): pass\n\n" for n in names) \
        + "def test_unmarked(): pass\n"


@pytest.fixture
def sharded(project: Path) -> Path:
    write_files(project, {
        "pyproject.toml": SHARD_POLICY,
        "src/kernels/k.py": "K = 1\n",
        "src/comm/c.py": "C = 1\n",
        "tests/kernels/test_k.py": _marked("test_k1", "test_k2"),
        "tests/kernels_extra/test_x.py": _marked("test_extra"),
        "tests/comm/test_comm.py": _marked("test_allreduce", "test_allreduce_big", "test_broadcast"),
        "tests/test_top.py": _marked("test_top"),
    })
    commit_all(project, "shards")
    return project


@pytest.mark.parametrize("shard, expected", [
    ("kernels", {"tests/kernels/test_k.py::test_k1", "tests/kernels/test_k.py::test_k2"}),
    ("comm", {"tests/comm/test_comm.py::test_allreduce", "tests/test_top.py::test_top"}),
    ("everything", {"tests/kernels/test_k.py::test_k1", "tests/kernels/test_k.py::test_k2",
                    "tests/kernels_extra/test_x.py::test_extra", "tests/comm/test_comm.py::test_allreduce",
                    "tests/comm/test_comm.py::test_allreduce_big", "tests/comm/test_comm.py::test_broadcast",
                    "tests/test_top.py::test_top", "tests/test_gpu.py::test_ok",
                    "tests/test_gpu.py::test_also_ok"}),
])
def test_shard_runs_its_tests_and_fingerprints_its_paths(pytester, sharded, shard, expected):
    result = pytester.runpytest("--gpu-proof", f"--gpu-proof-shard={shard}")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"*receipt passed ({len(expected)} passed) for shard {shard} signed by*"])
    receipt = only_receipt(sharded).receipt
    assert set(outcomes(only_receipt(sharded))) == expected
    assert receipt.shard == shard
    paths = {"kernels": ["src/kernels", "tests/kernels"],
             "comm": ["src/comm", "tests/comm", "tests/test_top.py"], "everything": ["src"]}[shard]
    assert receipt.trees == {p: git(sharded, "rev-parse", f"HEAD:{p}") for p in paths}


def test_unknown_shard_is_refused_listing_the_defined_ones(pytester, sharded):
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=kernel")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown shard 'kernel'; the policy defines: comm, everything, "
                                 "kernels, nothing*Nothing recorded*"])
    assert "passed" not in result.stdout.str() and notes_ref(sharded) == ""


def test_unsharded_run_under_a_sharded_policy_is_refused(pytester, sharded):
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the policy defines shards*run one with --shard NAME*"])
    assert notes_ref(sharded) == ""


def test_a_selector_covers_the_parametrized_cases_of_a_test():
    from gitproof.policy import selects

    assert selects(["tests/k.py::test_sum"], "tests/k.py::test_sum[float32]")
    assert not selects(["tests/k.py::test_sum"], "tests/k.py::test_summary")
    assert selects(["tests/k"], "tests/k/test_a.py::t") and not selects(["tests/k"], "tests/kx/t.py::t")


def test_shard_without_shards_in_the_policy_is_refused(pytester, project):
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=kernels")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown shard 'kernels'*defines no shards*"])


def test_shard_that_selects_no_marked_test_is_refused(pytester, sharded):
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=nothing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no test marked*in shard 'nothing' (tests tests/no_such_dir) was collected*"])


def test_shard_whose_paths_are_all_absent_is_refused(pytester, sharded):
    (sharded / "pyproject.toml").write_text(SHARD_POLICY + '\n[tool.gpu_proof.shards.ghost]\npaths = ["gone"]\n')
    commit_all(sharded, "ghost shard")
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=ghost")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*none of the fingerprint paths exist (gone)*(shard 'ghost')*"])


def test_shard_decides_note_or_pending_by_its_own_paths(pytester, sharded):
    (sharded / "src" / "comm" / "c.py").write_text("C = 2\n")  # outside the kernels shard
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=kernels")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*for shard kernels*note on*"])
    assert only_receipt(sharded).receipt.dirty_outside is True
    (sharded / "src" / "kernels" / "k.py").write_text("K = 2\n")  # inside it
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=kernels")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*for shard kernels*pending receipt*"])
    [pending] = PendingStore(pygit2.Repository(str(sharded))).list()
    assert pending.signed.receipt.shard == "kernels"


@pytest.mark.parametrize("edited, recorded", [("src/comm/c.py", True), ("src/kernels/k.py", False)])
def test_shard_checks_for_changes_during_the_run_on_its_own_paths(pytester, sharded, edited, recorded):
    (sharded / "tests" / "kernels" / "test_edit.py").write_text(
        "import pathlib, pytest\n\n@pytest.mark.gpu_proof\ndef test_edits():\n"
        f"    pathlib.Path({str(sharded / edited)!r}).write_text('EDITED = 1\\n')\n")
    commit_all(sharded, "a test that edits code")
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=kernels")
    if recorded:
        assert result.ret == 0 and only_receipt(sharded).receipt.shard == "kernels"
    else:
        assert result.ret == pytest.ExitCode.INTERNAL_ERROR
        result.stdout.fnmatch_lines(["*changed while the tests ran*"])
        assert notes_ref(sharded) == ""


def test_fail_on_skip_in_a_shard_ignores_modules_outside_it(pytester, sharded):
    write_files(sharded, {"tests/kernels/test_cupy.py": (
        "import pytest\n\npytest.importorskip('gitproof_no_such_module_xyz')\n\n"
        "@pytest.mark.gpu_proof\ndef test_on_device(): pass\n")})
    commit_all(sharded, "a kernels module that needs a missing package")
    assert pytester.runpytest("--gpu-proof", "--gpu-proof-shard=comm", "--gpu-proof-fail-on-skip").ret == 0
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-shard=kernels", "--gpu-proof-fail-on-skip")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*tests/kernels/test_cupy.py: skipped while collecting*"])


def test_cli_shard_with_xdist(cli_project):
    write_files(cli_project, {
        "pyproject.toml": SHARD_POLICY.replace(
            "[tool.gpu_proof]\n", '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n', 1),
        "src/kernels/k.py": "K = 1\n", "src/comm/c.py": "C = 1\n",
        "tests/kernels/test_k.py": _marked("test_k1", "test_k2", "test_k3"),
        "tests/comm/test_comm.py": _marked("test_allreduce", "test_broadcast"),
        "tests/test_top.py": _marked("test_top"),
    })
    commit_all(cli_project, "shards")
    run = gp(cli_project, "run", "--shard", "kernels", "--", "-n", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receipt passed (3 passed) for shard kernels" in run.stdout
    signed = only_receipt(cli_project)
    assert signed.receipt.shard == "kernels"
    assert set(outcomes(signed)) == {f"tests/kernels/test_k.py::test_k{n}" for n in (1, 2, 3)}
    refused = gp(cli_project, "run", "--shard", "nope")
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR
    assert "the policy defines: comm, everything, kernels, nothing" in refused.stderr


# -- help ------------------------------------------------------------------------------

def test_run_help_lists_the_options(tmp_path):
    result = gp(tmp_path, "run", "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    for option in ("--key-env", "--shard", "--unsigned", "--fail-on-skip", "--allow-unsigned", "pytest-xdist"):
        assert option in result.stdout, option


def test_pytest_help_lists_the_plugin_options(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--gpu-proof-key-env=VAR*", "*--gpu-proof-shard=NAME*",
                                 "*--gpu-proof-unsigned*", "*--gpu-proof-fail-on-skip*"])
