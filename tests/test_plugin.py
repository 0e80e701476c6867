"""Real pytest sessions (pytester) in real git repositories with real keys."""
from __future__ import annotations

import stat
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NOTES_REF, NotesStore
from gitproof.pending import PendingStore
from tests.helpers import commit_all, git, init_repo

pytest_plugins = ["pytester"]

OUTCOMES_MODULE = """
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup boom")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown boom")

@pytest.mark.gpu_proof
def test_passes(): pass

@pytest.mark.gpu_proof
def test_fails(): assert False

@pytest.mark.gpu_proof
def test_setup_error(broken_setup): pass

@pytest.mark.gpu_proof
def test_teardown_error(broken_teardown): pass

@pytest.mark.gpu_proof
def test_skipped(): pytest.skip("no")

@pytest.mark.gpu_proof
@pytest.mark.xfail(reason="known")
def test_xfailed(): assert False

@pytest.mark.gpu_proof
@pytest.mark.xfail(reason="lenient")
def test_xpassed(): pass

@pytest.mark.gpu_proof
@pytest.mark.xfail(reason="strict", strict=True)
def test_strict_xpass(): pass

@pytest.mark.gpu_equivalence
def test_alias(): pass

def test_not_marked(): pass
"""

PASSING_MODULE = """
import pytest

@pytest.mark.gpu_proof
def test_ok(): pass

def test_cpu_only(): pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    init_repo(root, key_dir=root / ".git" / "test-keys")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    (root / "src").mkdir()
    (root / "src" / "kernel.py").write_text("X = 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_gpu.py").write_text(PASSING_MODULE)
    commit_all(root, "initial")
    return root


def notes(root: Path):
    repo = pygit2.Repository(str(root))
    return NotesStore(repo).entries(str(repo.head.target))


def notes_ref(root: Path) -> str | None:
    return git(root, "rev-parse", "-q", "--verify", NOTES_REF, check=False) or None


def test_passing_run_attaches_a_receipt_to_head(pytester, project):
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*gpu-proof: receipt passed (1 passed)*note on*"])
    [entry] = notes(project)
    receipt = entry.signed.receipt
    assert [(t.nodeid, t.outcome) for t in receipt.tests] == [("tests/test_gpu.py::test_ok", "passed")]
    assert receipt.trees == {p: git(project, "rev-parse", f"HEAD:{p}") for p in ("src", "tests")}
    assert receipt.commit == git(project, "rev-parse", "HEAD")
    assert receipt.branch == "main" and receipt.mode == "local"
    assert receipt.signer == "runner@example.com"
    assert receipt.environment["gitproof"] and receipt.environment["python"]


def test_every_outcome_is_recorded_and_failures_make_a_failed_receipt(pytester, project):
    (project / "tests" / "test_gpu.py").write_text(OUTCOMES_MODULE)
    commit_all(project, "outcomes")
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == 1
    [entry] = notes(project)
    outcomes = {t.nodeid.split("::")[1]: t.outcome for t in entry.signed.receipt.tests}
    assert outcomes == {
        "test_passes": "passed", "test_fails": "failed", "test_setup_error": "error",
        "test_teardown_error": "error", "test_skipped": "skipped", "test_xfailed": "xfailed",
        "test_xpassed": "xpassed", "test_strict_xpass": "failed", "test_alias": "passed",
    }
    assert entry.signed.receipt.verdict == "failed"


def test_no_marked_test_refuses_and_writes_nothing(pytester, project):
    (project / "tests" / "test_gpu.py").write_text("def test_plain(): pass\n")
    commit_all(project, "no marks")
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no test marked @pytest.mark.gpu_proof or @pytest.mark.gpu_equivalence*"])
    assert notes_ref(project) is None


def test_missing_signing_key_refuses_before_running_tests(pytester, project):
    git(project, "config", "--unset", "user.signingKey")
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*user.signingKey*Nothing recorded*"])
    assert "passed" not in result.stdout.str()
    assert notes_ref(project) is None


def test_not_a_repository_refuses(pytester):
    pytester.makepyfile(test_x=PASSING_MODULE)
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*not inside a git repository*"])


def test_repository_without_commits_refuses(pytester):
    git(pytester.path, "init", "-q")
    git(pytester.path, "config", "user.email", "runner@example.com")
    pytester.makepyfile(test_x=PASSING_MODULE)
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no commits yet*"])


def test_uncommitted_gpu_code_makes_a_pending_receipt_not_a_note(pytester, project):
    (project / "src" / "kernel.py").write_text("X = 2\n")
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*pending receipt*"])
    assert notes_ref(project) is None
    [pending] = PendingStore(pygit2.Repository(str(project))).list()
    commit_all(project, "record the change")
    assert pending.signed.receipt.trees["src"] == git(project, "rev-parse", "HEAD:src")


def test_code_edited_during_the_run_records_nothing(pytester, project):
    (project / "tests" / "test_gpu.py").write_text(
        "import pathlib, pytest\n\n@pytest.mark.gpu_proof\ndef test_edits():\n"
        f"    pathlib.Path({str(project / 'src' / 'kernel.py')!r}).write_text('X = 3\\n')\n")
    commit_all(project, "self-editing test")
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*changed while the tests ran*"])
    assert notes_ref(project) is None and not PendingStore(pygit2.Repository(str(project))).list()


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_signing_failure_after_the_run_leaves_notes_untouched(pytester, project):
    pytester.runpytest("--gpu-proof")
    before = notes_ref(project)
    (project / "src" / "kernel.py").write_text("X = 5\n")
    commit_all(project, "next")
    git(project, "config", "gpg.ssh.program", str(_script(project / ".git" / "bad-signer", "echo boom >&2; exit 1\n")))
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*boom*"])
    assert notes_ref(project) == before


def test_fake_gpu_facts_are_recorded(pytester, project, monkeypatch):
    fake = _script(project / ".git" / "nvidia-smi",
                   'echo "0, NVIDIA H100 80GB HBM3, GPU-abc, 550.54.15, 81559, 9.0, 00000000:18:00.0, Disabled"\n')
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(fake))
    assert pytester.runpytest("--gpu-proof").ret == 0
    [entry] = notes(project)
    [gpu] = entry.signed.receipt.gpus
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["uuid"] == "GPU-abc"
    assert gpu["compute_capability"] == "9.0" and gpu["memory_mib"] == 81559
    assert (gpu["pci_bus_id"], gpu["mig"], gpu["visible"]) == ("00000000:18:00.0", "disabled", True)
    assert entry.signed.receipt.gpu_facts["source"] == "nvidia-smi"


def test_gpu_uuid_can_be_left_out_by_policy(pytester, project, monkeypatch):
    fake = _script(project / ".git" / "nvidia-smi",
                   'echo "0, NVIDIA A100, GPU-secret, 550, 40960, 8.0, 00000000:3B:00.0, Enabled"\n')
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(fake))
    (project / "pyproject.toml").write_text("[tool.gpu_proof]\ninclude_gpu_uuid = false\n")
    commit_all(project, "privacy")
    assert pytester.runpytest("--gpu-proof").ret == 0
    [entry] = notes(project)
    assert "uuid" not in entry.signed.receipt.gpus[0]
    assert b"GPU-secret" not in entry.signed.payload


def test_gpu_required_skips_without_a_gpu(pytester, monkeypatch):
    from gitproof import gpu

    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(pytester.path / "absent-nvidia-smi"))
    gpu.gpu_visible.cache_clear()
    pytester.makepyfile(test_x="import pytest\n\n@pytest.mark.gpu_required\ndef test_needs_gpu(): pass\n")
    result = pytester.runpytest("-rs")
    gpu.gpu_visible.cache_clear()
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*gpu_required: no GPU visible*"])


def test_gpu_proof_check_records_errors_and_fails_on_mismatch(pytester, project):
    (project / "tests" / "test_gpu.py").write_text(
        "import numpy as np, pytest\n\n"
        "@pytest.mark.gpu_proof\ndef test_close(gpu_proof_check):\n"
        "    gpu_proof_check('close', lambda: np.ones(4), lambda: np.ones(4) + 1e-9)\n\n"
        "@pytest.mark.gpu_proof\ndef test_far(gpu_proof_check):\n"
        "    gpu_proof_check('far', lambda: np.ones(4), lambda: np.ones(4) * 2)\n\n"
        "@pytest.mark.gpu_proof\ndef test_shape(gpu_proof_check):\n"
        "    gpu_proof_check('shape', lambda: np.ones(4), lambda: np.ones(5))\n")
    commit_all(project, "checks")
    result = pytester.runpytest("--gpu-proof")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*'far' mismatch: max abs error 1*", "*'shape' mismatch: shape mismatch*"])
    [entry] = notes(project)
    checks = {c["name"]: c for c in entry.signed.receipt.checks}
    assert checks["close"]["ok"] and checks["close"]["max_abs_err"] < 1e-8
    assert not checks["far"]["ok"] and checks["far"]["max_abs_err"] == 1.0
    assert checks["far"]["max_rel_err"] == 1.0 and checks["far"]["test"].endswith("::test_far")
    assert not checks["shape"]["ok"]


def test_unencodable_check_metadata_is_recorded_as_text(pytester, project):
    (project / "tests" / "test_gpu.py").write_text(
        "import pytest\n\n"
        "class Scalar:  # behaves like a NumPy scalar\n"
        "    def item(self): return 2.5\n\n"
        "@pytest.mark.gpu_proof\ndef test_meta(gpu_proof_check):\n"
        "    gpu_proof_check('m', lambda: 1, lambda: 1,\n"
        "                    metadata={'nan': float('nan'), 'np': Scalar(), 'obj': object})\n")
    commit_all(project, "metadata")
    assert pytester.runpytest("--gpu-proof").ret == 0
    [entry] = notes(project)
    meta = entry.signed.receipt.checks[0]["metadata"]
    assert meta["nan"] == "nan" and meta["np"] == 2.5 and meta["obj"] == "<class 'object'>"


def test_runs_without_a_gitignore_for_bytecode(pytester, project):
    (project / ".gitignore").unlink()
    commit_all(project, "no ignore file")
    result = pytester.runpytest("--gpu-proof", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    assert len(notes(project)) == 1


def test_plugin_is_inert_without_the_option(pytester, project):
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)
    assert notes_ref(project) is None


def test_every_test_that_ran_gets_one_gpu_use_record(pytester, project, monkeypatch):
    monkeypatch.setenv("GITPROOF_LIBCUDA", str(project / "no-libcuda.so"))  # the driver: absent
    (project / "tests" / "test_gpu.py").write_text(OUTCOMES_MODULE)
    commit_all(project, "outcomes")
    result = pytester.runpytest("--gpu-proof")
    [entry] = notes(project)
    receipt = entry.signed.receipt
    assert [u["test"] for u in receipt.gpu_use] == [t.nodeid for t in receipt.tests]
    uses = {u["test"].split("::")[1]: (u["used"], u["method"]) for u in receipt.gpu_use}
    assert uses.pop("test_setup_error") == (None, None)  # its body never ran
    assert set(uses.values()) == {(False, "cuda-driver.not-loaded")}
    result.stdout.fnmatch_lines(["gpu-proof: GPU use: 0 used, 8 not used (*test_passes, *, and 3 more), "
                                 "1 unknown (tests/test_gpu.py::test_setup_error)"])


WATCHER_PROBE = """
import pytest

@pytest.mark.gpu_proof
def test_watcher(request):
    watching = request.config.pluginmanager.get_plugin("gitproof-gpu-use") is not None
    assert watching == request.config.getoption("gpu_proof")
"""


@pytest.mark.parametrize("args", [(), ("--gpu-proof",)])
def test_tests_are_watched_only_when_recording(pytester, project, args):
    (project / "tests" / "test_gpu.py").write_text(WATCHER_PROBE)
    commit_all(project, "watcher probe")
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert ("GPU use:" in result.stdout.str()) == bool(args)


def test_gpu_use_records_count_only_from_teardown_reports():
    from types import SimpleNamespace

    from gitproof.recorder import GPU_USE_PROPERTY, Recorder

    def report(*records):
        return SimpleNamespace(user_properties=[(GPU_USE_PROPERTY, r) for r in records])

    forged = {"test": "t::crashed", "used": True}
    recorder = Recorder(config=None)
    recorder.reports = {
        "t::ok": {"call": report(forged), "teardown": report({"test": "t::ok", "used": False})},
        "t::crashed": {"setup": report(), "call": report(forged)},  # worker died in teardown
    }
    assert recorder.gpu_uses() == [{"test": "t::ok", "used": False}]
