"""Which Python runs the project's tests.

gitproof may be installed as a tool outside the project's environment (pipx,
``uv tool``), where the project's own packages (torch, the code under test)
are missing. ``git gpu-proof run`` therefore runs pytest with the project's
interpreter, chosen in this order:

1. ``--python PATH``;
2. the active virtualenv, ``$VIRTUAL_ENV``;
3. ``.venv/`` at the root of the working tree;
4. ``git config gpu-proof.python``, then ``python`` in ``[tool.gpu_proof]`` (a path
   relative to the repository root, or a command looked up on PATH);
5. the interpreter running gitproof itself.

The chosen interpreter must be able to import gitproof (its pytest plugin
makes the receipt) and pytest; ``check`` says so before any test runs.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pygit2

from gitproof import git
from gitproof.errors import GitproofError

CONFIG_KEY = "gpu-proof.python"
_VENV_PYTHONS = ("bin/python", "bin/python3", "Scripts/python.exe")
# Prints gitproof's version; exit 3: no gitproof, exit 4: no pytest. Imports nothing heavy.
_PROBE = ("import importlib.util as u, sys\n"
          "if u.find_spec('gitproof') is None: sys.exit(3)\n"
          "if u.find_spec('pytest') is None: sys.exit(4)\n"
          "import gitproof; print(gitproof.__version__)\n")


class InterpreterError(GitproofError):
    """The project's interpreter cannot run the tests; the message says what to do."""


@dataclass(frozen=True)
class Interpreter:
    path: Path
    source: str  # why this one, for messages: "--python", "$VIRTUAL_ENV", ...

    @property
    def is_current(self) -> bool:
        """Is it the interpreter running this code (so pytest can run in this process)?"""
        return same_interpreter(self.path, Path(sys.executable))

    def describe(self) -> str:
        return f"{self.path} ({self.source})"


def same_interpreter(a: Path, b: Path) -> bool:
    """The same executable in the same environment. A virtualenv's python is a link to
    the base interpreter, so a link-resolving comparison alone would confuse the two."""
    try:
        return (os.path.realpath(a.parent) == os.path.realpath(b.parent)
                and os.path.samefile(a, b))
    except OSError:
        return False


def choose(repo: pygit2.Repository, option: str | None = None,
           environ: Mapping[str, str] | None = None) -> Interpreter:
    """The interpreter to run the tests with (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    if option:
        return Interpreter(_command_path(option, "--python"), "--python")
    if environ.get("VIRTUAL_ENV"):
        return Interpreter(_venv_python(Path(environ["VIRTUAL_ENV"]), "$VIRTUAL_ENV"),
                           "the active virtualenv, $VIRTUAL_ENV")
    workdir = Path(repo.workdir) if repo.workdir else None
    if workdir is not None and (workdir / ".venv").is_dir():
        return Interpreter(_venv_python(workdir / ".venv", ".venv at the repository root"),
                           ".venv at the repository root")
    configured = _config_value(repo, CONFIG_KEY)
    if configured:
        return Interpreter(_command_path(os.path.expanduser(configured), f"git config {CONFIG_KEY}"),
                           f"git config {CONFIG_KEY}")
    declared = _policy_python(repo)
    if declared and workdir is not None:
        if os.sep in declared and not os.path.isabs(declared):
            declared = str(workdir / declared)
        return Interpreter(_command_path(declared, "[tool.gpu_proof] python"), "[tool.gpu_proof] python")
    return Interpreter(Path(sys.executable), "the interpreter gitproof runs in")


def _policy_python(repo: pygit2.Repository) -> str | None:
    from gitproof.policy import PolicyError, load_policy

    try:
        return load_policy(repo).python
    except PolicyError:
        return None  # the run refuses an invalid policy itself, saying why


def check(interpreter: Interpreter) -> str:
    """gitproof's version in that interpreter; InterpreterError when it cannot run the tests."""
    import gitproof

    if interpreter.is_current:
        return gitproof.__version__
    try:
        probe = subprocess.run([str(interpreter.path), "-c", _PROBE], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InterpreterError(f"cannot run the project's interpreter {interpreter.describe()}: "
                               f"{getattr(exc, 'strerror', None) or exc}; choose another with "
                               "--python PATH") from exc
    if probe.returncode in (3, 4):
        missing = "gitproof" if probe.returncode == 3 else "pytest"
        raise InterpreterError(
            f"the tests run with {interpreter.describe()}, which cannot import {missing}: gitproof's "
            f"pytest plugin makes the receipt there. Install it there: "
            f"{interpreter.path} -m pip install git-gpu-proof  (or choose another interpreter with "
            "--python PATH)")
    if probe.returncode != 0:
        first = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise InterpreterError(f"the project's interpreter {interpreter.describe()} failed to start "
                               f"(exit {probe.returncode}): {first}; choose another with --python PATH")
    return probe.stdout.strip()


def _command_path(value: str, origin: str) -> Path:
    """An interpreter named by path, or by a command name looked up on PATH."""
    found = value if os.sep in value or (os.altsep and os.altsep in value) else shutil.which(value)
    if found is None or not os.path.isfile(found):
        raise InterpreterError(f"{origin} names {value!r}, which is not an executable file; give "
                               "the path of the project's Python")
    if not os.access(found, os.X_OK):
        raise InterpreterError(f"{origin} names {found}, which is not executable")
    return Path(os.path.abspath(found))


def _venv_python(directory: Path, origin: str) -> Path:
    for name in _VENV_PYTHONS:
        candidate = directory / name
        if candidate.is_file():
            return Path(os.path.abspath(candidate))
    raise InterpreterError(f"{origin} is {directory}, which has no bin/python: recreate that "
                           "virtualenv, or choose the interpreter with --python PATH")


def _config_value(repo: pygit2.Repository, name: str) -> str | None:
    return git.config_value(repo, name) or None


# -- running pytest there --------------------------------------------------------------

def run_pytest(interpreter: Interpreter, args: list[str], cwd: Path,
               environment: Mapping[str, str] | None = None) -> int:
    """pytest's exit status; in this process when the interpreter is this one.

    ``environment`` adds variables for the run only. In a child process,
    Ctrl-C and SIGTERM are passed on to pytest, which stops the way it stops
    on Ctrl-C (nothing recorded), and the child is always waited for.
    """
    if interpreter.is_current:
        return _in_process(args, cwd, environment or {})
    env = {**os.environ, **(environment or {})}
    return _child([str(interpreter.path), "-m", "pytest", *args], cwd, env)


def _in_process(args: list[str], cwd: Path, environment: Mapping[str, str]) -> int:
    import pytest

    os.chdir(cwd)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        return int(pytest.main(args))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _child(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    shares_terminal = _in_foreground()
    sys.stdout.flush()
    sys.stderr.flush()
    child = _Forwarder(shares_terminal)
    handlers = {sig: signal.signal(sig, child.forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Sharing our process group, the child gets a terminal's Ctrl-C directly (and may
        # read the terminal, e.g. --pdb). Without a terminal it gets a group of its own, so
        # that a signal sent to our whole group reaches it once: from us.
        proc = subprocess.Popen(command, cwd=cwd, env=env, process_group=None if shares_terminal else 0)
        child.start(proc)
        returncode = proc.wait()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return _exit_status(returncode)


class _Forwarder:
    """Passes SIGINT and SIGTERM on to the child (those that came before it started, too)."""

    def __init__(self, shares_terminal: bool) -> None:
        self.shares_terminal = shares_terminal
        self.proc: subprocess.Popen[bytes] | None = None
        self.early: list[int] = []

    def start(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        for signum in self.early:
            self._send(signum)

    def forward(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT and self.shares_terminal and _in_foreground():
            return  # a terminal's Ctrl-C: the child, in our foreground group, has it already
        if self.proc is None:
            self.early.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:
            pass


def _in_foreground() -> bool:
    """Is this process in the foreground process group of its controlling terminal?"""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False  # no controlling terminal
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _exit_status(returncode: int) -> int:
    """A child killed by SIGINT counts as interrupted (pytest's 2); another signal N as 128 + N."""
    if returncode >= 0:
        return returncode
    return INTERRUPTED if -returncode == signal.SIGINT else 128 - returncode


INTERRUPTED = 2
