"""The real `git gpu-proof` command, run as git runs it, in real repositories."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import commit_all, git, write_files

BIN = str(Path(sys.executable).parent)
SUBCOMMANDS = ["run", "verify", "show", "log", "export", "status", "demo"]


def gp(cwd: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def project(cli_project: Path) -> Path:
    return cli_project


def notes_tip(root: Path) -> str:
    return git(root, "rev-parse", "-q", "--verify", "refs/notes/gpu-proof", check=False)


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help_everywhere(tmp_path, sub):
    # git turns `git gpu-proof --help` into a man page lookup, so the top level uses -h.
    result = gp(tmp_path, *([sub, "--help"] if sub else ["-h"]))
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_version_and_module_entry_point(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gitproof", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("git-gpu-proof ")


def test_run_verify_show_log_status_end_to_end(project):
    run = gp(project, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receipt passed" in run.stdout
    verify = gp(project, "verify")
    assert verify.returncode == 0 and "validated" in verify.stdout
    data = json.loads(gp(project, "verify", "--json").stdout)
    assert data["ok"] and data["results"][0]["state"] == "validated"
    assert data["results"][0]["receipt"]["signer"] == "runner@example.com"
    show = gp(project, "show")
    assert show.returncode == 0 and "valid" in show.stdout and "tests/test_kernels.py::test_add" in show.stdout
    assert gp(project, "show", "--raw").stdout == git(project, "notes", "--ref=gpu-proof", "show", "HEAD") + "\n"
    assert json.loads(gp(project, "show", "--json").stdout)["receipts"][0]["valid"] is True
    log = gp(project, "log")
    assert log.returncode == 0 and log.stdout.splitlines()[0].split()[1] == "validated"
    status = json.loads(gp(project, "status", "--json").stdout)
    assert status["worktree_validated"] and not status["needs_run"] and status["head"]["valid"]


def test_verify_exit_codes_and_reasons(project):
    assert gp(project, "run").returncode == 0
    write_files(project, {"src/kernels.py": "def add(a, b):\n    return a - b\n"})
    commit_all(project, "break it")
    result = gp(project, "verify", "HEAD", "HEAD~1")
    assert result.returncode == 1
    first, second = result.stdout.splitlines()[:2]
    assert "unvalidated" in first and "src/kernels.py" in first and "validated" in second
    data = json.loads(gp(project, "verify", "--json").stdout)
    assert not data["ok"] and data["results"][0]["reasons"][0]["code"] == "fingerprint-changed"


@pytest.mark.parametrize("setup, args, message", [
    (lambda p: None, ["verify", "no-such-rev"], "unknown revision"),
    (lambda p: (p / ".gpu-proof" / "allowed_signers").unlink(), ["verify"], "does not exist"),
    (lambda p: (p / "pyproject.toml").write_text("[tool.gpu_proof]\nbogus = 1\n"), ["verify"],
     "unknown policy key 'bogus'"),
    (lambda p: (p / "pyproject.toml").write_text("[tool.gpu_proof\n"), ["status"], "not valid TOML"),
    (lambda p: None, ["log", "-n", "0"], "at least 1"),
])
def test_configuration_and_usage_errors_exit_2_without_traceback(project, setup, args, message):
    setup(project)
    result = gp(project, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unparsable_allowed_signers_line_is_warned_about_and_skipped(project):
    assert gp(project, "run").returncode == 0
    signers = project / ".gpu-proof" / "allowed_signers"
    signers.write_text("broken@example.com ssh-ed25519 not-base64!\n" + signers.read_text())
    result = gp(project, "verify")
    assert result.returncode == 0
    assert "warning: allowed_signers line skipped" in result.stderr and ":1:" in result.stderr


@pytest.mark.parametrize("sub", ["run", "verify", "show", "log", "status"])
def test_outside_a_repository(tmp_path, sub):
    result = gp(tmp_path, sub)
    assert result.returncode == 2 and "not inside a git repository" in result.stderr


def test_failing_run_exits_like_pytest_and_is_recorded(project):
    write_files(project, {"tests/test_kernels.py":
                          "import pytest\n\n@pytest.mark.gpu_proof\ndef test_bad():\n    assert False\n"})
    commit_all(project, "failing test")
    run = gp(project, "run")
    assert run.returncode == 1 and "receipt failed" in run.stdout
    result = gp(project, "verify")
    assert result.returncode == 1 and "1 test(s) failed" in result.stdout
    assert "failed" in gp(project, "show").stdout


def test_pytest_arguments_pass_through(project):
    write_files(project, {"tests/test_other.py": "import pytest\n\n@pytest.mark.gpu_proof\ndef test_other(): pass\n"})
    commit_all(project, "second test")
    run = gp(project, "run", "--", "-k", "test_add")
    assert run.returncode == 0
    receipt = json.loads(gp(project, "show", "--json").stdout)["receipts"][0]
    assert receipt["counts"]["passed"] == 1
    assert "-k" in gp(project, "show", "--raw").stdout


def test_dirty_run_is_pending_until_committed(project):
    write_files(project, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    run = gp(project, "run")
    assert run.returncode == 0 and "pending receipt" in run.stdout
    assert notes_tip(project) == ""
    status = gp(project, "status")
    assert "pending receipt" in status.stdout and "matches working tree" in status.stdout
    assert json.loads(gp(project, "status", "--json").stdout)["worktree_validated"] is True
    assert gp(project, "verify").returncode == 1  # HEAD itself still has no receipt


def test_stock_ssh_keygen_accepts_the_receipt(project, tmp_path):
    assert gp(project, "run").returncode == 0
    note = git(project, "notes", "--ref=gpu-proof", "show", "HEAD") + "\n"
    payload, _, rest = note.partition("-----BEGIN SSH SIGNATURE-----\n")
    (tmp_path / "receipt.sig").write_text("-----BEGIN SSH SIGNATURE-----\n" + rest)
    check = lambda data: subprocess.run(  # noqa: E731
        ["ssh-keygen", "-Y", "verify", "-f", str(project / ".gpu-proof" / "allowed_signers"),
         "-I", "runner@example.com", "-n", "gpu-proof", "-s", str(tmp_path / "receipt.sig")],
        input=data.encode(), capture_output=True)
    assert check(payload).returncode == 0
    assert check(payload.replace("passed", "failed", 1)).returncode != 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_during_signing_leaves_notes_exactly_as_they_were(project, sig):
    assert gp(project, "run").returncode == 0
    before = notes_tip(project)
    write_files(project, {"src/kernels.py": "def add(a, b):\n    return a + b + 0\n"})
    commit_all(project, "next")
    started = project / ".git" / "signer-started"
    slow = project / ".git" / "slow-signer"
    probed = project / ".git" / "probed"  # `run` signs a probe before the tests: let it through
    slow.write_text(f"#!/bin/sh\nif [ -e {probed} ]; then touch {started}; sleep 30; else touch {probed}; fi\n"
                    "exec ssh-keygen \"$@\"\n")
    slow.chmod(0o755)
    git(project, "config", "gpg.ssh.program", str(slow))
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    # The command itself, not through `git gpu-proof`: git passes a SIGINT it receives on to its
    # child, so through git the command gets this one twice, the second whenever git is next
    # scheduled; under load that can be after the first was handled, and its KeyboardInterrupt
    # then cuts pytest's summary short. Here the group gets one SIGINT, as from one Ctrl-C.
    proc = subprocess.Popen([str(Path(BIN) / "git-gpu-proof"), "run"], cwd=project, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), "signer never started"
    os.killpg(proc.pid, sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert b"interrupted while signing" in out
    assert notes_tip(project) == before
    assert git(project, "for-each-ref", "refs/gpu-proof/") == ""
    assert git(project, "fsck", "--no-dangling") is not None


def test_demo_runs_end_to_end(tmp_path):
    result = gp(tmp_path, "demo", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Good "gpu-proof" signature' in result.stdout
    assert "validated" in result.stdout and "unvalidated" in result.stdout
    assert gp(tmp_path, "demo", "--dir", str(tmp_path / "demo")).returncode == 2


# -- help, completion, colour ---------------------------------------------------------------------

def all_command_paths() -> list[list[str]]:
    """Every command and subcommand the program has, as argument lists."""
    import typer

    from gitproof.cli.main import build_app

    def walk(command, prefix: list[str]) -> list[list[str]]:
        found = [prefix]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, prefix + [name])
        return found

    return walk(typer.main.get_command(build_app()), [])


def test_no_help_text_shows_typer_type_names(tmp_path):
    paths = all_command_paths()
    assert ["run"] in paths and ["hook", "pre-push"] in paths and ["signers", "add"] in paths
    for path in paths:
        result = gp(tmp_path, *path, "-h")
        assert result.returncode == 0, (path, result.stderr)
        leaked = re.findall(r"<(?:str|int|float|bool|path|list\[[^\]]*\]|[a-z]+\[[^\]]*\])>", result.stdout)
        assert not leaked, (path, leaked, result.stdout)


def test_run_usage_shows_where_pytest_arguments_go(tmp_path):
    usage = gp(tmp_path, "run", "-h").stdout.splitlines()[0]
    assert usage == "Usage: git gpu-proof run [OPTIONS] [-- PYTEST_ARGS]..."


def test_shell_completion_script_and_answers(tmp_path):
    tool = str(Path(BIN) / "git-gpu-proof")
    script = subprocess.run([tool, "--show-completion", "bash"], capture_output=True, text=True)
    assert script.returncode == 0
    assert "_GIT_GPU_PROOF_COMPLETE=complete_bash" in script.stdout
    assert script.stdout.rstrip().endswith("git-gpu-proof")  # `complete ... git-gpu-proof`

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {**os.environ, "_GIT_GPU_PROOF_COMPLETE": "complete_bash", "COMP_WORDS": line,
               "COMP_CWORD": str(len(words) - 1)}
        done = subprocess.run([tool], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("git-gpu-proof ver") == ["verify"]
    assert complete("git-gpu-proof hook pre-p") == ["pre-push"]  # the hook's fast path stays out of the way
    assert "--no-policy-check" in complete("git-gpu-proof run --no")


def test_no_color_leaves_out_every_escape_sequence_on_a_terminal(project):
    from tests.terminal import in_terminal

    tool = str(Path(BIN) / "git-gpu-proof")
    base = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    base.pop("NO_COLOR", None)
    write_files(project, {"src/kernels.py": "def add(a, b):\n    return a + b + 1\n"})
    commit_all(project, "unvalidated")
    hook_env = {"PRE_COMMIT_FROM_REF": "HEAD~1", "PRE_COMMIT_TO_REF": "HEAD",
                "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main"}
    commands = [(["doctor"], {}), (["verify", "no-such-rev"], {}), (["verify"], {}),
                (["hook", "pre-push", "origin"], hook_env), (["run"], {})]
    for args, extra in commands:
        colored = in_terminal([tool, *args], project, {**base, **extra})
        assert b"\x1b[" in colored.output, (args, colored.text)
        plain = in_terminal([tool, *args], project, {**base, **extra, "NO_COLOR": "1"})
        assert b"\x1b" not in plain.output, (args, plain.text)
        assert plain.status == colored.status
