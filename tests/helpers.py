"""Small helpers for tests: real git, real ssh-keygen, no mocks."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


BIN = str(Path(sys.executable).parent)


def tool_environment(**extra: str) -> dict[str, str]:
    """This environment, with this interpreter's scripts first on PATH and no virtualenv
    active (``run`` would choose an activated one's interpreter)."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return {**env, "PATH": BIN + os.pathsep + env["PATH"], **extra}


def run_tool(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    """``git gpu-proof ARGS`` as a user runs it, with no terminal on stdin."""
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=tool_environment(**extra),
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def notes_tip(root: Path) -> str:
    return git(root, "rev-parse", "-q", "--verify", "refs/notes/gpu-proof", check=False)


def git(cwd: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, input=input, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


@dataclass
class Key:
    private: Path
    public: Path

    @property
    def public_line(self) -> str:
        return self.public.read_text().strip()

    @property
    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.public)],
            capture_output=True, text=True, check=True,
        ).stdout
        return out.split()[1]


def generate_key(directory: Path, key_type: str = "ed25519", name: str | None = None) -> Key:
    directory.mkdir(parents=True, exist_ok=True)
    name = name or key_type
    private = directory / name
    args = ["ssh-keygen", "-q", "-N", "", "-C", f"{name}@test", "-f", str(private)]
    if key_type.startswith("ecdsa"):
        bits = key_type.split("-")[1] if "-" in key_type else "256"
        args += ["-t", "ecdsa", "-b", bits]
    elif key_type.startswith("rsa"):
        args += ["-t", "rsa", "-b", "2048"]
    else:
        args += ["-t", key_type]
    subprocess.run(args, check=True, capture_output=True)
    return Key(private=private, public=directory / f"{name}.pub")


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def commit_all(root: Path, message: str = "change") -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD")


def init_repo(root: Path, email: str = "runner@example.com", name: str = "Test Runner",
              key_dir: Path | None = None) -> Key | None:
    """``git init`` at ``root`` (made if missing) with an identity set in the repository itself
    (pytester points HOME elsewhere); with ``key_dir``, a fresh key there as user.signingKey."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", name)
    git(root, "config", "user.email", email)
    if key_dir is None:
        return None
    key = generate_key(key_dir)
    git(root, "config", "user.signingKey", str(key.private))
    return key


def make_project_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    write_files(root, {
        "src/kernels.py": "def add(a, b):\n    return a + b\n",
        "tests/test_kernels.py": (
            "import pytest\n\n"
            "@pytest.mark.gpu_proof\n"
            "def test_add():\n    assert 1 + 1 == 2\n"
        ),
        "README.md": "demo\n",
    })
    commit_all(root, "initial")
    return root


def change_kernel(root: Path, body: str = "return a + b + 0", message: str = "kernel change") -> str:
    """A commit that changes the GPU code (src/kernels.py)."""
    write_files(root, {"src/kernels.py": f"def add(a, b):\n    {body}\n"})
    return commit_all(root, message)


def change_docs(root: Path, text: str = "more docs\n", message: str = "docs") -> str:
    """A commit outside the fingerprint paths (README.md)."""
    write_files(root, {"README.md": text})
    return commit_all(root, message)
