"""`run` with the project's interpreter: real second virtualenvs, real pytest child processes.

A bare virtualenv (no gitproof) is the refusal case. A "bridged" one is a
real, separate virtualenv whose site-packages include this checkout's
environment through a .pth file, so its python imports gitproof and pytest
without a network install: the tests then run in a child process, as they
do when gitproof is installed with pipx or `uv tool`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pygit2
import pytest

from gitproof import interpreter as chooser
from gitproof.interpreter import Interpreter, InterpreterError
from tests.helpers import (commit_all, git, notes_tip, write_files,
                           tool_environment as environment, run_tool as gp)
from tests.terminal import in_terminal

BIN = str(Path(sys.executable).parent)
TOOL = str(Path(sys.executable).parent / "git-gpu-proof")
SLOW_TEST = """
import pathlib, time, pytest

@pytest.mark.gpu_proof
def test_slow():
    pathlib.Path({marker!r}).touch()
    time.sleep(60)
"""


def make_venv(path: Path, bridged: bool) -> Path:
    """A real virtualenv; ``bridged``: it also sees this environment's packages (gitproof, pytest)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    if bridged:
        ours = sysconfig.get_paths()["purelib"]
        theirs = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        Path(theirs, "gitproof_bridge.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    return make_venv(tmp_path_factory.mktemp("venvs") / "bare", bridged=False)


@pytest.fixture(scope="module")
def bridged_python(tmp_path_factory) -> Path:
    return make_venv(tmp_path_factory.mktemp("venvs") / "bridged", bridged=True)


# -- which interpreter ---------------------------------------------------------------------

def test_the_choice_follows_the_documented_order(cli_project, bare_python, bridged_python):
    repo = pygit2.Repository(str(cli_project))
    current = Path(sys.executable)
    assert chooser.choose(repo, None, {}) == Interpreter(current, "the interpreter gitproof runs in")
    (cli_project / "envs").symlink_to(bridged_python.parent.parent.parent)
    relative = f"envs/{bridged_python.parent.parent.name}/bin/python"
    with (cli_project / "pyproject.toml").open("a") as pyproject:
        pyproject.write(f'python = "{relative}"\n')
    assert chooser.choose(repo, None, {}) == Interpreter(cli_project / relative, "[tool.gpu_proof] python")
    git(cli_project, "config", "gpu-proof.python", str(bare_python))
    assert chooser.choose(repo, None, {}).source == "git config gpu-proof.python"
    (cli_project / ".venv").symlink_to(bridged_python.parent.parent)
    assert chooser.choose(repo, None, {}).source == ".venv at the repository root"
    venv = {"VIRTUAL_ENV": str(bare_python.parent.parent)}
    assert chooser.choose(repo, None, venv) == Interpreter(bare_python, "the active virtualenv, $VIRTUAL_ENV")
    assert chooser.choose(repo, str(bridged_python), venv) == Interpreter(bridged_python, "--python")


def test_a_virtualenv_python_is_not_mistaken_for_its_base_interpreter(bridged_python):
    base = Path(os.path.realpath(bridged_python))  # the venv's python is a link to it
    assert not chooser.same_interpreter(bridged_python, base)
    assert chooser.same_interpreter(bridged_python, bridged_python.parent / "python3")
    assert Interpreter(Path(sys.executable), "x").is_current


@pytest.mark.parametrize("setup, message", [
    (lambda root, env: env.update(VIRTUAL_ENV=str(root / "no-such-venv")), "$VIRTUAL_ENV is"),
    (lambda root, env: (root / ".venv").mkdir(), ".venv at the repository root is"),
    (lambda root, env: git(root, "config", "gpu-proof.python", "/no/such/python"),
     "git config gpu-proof.python names '/no/such/python'"),
    (lambda root, env: env.update(ARGS="--python=no-such-python-anywhere"), "--python names"),
    (lambda root, env: (root / "pyproject.toml").open("a").write('python = "py/missing"\n'),
     "[tool.gpu_proof] python names"),
])
def test_an_interpreter_that_is_not_there_is_refused_before_anything_runs(cli_project, setup, message):
    extra: dict[str, str] = {}
    setup(cli_project, extra)
    args = [extra.pop("ARGS")] if "ARGS" in extra else []
    result = gp(cli_project, "run", *args, **extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "passed" not in result.stdout and notes_tip(cli_project) == ""


def test_an_interpreter_without_gitproof_is_refused_with_the_command_to_fix_it(cli_project, bare_python):
    result = gp(cli_project, "run", "--python", str(bare_python))
    assert result.returncode == 2
    assert f"the tests run with {bare_python} (--python), which cannot import gitproof" in result.stderr
    assert f"{bare_python} -m pip install git-gpu-proof" in result.stderr
    assert "test session starts" not in result.stdout and notes_tip(cli_project) == ""


def test_the_active_virtualenv_is_used_and_checked(cli_project, bare_python):
    result = gp(cli_project, "run", VIRTUAL_ENV=str(bare_python.parent.parent))
    assert result.returncode == 2
    assert "(the active virtualenv, $VIRTUAL_ENV), which cannot import gitproof" in result.stderr


def test_a_repository_venv_is_used_and_checked(cli_project, bare_python):
    (cli_project / ".venv").symlink_to(bare_python.parent.parent)
    result = gp(cli_project, "run")
    assert result.returncode == 2
    assert "(.venv at the repository root), which cannot import gitproof" in result.stderr


def test_a_run_in_another_interpreter_records_and_validates(cli_project, bridged_python):
    (cli_project / ".venv").symlink_to(bridged_python.parent.parent)  # untracked, outside src and tests
    result = gp(cli_project, "run", "--", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    venv_python = cli_project / ".venv" / "bin" / "python"
    assert result.stdout.splitlines()[0] == f"gpu-proof: python {venv_python} (.venv at the repository root)"
    assert "receipt passed (1 passed) signed by runner@example.com" in result.stdout
    assert "policy check: ok" in result.stdout
    assert gp(cli_project, "verify").returncode == 0


def test_the_interpreter_used_is_named_in_the_output(cli_project):
    result = gp(cli_project, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("gpu-proof: python ") and first.endswith(" (the interpreter gitproof runs in)")
    named = Path(first.removeprefix("gpu-proof: python ").removesuffix(" (the interpreter gitproof runs in)"))
    assert chooser.same_interpreter(named, Path(sys.executable))


def test_check_reports_an_interpreter_that_fails_to_start(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'this python is broken' >&2\nexit 9\n")
    broken.chmod(0o755)
    with pytest.raises(InterpreterError, match="failed to start \\(exit 9\\): this python is broken"):
        chooser.check(Interpreter(broken, "--python"))


# -- Ctrl-C with the tests in a child process ------------------------------------------------

@pytest.fixture
def slow_project(cli_project: Path, bridged_python: Path) -> tuple[Path, Path]:
    marker = cli_project / ".git" / "test-started"
    write_files(cli_project, {"tests/test_kernels.py": SLOW_TEST.format(marker=str(marker))})
    commit_all(cli_project, "a slow test")
    return cli_project, marker


def wait_for(marker: Path, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the test never started"


@pytest.mark.parametrize("whom", ["group", "command only"])
def test_sigint_reaches_the_child_once_and_the_run_exits_2(slow_project, bridged_python, whom):
    project, marker = slow_project
    proc = subprocess.Popen([TOOL, "run", "--python", str(bridged_python)], cwd=project,
                            env=environment(), start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(marker)
    if whom == "group":  # as a CI runner cancelling the job would
        os.killpg(proc.pid, signal.SIGINT)
    else:  # `kill -INT` of the command alone: it passes the signal on to pytest
        os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert b"run interrupted; no receipt recorded" in out
    assert b"Traceback" not in err
    assert notes_tip(project) == "" and git(project, "for-each-ref", "refs/gpu-proof/") == ""


def test_ctrl_c_in_a_terminal_stops_the_child_and_the_run_exits_2(slow_project, bridged_python):
    project, marker = slow_project
    session = in_terminal([TOOL, "run", "--python", str(bridged_python)], project, environment(),
                          ctrl_c_when=marker.exists)
    assert session.status == 2, session.text
    assert "run interrupted; no receipt recorded" in session.text
    assert "Traceback" not in session.text.split("KeyboardInterrupt")[0]
    assert notes_tip(project) == ""
