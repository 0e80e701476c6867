"""The bundled demos: throwaway repositories that go through the whole job end to end.

``vecadd`` runs anywhere (its tests fall back to the CPU); ``matmul`` (``--cuda``) needs
PyTorch with a visible NVIDIA GPU and shows the per-test GPU-use evidence catching a
test that passes without ever touching the GPU.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from gitproof.trust.allowed_signers import signer_line

PROJECT = Path(__file__).parent / "project"
CUDA_PROJECT = Path(__file__).parent / "cuda_project"
PRINCIPAL = "demo@gpu-proof.example"
FIRST_COMMIT = "vecadd: first GPU kernel"
# Split the first receipt of HEAD's note into payload and signature, as docs/receipt-format.md shows.
OPENSSH_CHECK = (
    "git notes --ref=gpu-proof show HEAD > receipt.note && "
    "sed -n '/^-----BEGIN SSH SIGNATURE-----$/q;p' receipt.note > receipt.payload && "
    "sed -n '/^-----BEGIN SSH SIGNATURE-----$/,/^-----END SSH SIGNATURE-----$/p' receipt.note > receipt.sig && "
    f"ssh-keygen -Y verify -f .gpu-proof/allowed_signers -I {PRINCIPAL} -n gpu-proof "
    "-s receipt.sig < receipt.payload; status=$?; rm -f receipt.note receipt.payload receipt.sig; exit $status"
)
# The CUDA demo's planted bug in src/matmul.py, and what step 4 turns it into.
PLANTED_BUG = 'torch.cuda.is_available() == "True"'
BUG_FIX = "torch.cuda.is_available()"
CUDA_CHECK_SECONDS = 120


@dataclass
class Step:
    title: str
    shown: str
    argv: list[str]
    expect: int = 0
    # A change made in the repository before the command runs (a commit the story needs).
    before: Callable[[Path], None] | None = None
    # Text the command's output must hold, so a step cannot pass for the wrong reason.
    expect_output: tuple[str, ...] = ()


@dataclass(frozen=True)
class Demo:
    """One bundled demo: which project to copy, its first commit, the steps run on it."""
    project: Path
    name: str
    first_commit: str
    steps: Callable[[], list[Step]] = field(repr=False)


class CudaCheck(NamedTuple):
    ok: bool
    detail: str  # what PyTorch sees, or what is missing


def _tool(*args: str) -> list[str]:
    return [sys.executable, "-m", "gitproof", *args]


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", *argv], cwd=repo, check=True, capture_output=True)


def create_demo_repo(target: Path, project: Path = PROJECT, message: str = FIRST_COMMIT) -> Path:
    """Copy a demo project, make a throwaway key and allowed_signers, commit."""
    shutil.copytree(project, target, ignore=shutil.ignore_patterns("__pycache__"))
    _git(target, "init", "-q", "-b", "main")
    _git(target, "config", "user.name", "Demo Developer")
    _git(target, "config", "user.email", PRINCIPAL)
    key_dir = target / ".git" / "demo-key"
    key_dir.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL,
                    "-f", str(key_dir / "id_ed25519")], check=True, capture_output=True)
    _git(target, "config", "user.signingKey", str(key_dir / "id_ed25519"))
    public = (key_dir / "id_ed25519.pub").read_text().split()
    signers = target / ".gpu-proof" / "allowed_signers"
    signers.parent.mkdir()
    signers.write_text(signer_line(PRINCIPAL, f"{public[0]} {public[1]}") + "\n")
    (target / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", message)
    return target


def write_and_commit(path: str, text: str, message: str) -> Callable[[Path], None]:
    """A step's preparation: write one file and commit it."""
    def change(repo: Path) -> None:
        (repo / path).write_text(text)
        _git(repo, "add", path)
        _git(repo, "commit", "-q", "-m", message)
    return change


def replace_and_commit(path: str, old: str, new: str, message: str) -> Callable[[Path], None]:
    """A step's preparation: edit one file and commit it; the text to replace must be there,
    or the step after it would prove nothing."""
    def change(repo: Path) -> None:
        text = (repo / path).read_text()
        if old not in text:
            raise RuntimeError(f"demo: {path} does not contain {old!r}")
        write_and_commit(path, text.replace(old, new), message)(repo)
    return change


def vecadd_steps() -> list[Step]:
    return [
        Step("Run the GPU tests and record a signed receipt", "git gpu-proof run", _tool("run")),
        Step("Verify HEAD (no GPU and no secrets needed)", "git gpu-proof verify", _tool("verify")),
        Step("The audit trail in plain git", "git log --notes=gpu-proof -1",
             ["git", "--no-pager", "log", "--notes=gpu-proof", "-1"]),
        Step("Check the signature with stock OpenSSH, no gitproof involved",
             "ssh-keygen -Y verify -f .gpu-proof/allowed_signers -I demo@gpu-proof.example "
             "-n gpu-proof -s receipt.sig < receipt.payload", ["sh", "-c", OPENSSH_CHECK]),
        Step("A docs-only commit stays validated", "git commit README.md && git gpu-proof verify",
             _tool("verify"), 0,
             before=write_and_commit("README.md", "# vecadd demo\n", "docs: add a README")),
        Step("Change the kernel: HEAD is no longer validated", "git commit src/ && git gpu-proof verify",
             _tool("verify"), 1,
             before=replace_and_commit("src/vecadd.py", "x + y for", "y + x for",
                                       "vecadd: reorder operands")),
        Step("The history, one line per commit", "git gpu-proof log", _tool("log")),
    ]


def cuda_steps() -> list[Step]:
    fix = replace_and_commit("src/matmul.py", PLANTED_BUG, BUG_FIX, "matmul: pick the GPU when there is one")
    return [
        Step("Run the tests on the GPU and record a signed receipt; run's own policy check "
             "already says it will not validate (exit 6)", "git gpu-proof run", _tool("run"), 6,
             expect_output=("gpu-not-used",)),
        Step("Show the receipt: device facts, and which tests used the GPU", "git gpu-proof show",
             _tool("show"), expect_output=("NO-GPU",)),
        Step("Verify HEAD: refused, a passing test never used the GPU (require_gpu_use = true)",
             "git gpu-proof verify", _tool("verify"), 1, expect_output=("test_matmul_cpu_fallback",)),
        Step("Fix the planted bug in pick_device(), commit, record a new receipt",
             "git commit src/matmul.py && git gpu-proof run", _tool("run"), before=fix),
        Step("Verify HEAD: every passing test used the GPU", "git gpu-proof verify", _tool("verify")),
        Step("The receipt exactly as stored in the git note", "git notes --ref=gpu-proof show HEAD",
             ["git", "--no-pager", "notes", "--ref=gpu-proof", "show", "HEAD"], expect_output=("gpu-use: ",)),
        Step("The history, one line per commit", "git gpu-proof log", _tool("log")),
    ]


VECADD = Demo(PROJECT, "vecadd", FIRST_COMMIT, vecadd_steps)
CUDA = Demo(CUDA_PROJECT, "matmul", "matmul: first GPU kernel", cuda_steps)

# Run by the same interpreter as the demo's tests, in its own process: importing torch
# here would slow every command, and initialising CUDA in this process is not ours to do.
_CUDA_PROBE = """
import sys
try:
    import torch
except ImportError as exc:
    print(exc); sys.exit(3)
built = getattr(torch.version, "cuda", None)
if built is None:
    print(torch.__version__); sys.exit(4)
if not torch.cuda.is_available():
    print(f"{torch.__version__} (built for CUDA {built})"); sys.exit(5)
print(f"PyTorch {torch.__version__} (CUDA {built}) sees {torch.cuda.device_count()} GPU(s): "
      f"{torch.cuda.get_device_name(0)}")
"""
_CUDA_MISSING = {
    3: "PyTorch is not installed for {python} ({detail})",
    4: "PyTorch {detail} is a CPU-only build (torch.version.cuda is None); install a CUDA build",
    5: "PyTorch {detail} sees no GPU: torch.cuda.is_available() is false "
       "(no NVIDIA driver or GPU, or CUDA_VISIBLE_DEVICES hides them all)",
}
_NEEDS = ("The --cuda demo needs PyTorch with CUDA and a visible NVIDIA GPU; "
          "the plain `git gpu-proof demo` runs without a GPU.")


def check_cuda(python: str = sys.executable, timeout: float = CUDA_CHECK_SECONDS) -> CudaCheck:
    """Whether ``python`` can import torch and torch sees a GPU, asked in a child process."""
    try:
        result = subprocess.run([python, "-c", _CUDA_PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CudaCheck(False, f"checking PyTorch did not finish within {timeout:g} s. {_NEEDS}")
    detail = result.stdout.strip() or (result.stderr.strip().splitlines() or ["no output"])[-1]
    if result.returncode == 0:
        return CudaCheck(True, detail)
    template = _CUDA_MISSING.get(result.returncode, "checking PyTorch failed: {detail}")
    return CudaCheck(False, f"{template.format(python=python, detail=detail)}. {_NEEDS}")


def _step_problem(step: Step, returncode: int, output: str) -> str | None:
    if returncode != step.expect:
        return f"exit status {returncode}, expected {step.expect}"
    missing = [text for text in step.expect_output if text not in output]
    return f"the output does not contain {missing[0]!r}" if missing else None


def run_demo(directory: Path | None, echo: Callable[[str], None] = print, demo: Demo = VECADD) -> int:
    """Run every step, printing what a user would type; return 0 when all went as expected."""
    target = directory or Path(tempfile.mkdtemp(prefix="gpu-proof-demo-")) / demo.name
    repo = create_demo_repo(target, demo.project, demo.first_commit)
    echo(f"demo repository: {repo}\n")
    for step in demo.steps():
        if step.before is not None:
            step.before(repo)
        echo(f"== {step.title}\n$ {step.shown}")
        result = subprocess.run(step.argv, cwd=repo, capture_output=True, text=True)
        output = (result.stdout + result.stderr).rstrip()
        echo(output + "\n")
        problem = _step_problem(step, result.returncode, output)
        if problem is not None:
            echo(f"demo step failed: {problem}")
            return 1
    echo(f"demo complete. Explore it: cd {repo} && git log --notes=gpu-proof")
    return 0
