"""The bundled demo: a throwaway repository that goes through the whole job end to end."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PROJECT = Path(__file__).parent / "project"
PRINCIPAL = "demo@gpu-proof.example"
# Split the first receipt of HEAD's note into payload and signature, as docs/receipt-format.md shows.
OPENSSH_CHECK = (
    "git notes --ref=gpu-proof show HEAD > receipt.note && "
    "sed -n '/^-----BEGIN SSH SIGNATURE-----$/q;p' receipt.note > receipt.payload && "
    "sed -n '/^-----BEGIN SSH SIGNATURE-----$/,/^-----END SSH SIGNATURE-----$/p' receipt.note > receipt.sig && "
    f"ssh-keygen -Y verify -f .gpu-proof/allowed_signers -I {PRINCIPAL} -n gpu-proof "
    "-s receipt.sig < receipt.payload; status=$?; rm -f receipt.note receipt.payload receipt.sig; exit $status"
)


@dataclass
class Step:
    title: str
    shown: str
    argv: list[str]
    expect: int = 0


def _tool(*args: str) -> list[str]:
    return [sys.executable, "-m", "gitproof", *args]


def create_demo_repo(target: Path) -> Path:
    """Copy the demo project, make a throwaway key and allowed_signers, commit."""
    shutil.copytree(PROJECT, target, ignore=shutil.ignore_patterns("__pycache__"))
    run = lambda *argv: subprocess.run(argv, cwd=target, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "-q", "-b", "main")
    run("git", "config", "user.name", "Demo Developer")
    run("git", "config", "user.email", PRINCIPAL)
    key_dir = target / ".git" / "demo-key"
    key_dir.mkdir()
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key_dir / "id_ed25519"))
    run("git", "config", "user.signingKey", str(key_dir / "id_ed25519"))
    public = (key_dir / "id_ed25519.pub").read_text().split()
    signers = target / ".gpu-proof" / "allowed_signers"
    signers.parent.mkdir()
    signers.write_text(f'{PRINCIPAL} namespaces="gpu-proof" {public[0]} {public[1]}\n')
    (target / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "vecadd: first GPU kernel")
    return target


def steps(repo: Path) -> tuple[list[Step], Path]:
    kernel = repo / "src" / "vecadd.py"
    return [
        Step("Run the GPU tests and record a signed receipt", "git gpu-proof run", _tool("run")),
        Step("Verify HEAD (no GPU and no secrets needed)", "git gpu-proof verify", _tool("verify")),
        Step("The audit trail in plain git", "git log --notes=gpu-proof -1",
             ["git", "--no-pager", "log", "--notes=gpu-proof", "-1"]),
        Step("Check the signature with stock OpenSSH, no gitproof involved",
             "ssh-keygen -Y verify -f .gpu-proof/allowed_signers -I demo@gpu-proof.example "
             "-n gpu-proof -s receipt.sig < receipt.payload", ["sh", "-c", OPENSSH_CHECK]),
        Step("A docs-only commit stays validated", "git commit README.md && git gpu-proof verify",
             _tool("verify"), 0),
        Step("Change the kernel: HEAD is no longer validated", "git commit src/ && git gpu-proof verify",
             _tool("verify"), 1),
        Step("The history, one line per commit", "git gpu-proof log", _tool("log")),
    ], kernel


def _before(index: int, repo: Path, kernel: Path) -> None:
    git = lambda *argv: subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True)  # noqa: E731
    if index == 4:
        (repo / "README.md").write_text("# vecadd demo\n")
        git("add", "README.md")
        git("commit", "-q", "-m", "docs: add a README")
    if index == 5:
        kernel.write_text(kernel.read_text().replace("x + y for", "y + x for"))
        git("commit", "-q", "-am", "vecadd: reorder operands")


def run_demo(directory: Path | None, echo: Callable[[str], None] = print) -> int:
    """Run every step, printing what a user would type; return 0 when all went as expected."""
    repo = create_demo_repo(directory or Path(tempfile.mkdtemp(prefix="gpu-proof-demo-")) / "vecadd")
    echo(f"demo repository: {repo}\n")
    demo_steps, kernel = steps(repo)
    for index, step in enumerate(demo_steps):
        _before(index, repo, kernel)
        echo(f"== {step.title}\n$ {step.shown}")
        result = subprocess.run(step.argv, cwd=repo, capture_output=True, text=True)
        echo((result.stdout + result.stderr).rstrip() + "\n")
        if result.returncode != step.expect:
            echo(f"demo step failed: exit status {result.returncode}, expected {step.expect}")
            return 1
    echo(f"demo complete. Explore it: cd {repo} && git log --notes=gpu-proof")
    return 0
