"""Real ``pytest --gpu-proof`` sessions in child processes whose tests drive fake frameworks:
per-test GPU-use records from the plugin to the signed receipt, and verify reading them.

Only the framework / driver / NVML / CUPTI boundary is fake (tests/fakes: torch,
cupy, pynvml, and libcuda and libcupti compiled from C); the monitor, the plugin,
the receipt and git are the real ones.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from gitproof.gpu import nvml
from gitproof.gpu.cupti import ENV_LIBRARY as CUPTI_LIBRARY
from gitproof.gpu.driver import ENV_LIBRARY
from gitproof.gpu.records import METHOD_CONTEXT, METHOD_KERNELS, METHOD_NOT_LOADED, METHOD_TORCH
from gitproof.notes import NotesStore
from tests.helpers import commit_all, write_files
from tests.libcuda_fake import FAKES, PCI_0, PCI_1, fresh_copy
from tests.remotes import gp

pytestmark = pytest.mark.usefixtures("isolated_boundaries")


TORCH_TESTS = """
import pytest
import torch


@pytest.mark.gpu_proof
def test_on_gpu():
    torch.cuda._fake_allocate(0, 3)


@pytest.mark.gpu_proof
def test_cpu_fallback():
    device = "cpu"  # what a quiet fallback looks like: nothing reaches the GPU
    assert device == "cpu"
"""


DRIVER_TESTS = """
import ctypes
import os

import pytest


@pytest.mark.gpu_proof
def test_raw_cuda():
    lib = ctypes.CDLL(os.environ["GITPROOF_LIBCUDA"], mode=os.RTLD_GLOBAL)
    assert lib.cuInit(0) == 0
    context = ctypes.c_void_p()
    assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), 1) == 0
"""


NVML_CONFTEST = """
import json
import os


def pytest_configure(config):
    # NVML (the fake) lists this very process on the first GPU
    devices = [{"name": "Fake GPU", "uuid": "GPU-00102030-4050-6070-8090-a0b0c0d0e0f0",
                "pci_bus_id": "00000000:18:00.0", "memory_total": 85899345920,
                "compute_capability": [9, 0], "processes": [os.getpid()]}]
    with open(os.environ["GITPROOF_FAKE_NVML"], "w") as handle:
        json.dump({"devices": devices}, handle)
"""



def run_session(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``pytest --gpu-proof`` in a child process, the fakes importable there."""
    path = os.pathsep.join(p for p in (str(FAKES), os.environ.get("PYTHONPATH")) if p)
    inherited = {k: v for k, v in os.environ.items() if k not in (nvml.ENV_SWITCH, "GITPROOF_FAKE_NVML")}
    full = {**inherited, "PYTHONPATH": path, **(env or {})}  # NVML: the fake, with no driver
    return subprocess.run([sys.executable, "-m", "pytest", "--gpu-proof", "-q", *args], cwd=root,
                          env=full, capture_output=True, text=True, timeout=300)


def gpu_uses(root: Path) -> dict[str, dict]:
    repo = pygit2.Repository(str(root))
    [entry] = NotesStore(repo).entries(str(repo.head.target))
    return {use["test"]: use for use in entry.signed.receipt.gpu_use}


@pytest.fixture
def torch_project(cli_project: Path, built_libcuda: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of fake-torch tests; the sessions' torch drives the fake driver, as torch does."""
    monkeypatch.setenv(ENV_LIBRARY, str(fresh_copy(built_libcuda, tmp_path)))
    write_files(cli_project, {"tests/test_kernels.py": TORCH_TESTS})
    commit_all(cli_project, "torch tests")
    return cli_project


def assert_torch_records(uses: dict[str, dict]) -> None:
    on_gpu = uses["tests/test_kernels.py::test_on_gpu"]
    assert (on_gpu["used"], on_gpu["method"], on_gpu["devices"]) == (True, METHOD_TORCH, [PCI_0])
    assert on_gpu["evidence"] == "3 torch allocations on cuda:0"
    fallback = uses["tests/test_kernels.py::test_cpu_fallback"]
    assert (fallback["used"], fallback["method"], fallback["nvml"]) == (False, METHOD_TORCH, None)
    # which depends on whether the GPU test ran first in this process
    assert fallback["evidence"].startswith(("no torch CUDA allocation during the test; a CUDA context "
                                            "existed before the test",
                                            "torch never initialised CUDA; libcuda was never loaded"))


def test_session_records_gpu_use_per_test(torch_project):
    run = run_session(torch_project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ("gpu-proof: GPU use: 1 used, 1 not used (tests/test_kernels.py::test_cpu_fallback), "
            "0 unknown") in run.stdout
    uses = gpu_uses(torch_project)
    assert_torch_records(uses)
    assert uses["tests/test_kernels.py::test_on_gpu"]["nvml"] == "unavailable"


def test_records_from_xdist_workers_reach_the_receipt(torch_project):
    run = run_session(torch_project, "-n", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    uses = gpu_uses(torch_project)
    assert sorted(uses) == ["tests/test_kernels.py::test_cpu_fallback", "tests/test_kernels.py::test_on_gpu"]
    assert_torch_records(uses)


def test_nvml_corroborates_use_in_a_real_session(torch_project, tmp_path):
    write_files(torch_project, {"tests/conftest.py": NVML_CONFTEST})
    commit_all(torch_project, "nvml")
    run = run_session(torch_project, env={"GITPROOF_FAKE_NVML": str(tmp_path / "nvml.json")})
    assert run.returncode == 0, run.stdout + run.stderr
    assert gpu_uses(torch_project)["tests/test_kernels.py::test_on_gpu"]["nvml"] == "listed"


def test_a_test_without_any_framework_or_driver_did_not_use_the_gpu(cli_project):
    run = run_session(cli_project)
    assert run.returncode == 0, run.stdout + run.stderr
    [use] = gpu_uses(cli_project).values()
    assert use == {"test": "tests/test_kernels.py::test_add", "used": False, "method": METHOD_NOT_LOADED,
                   "evidence": "libcuda was never loaded by the test process", "devices": [],
                   "nvml": None}


def test_raw_driver_use_in_a_real_session(cli_project, built_libcuda, tmp_path):
    write_files(cli_project, {"tests/test_kernels.py": DRIVER_TESTS})
    commit_all(cli_project, "driver tests")
    run = run_session(cli_project, env={ENV_LIBRARY: str(fresh_copy(built_libcuda, tmp_path))})
    assert run.returncode == 0, run.stdout + run.stderr
    [use] = gpu_uses(cli_project).values()
    assert (use["used"], use["method"], use["devices"]) == (True, METHOD_CONTEXT, [PCI_1])



CPU_TESTS = """
import pytest


@pytest.mark.gpu_proof
@pytest.mark.parametrize("n", range(3))
def test_cpu(n):
    assert n + 1 > n
"""


def test_the_driver_loaded_after_many_tests_without_it_is_seen(cli_project, built_libcuda, tmp_path):
    """The driver probe asks the dynamic linker for libcuda again only once it loaded something:
    the test that loads it after tests that did not is still seen."""
    write_files(cli_project, {"tests/test_kernels.py": CPU_TESTS, "tests/test_raw.py": DRIVER_TESTS})
    commit_all(cli_project, "CPU tests, then driver tests")
    run = run_session(cli_project, env={ENV_LIBRARY: str(fresh_copy(built_libcuda, tmp_path))})
    assert run.returncode == 0, run.stdout + run.stderr
    uses = gpu_uses(cli_project)
    assert [uses[f"tests/test_kernels.py::test_cpu[{n}]"]["method"] for n in range(3)] == [METHOD_NOT_LOADED] * 3
    raw = uses["tests/test_raw.py::test_raw_cuda"]
    assert (raw["used"], raw["method"], raw["devices"]) == (True, METHOD_CONTEXT, [PCI_1])


def test_require_gpu_use_catches_the_cpu_fallback_of_a_recorded_run(torch_project):
    run = run_session(torch_project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert gp(torch_project, "verify").returncode == 0
    refused = gp(torch_project, "verify", "--require-gpu-use")
    assert refused.returncode == 1
    assert ("1 passing test(s) show no GPU use: tests/test_kernels.py::test_cpu_fallback "
            "(not used: ") in refused.stdout
    assert "test_on_gpu" not in refused.stdout



WARMUP_TESTS = """
import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def warm_up():
    torch.cuda._fake_allocate(0, 5)  # shared set-up work belongs to no test


@pytest.mark.gpu_proof
def test_cpu_fallback_first():
    assert "cpu" == "cpu"


@pytest.mark.gpu_proof
def test_on_gpu():
    torch.cuda._fake_allocate(0, 1)
"""


RERUN_TESTS = """
import pytest
import torch
from _pytest.runner import runtestprotocol

ATTEMPTS = []


def pytest_runtest_protocol(item, nextitem):
    # what pytest-rerunfailures does: run the protocol again on the same item
    for attempt in range(2):
        ATTEMPTS.append(attempt)
        reports = runtestprotocol(item, nextitem=nextitem, log=attempt == 1)
        if all(r.passed or r.skipped for r in reports):
            break
    return True
"""


FLAKY_TEST = """
import pytest
import torch

from conftest import ATTEMPTS


@pytest.mark.gpu_proof
def test_flaky(request):
    request.node.user_properties.append(("gpu_proof_gpu_use", {"test": request.node.nodeid, "used": True}))
    if len(ATTEMPTS) == 1:
        torch.cuda._fake_allocate(0, 1)
        raise RuntimeError("first attempt fails on the GPU")
    # the second attempt quietly runs on the CPU
"""



def test_fixture_work_shared_by_tests_counts_for_none_of_them(torch_project):
    write_files(torch_project, {"tests/test_kernels.py": WARMUP_TESTS})
    commit_all(torch_project, "warm-up fixture")
    run = run_session(torch_project)
    assert run.returncode == 0, run.stdout + run.stderr
    uses = gpu_uses(torch_project)
    first = uses["tests/test_kernels.py::test_cpu_fallback_first"]
    assert first["used"] is False
    assert first["evidence"].startswith("no torch CUDA allocation during the test")
    assert uses["tests/test_kernels.py::test_on_gpu"]["evidence"] == "1 torch allocation on cuda:0"


def test_a_rerun_replaces_the_record_and_test_code_cannot_add_its_own(torch_project):
    write_files(torch_project, {"tests/conftest.py": RERUN_TESTS, "tests/test_kernels.py": FLAKY_TEST})
    commit_all(torch_project, "flaky test, rerun")
    run = run_session(torch_project, "-p", "no:cacheprovider", env={"PYTHONPATH": os.pathsep.join(
        [str(FAKES), str(torch_project / "tests")])})
    assert run.returncode == 0, run.stdout + run.stderr
    repo = pygit2.Repository(str(torch_project))
    [entry] = NotesStore(repo).entries(str(repo.head.target))
    [use] = entry.signed.receipt.gpu_use
    assert (use["used"], use["method"]) == (False, METHOD_TORCH)
    assert [t.outcome for t in entry.signed.receipt.tests] == ["passed"]
    assert "GPU use: 0 used, 1 not used (tests/test_kernels.py::test_flaky), 0 unknown" in run.stdout


# -- kernels traced by CUPTI -------------------------------------------------------------------

KERNEL_TESTS = """
import ctypes
import os

import json

import pytest

LIB = ctypes.CDLL(os.environ["FAKE_CUPTI_CONTROLS"])  # the fake CUPTI, as the GPU it plays
NAME = b"saxpy_kernel"
CUDA = ctypes.CDLL(os.environ["GITPROOF_LIBCUDA"], mode=os.RTLD_GLOBAL)
assert CUDA.cuInit(0) == 0  # a CUDA program: the driver is loaded and started


@pytest.fixture
def warm():
    LIB.fake_cupti_kernel(0, NAME, 1)  # set-up work: counts for no test


@pytest.mark.gpu_proof
def test_computes_on_gpu(warm):
    LIB.fake_cupti_kernel(0, NAME, ctypes.c_uint64(2_000))


@pytest.mark.gpu_proof
def test_copies_then_computes_on_cpu():
    LIB.fake_cupti_memcpy(0, ctypes.c_uint64(1 << 20))
"""



@pytest.fixture
def kernel_project(cli_project, built_libcupti, built_libcuda, tmp_path):
    write_files(cli_project, {"tests/test_kernels.py": KERNEL_TESTS})
    commit_all(cli_project, "kernel tests")
    library = fresh_copy(built_libcupti, tmp_path, "libcupti.so.13")
    return cli_project, {CUPTI_LIBRARY: str(library), "FAKE_CUPTI_CONTROLS": str(library),
                         ENV_LIBRARY: str(fresh_copy(built_libcuda, tmp_path))}



def test_a_session_with_kernels_records_them_per_test_and_verify_can_require_them(kernel_project):
    root, env = kernel_project
    run = run_session(root, "--gpu-proof-kernels", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    uses = gpu_uses(root)
    computed = uses["tests/test_kernels.py::test_computes_on_gpu"]
    assert (computed["used"], computed["method"]) == (True, METHOD_KERNELS)
    assert computed["kernels"]["launches"] == 1 and computed["kernels"]["gpu_time_ns"] == 2_000
    assert computed["kernels"]["top"] == [{"name": "saxpy_kernel", "launches": 1, "gpu_time_ns": 2_000}]
    copied = uses["tests/test_kernels.py::test_copies_then_computes_on_cpu"]
    assert copied["kernels"]["launches"] == 0 and copied["kernels"]["memcpy"] == {"count": 1, "bytes": 1 << 20}
    assert gp(root, "verify").returncode == 0
    refused = gp(root, "verify", "--require-gpu-kernels")
    assert refused.returncode == 1
    assert ("1 passing test(s) launched no GPU kernel: tests/test_kernels.py::test_copies_then_computes_on_cpu "
            "(0 kernels, 1 copies)") in refused.stdout
    reasons = json.loads(gp(root, "verify", "--require-gpu-kernels", "--json").stdout)["results"][0]["reasons"]
    assert [r["code"] for r in reasons] == ["gpu-no-kernels"]


def test_record_kernels_in_the_policy_turns_tracing_on(kernel_project):
    from tests.helpers import commit_all, write_files
    root, env = kernel_project
    policy = (root / "pyproject.toml").read_text() + "record_kernels = true\n"
    write_files(root, {"pyproject.toml": policy})
    commit_all(root, "trace kernels")
    run = run_session(root, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert gpu_uses(root)["tests/test_kernels.py::test_computes_on_gpu"]["kernels"]["launches"] == 1


def test_without_the_option_no_record_has_kernels(kernel_project):
    root, env = kernel_project
    run = run_session(root, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not any("kernels" in use for use in gpu_uses(root).values())


def test_a_receipt_without_kernel_evidence_fails_require_gpu_kernels_saying_how_to_get_it(kernel_project):
    root, env = kernel_project
    assert run_session(root, env=env).returncode == 0
    refused = gp(root, "verify", "--require-gpu-kernels")
    assert refused.returncode == 1 and "kernels not traced: record with --gpu-proof-kernels" in refused.stdout


def test_kernels_unavailable_are_said_in_the_records_and_the_run_still_records(kernel_project, tmp_path):
    root, env = kernel_project
    env = {**env, CUPTI_LIBRARY: str(tmp_path / "absent.so")}
    run = run_session(root, "--gpu-proof-kernels", "-k", "copies", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    [use] = gpu_uses(root).values()
    assert use["kernels"]["tracer"] is None and "CUPTI not found" in use["kernels"]["error"]


def test_under_xdist_each_worker_traces_and_the_controller_does_not(kernel_project, tmp_path):
    root, env = kernel_project
    log = tmp_path / "traced-by.txt"
    run = run_session(root, "--gpu-proof-kernels", "-n", "2", env={**env, "FAKE_CUPTI_LOG": str(log)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert gpu_uses(root)["tests/test_kernels.py::test_computes_on_gpu"]["kernels"]["launches"] == 1
    assert len(set(log.read_text().split())) == 2  # the two workers, not the controller
