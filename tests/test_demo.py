"""The bundled demos, above all ``demo --cuda``: its refusals (for real: this machine has no
GPU and no PyTorch, and a throwaway fake ``torch`` stands in for "PyTorch without a GPU"),
its project and its steps. The full run needs a real GPU: `git gpu-proof demo --cuda`."""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pygit2
import pytest

import gitproof
from gitproof.demo import (
    CUDA,
    CUDA_PROJECT,
    PRINCIPAL,
    PROJECT,
    Demo,
    Step,
    check_cuda,
    create_demo_repo,
    cuda_steps,
    run_demo,
)
from gitproof.policy import load_policy, policy_from_toml
from tests.helpers import git
from tests.remotes import gp

ROOT = Path(__file__).resolve().parents[1]
TOOL = [sys.executable, "-m", "gitproof"]


def fake_torch(root: Path, cuda_build: str | None = "12.4", available: bool = False,
               first: str = "") -> Path:
    """A throwaway ``torch`` package with just what the CUDA check and pick_device() call;
    returns the directory to put on PYTHONPATH. ``first`` runs first on import."""
    package = root / "fake-torch" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"{first}\nfrom torch import cuda\n__version__ = '2.9.0+fake'\n\n"
        f"class version:\n    cuda = {cuda_build!r}\n\nclass Tensor:\n    pass\n")
    (package / "cuda.py").write_text(
        f"def is_available():\n    return {available!r}\n\n"
        "def device_count():\n    return 1\n\n"
        "def get_device_name(index):\n    return 'Fake GPU'\n")
    return package.parent


# -- refusals: nothing is created ---------------------------------------------------

def test_cuda_demo_refused_without_pytorch(tmp_path):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed here; the fake-torch tests cover the other refusals")
    target = tmp_path / "demo"
    result = gp(tmp_path, "demo", "--cuda", "--dir", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PyTorch is not installed" in result.stderr and "No module named 'torch'" in result.stderr
    assert "the plain `git gpu-proof demo` runs without a GPU" in result.stderr
    assert not target.exists()


@pytest.mark.parametrize("cuda_build, missing", [
    (None, "PyTorch 2.9.0+fake is a CPU-only build"),
    ("12.4", "PyTorch 2.9.0+fake (built for CUDA 12.4) sees no GPU: torch.cuda.is_available() is false"),
])
def test_cuda_demo_refused_when_pytorch_sees_no_gpu(tmp_path, cuda_build, missing):
    target = tmp_path / "demo"
    fakes = fake_torch(tmp_path, cuda_build=cuda_build)
    result = gp(tmp_path, "demo", "--cuda", "--dir", str(target), PYTHONPATH=str(fakes))
    assert result.returncode == 2, result.stdout + result.stderr
    assert missing in result.stderr
    assert "needs PyTorch with CUDA and a visible NVIDIA GPU" in result.stderr
    assert not target.exists()


def test_cuda_demo_refuses_an_existing_directory_first(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    result = gp(tmp_path, "demo", "--cuda", "--dir", str(taken))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "PyTorch" not in result.stderr
    assert list(taken.iterdir()) == []


@pytest.mark.parametrize("first, timeout, says", [
    ("raise OSError('libcudart.so.12: cannot open shared object file')", 60,
     "checking PyTorch failed: OSError: libcudart.so.12: cannot open shared object file."),
    ("import time; time.sleep(60)", 2, "checking PyTorch did not finish within 2 s."),
])
def test_check_cuda_reports_a_broken_or_hanging_pytorch(tmp_path, monkeypatch, first, timeout, says):
    monkeypatch.setenv("PYTHONPATH", str(fake_torch(tmp_path, first=first)))
    found = check_cuda(timeout=timeout)
    assert not found.ok
    assert found.detail.startswith(says)
    assert found.detail.endswith("the plain `git gpu-proof demo` runs without a GPU.")


def test_check_cuda_says_what_pytorch_sees(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(fake_torch(tmp_path, available=True)))
    found = check_cuda()
    assert found.ok
    assert found.detail == "PyTorch 2.9.0+fake (CUDA 12.4) sees 1 GPU(s): Fake GPU"


# -- the CUDA project and its steps ---------------------------------------------------

def test_cuda_project_files_are_valid():
    text = (CUDA_PROJECT / "pyproject.toml").read_text()
    policy = policy_from_toml(text, "cuda_project/pyproject.toml")
    assert policy.require_gpu_use and policy.require_gpu
    assert policy.allowed_signers == ".gpu-proof/allowed_signers"
    assert policy.fingerprint_paths == ["src", "tests"]
    assert tomllib.loads(text)["tool"]["pytest"]["ini_options"]["pythonpath"] == ["src"]
    sources = {path.relative_to(CUDA_PROJECT).as_posix(): path.read_text()
               for path in CUDA_PROJECT.rglob("*.py") if "__pycache__" not in path.parts}
    assert sorted(sources) == ["src/matmul.py", "tests/test_matmul.py"]
    for name, source in sources.items():
        compile(source, name, "exec")
    tests = [(node.name, [ast.unparse(d) for d in node.decorator_list])
             for node in ast.parse(sources["tests/test_matmul.py"]).body
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    # The GPU test first: it initialises CUDA before the fallback test runs.
    assert tests == [("test_matmul_on_gpu", ["pytest.mark.gpu_proof"]),
                     ("test_matmul_cpu_fallback", ["pytest.mark.gpu_proof"])]


def test_create_demo_repo_for_the_cuda_project(tmp_path):
    repo = create_demo_repo(tmp_path / "matmul", CUDA_PROJECT, CUDA.first_commit)
    assert git(repo, "log", "--format=%s") == "matmul: first GPU kernel"
    assert set(git(repo, "ls-files").splitlines()) == {
        ".gitignore", ".gpu-proof/allowed_signers", "pyproject.toml", "src/matmul.py", "tests/test_matmul.py"}
    assert git(repo, "status", "--porcelain") == ""
    key = Path(git(repo, "config", "user.signingKey"))
    assert key.is_file() and key.is_relative_to(repo / ".git")
    principal, options, *public = (repo / ".gpu-proof" / "allowed_signers").read_text().split()
    assert (principal, options) == (PRINCIPAL, 'namespaces="gpu-proof"')
    assert public == Path(f"{key}.pub").read_text().split()[:2]
    assert load_policy(pygit2.Repository(str(repo))).require_gpu_use


def test_planted_bug_picks_the_cpu_until_step_four_fixes_it(tmp_path):
    fakes = fake_torch(tmp_path, available=True)
    repo = create_demo_repo(tmp_path / "matmul", CUDA_PROJECT, CUDA.first_commit)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fakes), str(repo / "src")])}

    def picked() -> str:
        return subprocess.run([sys.executable, "-c", "from matmul import pick_device; print(pick_device())"],
                              env=env, capture_output=True, text=True, check=True).stdout.strip()

    assert picked() == "cpu"
    fix = next(step.before for step in cuda_steps() if step.before is not None)
    fix(repo)
    assert picked() == "cuda"
    assert git(repo, "log", "--format=%s").splitlines() == ["matmul: pick the GPU when there is one",
                                                           "matmul: first GPU kernel"]
    assert git(repo, "status", "--porcelain") == ""
    with pytest.raises(RuntimeError, match="does not contain"):
        fix(repo)  # fixed already: the step would prove nothing, so it refuses


def test_cuda_steps_tell_the_story_with_the_expected_exits():
    steps = cuda_steps()
    assert [(step.shown, step.argv, step.expect) for step in steps] == [
        ("git gpu-proof run", TOOL + ["run"], 6),
        ("git gpu-proof show", TOOL + ["show"], 0),
        ("git gpu-proof verify", TOOL + ["verify"], 1),
        ("git commit src/matmul.py && git gpu-proof run", TOOL + ["run"], 0),
        ("git gpu-proof verify", TOOL + ["verify"], 0),
        ("git notes --ref=gpu-proof show HEAD",
         ["git", "--no-pager", "notes", "--ref=gpu-proof", "show", "HEAD"], 0),
        ("git gpu-proof log", TOOL + ["log"], 0),
    ]
    assert [index for index, step in enumerate(steps) if step.before is not None] == [3]
    assert "NO-GPU" in steps[1].expect_output
    assert "test_matmul_cpu_fallback" in steps[2].expect_output
    assert "gpu-use: " in steps[5].expect_output


# -- the machinery both demos share ---------------------------------------------------

@pytest.mark.parametrize("step, says", [
    (Step("log", "git log", ["git", "--no-pager", "log", "--oneline"], expect_output=("not in any log",)),
     "demo step failed: the output does not contain 'not in any log'"),
    (Step("false", "false", ["false"]), "demo step failed: exit status 1, expected 0"),
])
def test_run_demo_stops_at_a_step_that_goes_otherwise(tmp_path, step, says):
    first = Step("status", "git status", ["git", "status"], expect_output=("nothing to commit",))
    never = Step("never reached", "true", ["true"])
    demo = Demo(PROJECT, "vecadd", "vecadd: first GPU kernel", lambda: [first, step, never])
    lines: list[str] = []
    assert run_demo(tmp_path / "demo", lines.append, demo) == 1
    output = "\n".join(lines)
    assert "== status" in output and "nothing to commit" in output
    assert output.endswith(says) and "never reached" not in output


def test_the_wheel_ships_both_demo_projects():
    """Every file of both projects matches a package-data glob (a glob's * stays within one folder)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = [PurePosixPath(g) for g in pyproject["tool"]["setuptools"]["package-data"]["gitproof"]]
    package = Path(gitproof.__file__).parent
    for project in (PROJECT, CUDA_PROJECT):
        for path in project.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                name = PurePosixPath(path.relative_to(package).as_posix())
                assert any(len(g.parts) == len(name.parts) and name.match(str(g)) for g in globs), name
