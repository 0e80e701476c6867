"""The first `git gpu-proof run` in a project: no traps on the way in.

Test modules that fail to collect are named; a key that cannot sign stops the
run before any test (a passphrase is asked once, up front); a signer
allowed_signers does not admit is warned about; and a receipt the policy
rejects makes the run exit 6. Real git repositories, real ssh-keygen keys, a
real ssh-agent, real pytest sessions, a real pseudo-terminal.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NotesStore
from tests.helpers import (Key, commit_all, git, notes_tip, write_files,
                           tool_environment as environment, run_tool as gp)
from tests.terminal import in_terminal

pytest_plugins = ["pytester"]

BIN = str(Path(sys.executable).parent)
TOOL = str(Path(sys.executable).parent / "git-gpu-proof")
PASSPHRASE = "correct horse battery"
MISSING_IMPORT = ("import gitproof_no_such_module_abc\nimport pytest\n\n"
                  "@pytest.mark.gpu_proof\ndef test_x(): pass\n")
SKIPPING = ("import pytest\n\n@pytest.mark.gpu_proof\ndef test_add(): pass\n\n"
            "@pytest.mark.gpu_proof\ndef test_no_device(): pytest.skip('needs a device')\n")




def nothing_ran(result: subprocess.CompletedProcess, root: Path) -> bool:
    return "test session starts" not in result.stdout and notes_tip(root) == "" \
        and git(root, "for-each-ref", "refs/gpu-proof/") == ""


def trust(root: Path, key: Key, principal: str = "runner@example.com") -> None:
    signers = root / ".gpu-proof" / "allowed_signers"
    signers.write_text(signers.read_text() + f'{principal} namespaces="gpu-proof" {key.public_line}\n')
    commit_all(root, "trust another key")


def locked_key(directory: Path) -> Key:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-N", PASSPHRASE, "-t", "ed25519", "-C", "locked@test",
                    "-f", str(directory / "locked")], check=True, capture_output=True)
    return Key(directory / "locked", directory / "locked.pub")


# -- test modules that fail to collect ----------------------------------------------------------

@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_a_module_that_cannot_be_imported_is_named_and_the_run_exits_2(cli_project, xdist):
    write_files(cli_project, {"tests/test_needs_torch.py": MISSING_IMPORT})
    commit_all(cli_project, "a GPU module whose import is missing here")
    result = gp(cli_project, "run", "--", *xdist)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("1 test module(s) failed to collect, so their tests cannot be run or recorded: "
            "tests/test_needs_torch.py: ModuleNotFoundError: No module named 'gitproof_no_such_module_abc'"
            ) in result.stdout
    assert "no test marked" not in result.stdout + result.stderr
    assert notes_tip(cli_project) == ""


def test_every_failed_module_is_named_with_its_own_error(pytester):
    write_files(pytester.path, {"tests/test_syntax.py": "def broken(:\n    pass\n",
                                "tests/test_raises.py": "raise RuntimeError('no CUDA here\\nsecond line')\n",
                                "tests/test_fine.py": "import pytest\n\n@pytest.mark.gpu_proof\ndef test_ok(): pass\n"})
    git(pytester.path, "init", "-q")
    git(pytester.path, "config", "user.email", "runner@example.com")
    git(pytester.path, "config", "user.name", "Runner")
    commit_all(pytester.path, "modules that do not import")
    result = pytester.runpytest("--gpu-proof", "--gpu-proof-unsigned")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*2 test module(s) failed to collect*"
                                 "tests/test_raises.py: RuntimeError: no CUDA here; "
                                 "tests/test_syntax.py: SyntaxError: *Nothing recorded*"])


def test_continue_on_collection_errors_is_honoured(cli_project):
    write_files(cli_project, {"tests/test_needs_torch.py": MISSING_IMPORT})
    commit_all(cli_project, "a GPU module whose import is missing here")
    result = gp(cli_project, "run", "--", "--continue-on-collection-errors")
    assert result.returncode == 1, result.stdout + result.stderr  # pytest counts the error
    assert "failed to collect" not in result.stdout and "receipt failed (1 passed)" in result.stdout


def test_without_collection_errors_the_marker_message_still_explains(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": "def test_unmarked(): pass\n"})
    commit_all(cli_project, "no marked test")
    result = gp(cli_project, "run")
    assert result.returncode == 4 and "no test marked @pytest.mark.gpu_proof" in result.stderr


# -- the key signs before any test runs ----------------------------------------------------------

def test_a_missing_key_file_stops_the_run_before_any_test(cli_project, tmp_path):
    git(cli_project, "config", "user.signingKey", str(tmp_path / "gone"))
    result = gp(cli_project, "run")
    assert result.returncode == 4
    assert "signing key file not found" in result.stderr and "Nothing ran, nothing recorded" in result.stderr
    assert nothing_ran(result, cli_project)


def test_a_public_key_whose_private_half_is_in_no_agent_stops_the_run(cli_project, keygen, tmp_path):
    key = keygen("ed25519", "agentless")
    alone = tmp_path / "public-only" / "agentless.pub"  # no private key beside it
    alone.parent.mkdir()
    shutil.copy(key.public, alone)
    git(cli_project, "config", "user.signingKey", str(alone))
    result = gp(cli_project, "run")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the signing key cannot sign" in result.stderr and "ssh-add" in result.stderr
    assert nothing_ran(result, cli_project)


def test_a_locked_key_without_a_terminal_or_agent_stops_the_run(cli_project, tmp_path):
    key = locked_key(tmp_path / "keys")
    git(cli_project, "config", "user.signingKey", str(key.private))
    result = gp(cli_project, "run")
    assert result.returncode == 4
    assert "is protected by a passphrase, ssh-agent does not hold it" in result.stderr
    assert f"ssh-add {key.private}" in result.stderr and "--key-env" in result.stderr
    assert nothing_ran(result, cli_project)


def test_a_locked_key_is_unlocked_once_before_the_tests(cli_project, tmp_path):
    key = locked_key(tmp_path / "keys")
    trust(cli_project, key)
    git(cli_project, "config", "user.signingKey", str(key.private))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    session = in_terminal([TOOL, "run"], cli_project, environment(TMPDIR=str(scratch)), answer=PASSPHRASE)
    assert session.status == 0, session.text
    assert session.prompts == 1  # once, before the tests; never again at the end
    assert session.text.index("passphrase") < session.text.index("test session starts")
    assert "signed by runner@example.com" in session.text
    assert list(scratch.iterdir()) == []  # the unlocked copy is gone
    repo = pygit2.Repository(str(cli_project))
    [entry] = NotesStore(repo).entries(str(repo.head.target))
    assert entry.signed.receipt.key_fingerprint == key.fingerprint
    assert "--gpu-proof-key-env=GITPROOF_UNLOCKED_KEY" in entry.signed.receipt.pytest_args
    assert gp(cli_project, "verify").returncode == 0


def test_a_wrong_passphrase_stops_the_run_before_any_test(cli_project, tmp_path):
    key = locked_key(tmp_path / "keys")
    git(cli_project, "config", "user.signingKey", str(key.private))
    session = in_terminal([TOOL, "run"], cli_project, environment(), answer="not it")
    assert session.status == 4, session.text
    assert session.prompts == 3 and "could not unlock" in session.text
    assert "test session starts" not in session.text and notes_tip(cli_project) == ""


@pytest.fixture
def agent():
    """A real ssh-agent: (environment for it, function adding a locked key to it)."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("OpenSSH's ssh-agent and ssh-add are not installed here")
    out = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    env = {"SSH_AUTH_SOCK": re.search(r"SSH_AUTH_SOCK=([^;]+);", out).group(1)}
    pid = int(re.search(r"SSH_AGENT_PID=(\d+);", out).group(1))

    def add(key: Key, askpass_dir: Path) -> None:
        askpass = askpass_dir / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
        askpass.chmod(0o700)
        subprocess.run(["ssh-add", "-q", str(key.private)], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, start_new_session=True,
                       env={**os.environ, **env, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
                            "DISPLAY": ":0"})

    try:
        yield env, add
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_locked_key_held_by_the_agent_needs_no_passphrase(cli_project, tmp_path, agent):
    env, add = agent
    key = locked_key(tmp_path / "keys")
    add(key, tmp_path)
    trust(cli_project, key)
    git(cli_project, "config", "user.signingKey", str(key.private))
    result = gp(cli_project, "run", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passphrase" not in result.stdout + result.stderr
    assert gp(cli_project, "verify").returncode == 0


def test_ctrl_c_while_the_key_is_being_checked_records_nothing(cli_project):
    started = cli_project / ".git" / "probe-started"
    slow = cli_project / ".git" / "slow-signer"
    slow.write_text(f"#!/bin/sh\ntouch {started}\nsleep 30\nexec ssh-keygen \"$@\"\n")
    slow.chmod(0o755)
    git(cli_project, "config", "gpg.ssh.program", str(slow))
    proc = subprocess.Popen([TOOL, "run"], cwd=cli_project, env=environment(), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the probe never started"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and b"interrupted; nothing recorded" in err, out + err
    assert b"Traceback" not in err and b"test session starts" not in out
    assert notes_tip(cli_project) == ""


def test_unsigned_runs_skip_the_key_check(cli_project):
    git(cli_project, "config", "user.signingKey", "/no/such/key")
    result = gp(cli_project, "run", "--unsigned")
    assert result.returncode == 0, result.stdout + result.stderr


# -- the signer and the trust roots ------------------------------------------------------------------

def test_a_signer_allowed_signers_does_not_admit_is_warned_about_before_the_run(cli_project, keygen):
    stranger = keygen("ed25519", "stranger")
    git(cli_project, "config", "user.signingKey", str(stranger.private))
    result = gp(cli_project, "run")
    assert "warning: the signer runner@example.com (" + stranger.fingerprint + ") is not trusted by" \
        in result.stderr
    assert "test session starts" in result.stdout  # a warning: the run went ahead
    assert result.returncode == 6  # ... and its receipt will not validate
    assert "signer-not-allowed" in result.stdout


def test_no_trust_roots_at_all_are_warned_about(cli_project):
    write_files(cli_project, {"pyproject.toml": "[tool.gpu_proof]\n"})
    commit_all(cli_project, "no allowed signers")
    result = gp(cli_project, "run")
    assert "warning: receipts cannot be verified in this repository yet: no allowed signers" in result.stderr
    assert result.returncode == 6 and "no-trust" in result.stdout


def test_a_trusted_signer_gets_no_warning(cli_project):
    result = gp(cli_project, "run")
    assert result.returncode == 0 and "warning" not in result.stderr


# -- the receipt under the repository's policy -----------------------------------------------------

def test_a_passing_run_whose_receipt_the_policy_rejects_exits_6(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": SKIPPING})
    commit_all(cli_project, "a test that skips")
    result = gp(cli_project, "run")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "receipt passed (1 passed, 1 skipped)" in result.stdout
    assert "policy check: FAILED" in result.stdout
    assert "skipped-tests: 1 selected test(s) skipped: tests/test_kernels.py::test_no_device" in result.stdout
    assert gp(cli_project, "verify").returncode == 1  # verify agrees
    checked = gp(cli_project, "run", "--no-policy-check")
    assert checked.returncode == 0 and "policy check" not in checked.stdout


def test_a_policy_rule_is_named_in_the_check(cli_project):
    signers = '.gpu-proof/allowed_signers'
    write_files(cli_project, {"pyproject.toml": f'[tool.gpu_proof]\nallowed_signers = "{signers}"\n'
                                                'require_gpu_use = true\n'})
    commit_all(cli_project, "require GPU use")
    result = gp(cli_project, "run")
    assert result.returncode == 6 and "gpu-not-used:" in result.stdout


def test_failing_tests_keep_pytests_status_and_skip_the_check(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": "import pytest\n\n@pytest.mark.gpu_proof\n"
                                                      "def test_bad(): assert False\n"})
    commit_all(cli_project, "failing")
    result = gp(cli_project, "run")
    assert result.returncode == 1 and "policy check" not in result.stdout


def test_a_pending_receipt_is_judged_by_everything_but_its_commit(cli_project):
    write_files(cli_project, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})  # not committed
    result = gp(cli_project, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policy check: ok, the receipt (pending " in result.stdout
    assert "cannot be checked against a commit yet" in result.stdout
    write_files(cli_project, {"tests/test_kernels.py": SKIPPING})
    skipped = gp(cli_project, "run")
    assert skipped.returncode == 6 and "(pending " in skipped.stdout and "skipped-tests" in skipped.stdout


def test_an_unsigned_dry_run_is_judged_as_if_signed(cli_project):
    result = gp(cli_project, "run", "--unsigned")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policy check: ok" in result.stdout and "dry run: judged as if signed" in result.stdout
    write_files(cli_project, {"tests/test_kernels.py": SKIPPING})
    commit_all(cli_project, "a test that skips")
    skipped = gp(cli_project, "run", "--unsigned")
    assert skipped.returncode == 6 and "skipped-tests" in skipped.stdout and "unsigned:" not in skipped.stdout


@pytest.mark.parametrize("key_format, passphrase, locked", [
    ("RFC4716", "", False), ("RFC4716", PASSPHRASE, True),  # OpenSSH's own format
    ("PEM", "", False), ("PEM", PASSPHRASE, True),  # "Proc-Type: 4,ENCRYPTED"
    ("PKCS8", PASSPHRASE, True),  # "BEGIN ENCRYPTED PRIVATE KEY"
])
def test_a_passphrase_is_recognised_in_every_private_key_format(tmp_path, key_format, passphrase, locked):
    from gitproof.signing import SigningKey, needs_passphrase

    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", key_format, "-N", passphrase,
                    "-f", str(path)], check=True, capture_output=True)
    assert needs_passphrase(SigningKey(str(path), False, "--key")) is locked
    assert needs_passphrase(SigningKey(str(path) + ".pub", False, "--key")) is False
