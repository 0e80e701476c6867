"""A bare remote on disk and several clones of it, each with a real key."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import Key, commit_all, generate_key, git, write_files
from tests.receipts import trust

BIN = str(Path(sys.executable).parent)
PRINCIPALS = ("alice@example.com", "bob@example.com", "carol@example.com")


def tool_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], **extra}


def gp(cwd: Path, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=tool_env(**env), input=input,
                          capture_output=True, text=True, timeout=120)


def push(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "push", *args], cwd=cwd, env=tool_env(), capture_output=True,
                          text=True, timeout=120)


class World:
    """``origin.git`` plus clones; every clone trusts every principal's key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.remote = root / "origin.git"
        git(root, "init", "-q", "--bare", str(self.remote))
        self.keys = {p: generate_key(root / "keys", "ed25519", p.split("@")[0]) for p in PRINCIPALS}
        seed = root / "seed"
        git(root, "clone", "-q", str(self.remote), str(seed))
        self._configure(seed, "alice@example.com")
        write_files(seed, {
            "src/kernels.py": "def add(a, b):\n    return a + b\n",
            "tests/test_kernels.py": ("import pytest\n\n@pytest.mark.gpu_proof\n"
                                      "def test_add():\n    assert 1 + 1 == 2\n"),
            "README.md": "project\n",
            ".gitignore": "__pycache__/\n.pytest_cache/\n",
        })
        for principal, key in self.keys.items():
            trust(seed, key, principal)
        commit_all(seed, "initial")
        git(seed, "push", "-q", "origin", "main")

    def _configure(self, clone: Path, principal: str) -> None:
        git(clone, "config", "user.email", principal)
        git(clone, "config", "user.name", principal.split("@")[0])
        git(clone, "config", "user.signingKey", str(self.keys[principal].private))

    def clone(self, name: str, principal: str = "alice@example.com", hook: bool = True) -> Path:
        path = self.root / name
        git(self.root, "clone", "-q", str(self.remote), str(path))
        self._configure(path, principal)
        if hook:
            result = gp(path, "install")
            assert result.returncode == 0, result.stderr
        return path

    def key(self, principal: str) -> Key:
        return self.keys[principal]

    def remote_notes(self) -> str:
        return git(self.remote, "rev-parse", "-q", "--verify", "refs/notes/gpu-proof", check=False)
