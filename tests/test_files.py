"""Policy and trust files read from disk: regular files only, bounded (gitproof/files.py),
and what the commands say when a pull request plants something else there."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gitproof.files import UnreadableFile, read_regular
from tests.helpers import commit_all
from tests.remotes import gp, tool_env


def test_a_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular(path, "policy", limit=100) == b"x" * 100


@pytest.mark.parametrize("make, says", [
    (lambda p: p.symlink_to("/dev/zero"), "is not a regular file"),
    (lambda p: os.mkfifo(p), "is not a regular file"),
    (lambda p: p.mkdir(), "is not a regular file"),
    (lambda p: p.write_bytes(b"x" * 101), "over the 100-byte limit"),
    (lambda p: None, "No such file or directory"),
])
def test_anything_else_is_refused_without_reading_it(tmp_path, make, says):
    path = tmp_path / "f"
    make(path)
    with pytest.raises(UnreadableFile, match=says):
        read_regular(path, "policy", limit=100)


@pytest.mark.parametrize("planted", ["pyproject.toml", ".gpu-proof/allowed_signers"])
@pytest.mark.parametrize("command", [("status",), ("verify",), ("show",), ("log", "-n", "3")])
def test_a_trust_file_linked_to_dev_zero_is_a_clear_error_not_a_hang(cli_project: Path, planted, command):
    target = cli_project / planted
    target.unlink()
    target.symlink_to("/dev/zero")
    commit_all(cli_project, "link a trust file to /dev/zero")
    result = subprocess.run(["git", "gpu-proof", *command], cwd=cli_project, capture_output=True, text=True,
                            timeout=60, env=tool_env())
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "is not a regular file" in output, output
    if command == ("verify",):
        assert result.returncode == 2


def test_the_pre_push_hook_refuses_clearly_on_a_planted_fifo(cli_project: Path):
    assert gp(cli_project, "install").returncode == 0
    os.unlink(cli_project / "pyproject.toml")
    os.mkfifo(cli_project / "pyproject.toml")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cli_project, capture_output=True, text=True).stdout.strip()
    hook = gp(cli_project, "hook", "pre-push", "origin", "url",
              input=f"refs/heads/main {head} refs/heads/main {'0' * 40}\n")
    assert hook.returncode == 2 and "is not a regular file" in hook.stderr
