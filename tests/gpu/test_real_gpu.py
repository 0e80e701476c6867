"""The real-GPU tier: the GPU evidence against a real NVIDIA GPU, no fakes.

Marked ``real_gpu`` and skipped unless ``nvidia-smi -L`` lists a GPU, so CPU
machines (CI) skip it and a GPU machine runs it with the rest of the suite,
or alone with ``pytest -m real_gpu``. What stands in for the fakes here:
NVML through nvidia-ml-py, nvidia-smi, the CUDA driver, PyTorch, CuPy,
Numba and CUPTI, each as installed. A framework that is not installed skips
only the tests that need it.

The per-test evidence is checked through real ``pytest --gpu-proof``
sessions in child processes (each initialises CUDA afresh), on real git
repositories with real keys, then ``git gpu-proof verify``.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from gitproof import gpu
from gitproof.gpu import nvml, smi, visibility
from gitproof.notes import NotesStore
from tests.helpers import commit_all, write_files
from tests.remotes import gp, tool_env


def _gpu_listed() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU " in listed.stdout


pytestmark = [pytest.mark.real_gpu,
              pytest.mark.skipif(not _gpu_listed(), reason="no NVIDIA GPU here (nvidia-smi -L lists none)")]

UUID = re.compile(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")
BUS = re.compile(r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]", re.I)


def needs(module: str) -> None:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        pytest.skip(f"{module} is not installed here")


@pytest.fixture
def real_gpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's isolation from the machine's GPU (conftest.py)."""
    monkeypatch.delenv(nvml.ENV_SWITCH, raising=False)
    monkeypatch.delenv(smi.ENV_PROGRAM, raising=False)
    nvml.reset()
    yield
    nvml.reset()


# -- device facts --------------------------------------------------------------------------

def test_nvml_names_the_real_device(real_gpu_env):
    needs("pynvml")
    facts = gpu.detect_facts(import_torch=False)
    assert facts.source == "nvml", facts.notes
    assert facts.devices, "NVML answered with no device"
    for device in facts.devices:
        assert device.name.startswith("NVIDIA") and UUID.fullmatch(device.uuid or "")
        assert BUS.fullmatch(device.pci_bus_id or "") and device.memory_mib > 1024
        assert re.fullmatch(r"\d+\.\d+(\.\d+)*", device.driver)
        assert re.fullmatch(r"\d+\.\d+", device.cuda_driver or "")
        assert re.fullmatch(r"\d+\.\d+", device.compute_capability or "")
        assert device.mig in ("enabled", "disabled", None) and device.visible is True
    assert set(facts.confidential_computing or {}) == {"feature", "environment", "dev_tools"}


def test_nvidia_smi_and_nvml_agree(real_gpu_env, monkeypatch):
    needs("pynvml")
    by_nvml = gpu.detect_facts(import_torch=False).devices
    monkeypatch.setenv(nvml.ENV_SWITCH, "off")
    nvml.reset()
    by_smi = gpu.detect_facts(import_torch=False)
    assert by_smi.source == "nvidia-smi"
    keys = ("name", "uuid", "pci_bus_id", "driver", "memory_mib", "compute_capability", "mig")
    assert [[getattr(d, k) for k in keys] for d in by_smi.devices] == \
           [[getattr(d, k) for k in keys] for d in by_nvml]


def test_uuids_left_out_by_policy_leave_no_trace(real_gpu_env, monkeypatch):
    uuid = gpu.detect_facts(import_torch=False).devices[0].uuid
    monkeypatch.setenv(visibility.ENV_VISIBLE, uuid)
    facts = gpu.detect_facts(include_uuid=False, import_torch=False)
    assert uuid not in repr(facts.to_dict()) + repr([d.to_dict() for d in facts.devices])
    assert facts.devices[0].visible is True


def test_gpu_required_sees_the_real_gpu(real_gpu_env):
    assert gpu.gpu_visible()


# -- per-test evidence in real sessions -----------------------------------------------------

SUITE = '''
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:
    import cupy as cp
except ImportError:
    cp = None
if not hasattr(np, "row_stack"):  # numba-cuda 0.30 still calls it; NumPy 2.5 removed it
    np.row_stack = np.vstack


def pick_device():
    # the planted bug: the flag is never set, so this "GPU" code quietly runs on the CPU
    return "cuda" if os.environ.get("RUN_ON_GPU_TYPO") else "cpu"


@pytest.mark.gpu_proof
def test_torch_matmul_on_gpu():
    a = torch.randn(512, 512, device="cuda")
    assert torch.allclose((a @ torch.eye(512, device="cuda")).cpu(), a.cpu())


@pytest.mark.gpu_proof
def test_torch_silent_cpu_fallback():
    a = torch.randn(256, 256, device=pick_device())
    assert (a @ a).shape == (256, 256)


@pytest.mark.gpu_proof
def test_torch_allocates_on_gpu_computes_on_cpu():
    data = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    on_gpu = torch.from_numpy(data).to("cuda")  # a host-to-device copy: no kernel
    result = on_gpu.cpu().numpy() @ data        # the work itself, on the CPU
    assert result.shape == (256, 256)


@pytest.mark.gpu_proof
def test_cupy_sum_on_gpu():
    if cp is None:
        pytest.skip("CuPy is not installed")
    assert float(cp.arange(1 << 16, dtype=cp.float32).sum()) > 0


@pytest.mark.gpu_proof
def test_numba_kernel_on_gpu():
    cuda = pytest.importorskip("numba.cuda")

    @cuda.jit
    def add_one(x):
        i = cuda.grid(1)
        if i < x.size:
            x[i] += 1

    x = cuda.to_device(np.zeros(1024, np.float32))
    add_one[4, 256](x)
    assert x.copy_to_host().sum() == 1024
'''

GPU_TEST = "tests/test_real.py::test_torch_matmul_on_gpu"
FALLBACK = "tests/test_real.py::test_torch_silent_cpu_fallback"
COPY_ONLY = "tests/test_real.py::test_torch_allocates_on_gpu_computes_on_cpu"
CUPY_TEST = "tests/test_real.py::test_cupy_sum_on_gpu"
NUMBA_TEST = "tests/test_real.py::test_numba_kernel_on_gpu"


def session_env() -> dict[str, str]:
    hidden = (nvml.ENV_SWITCH, smi.ENV_PROGRAM, "GITPROOF_LIBCUDA", "GITPROOF_LIBCUPTI")
    return {k: v for k, v in tool_env().items() if k not in hidden}


def record(root: Path, *args: str) -> dict[str, dict]:
    run = subprocess.run([sys.executable, "-m", "pytest", "--gpu-proof", "-q", "-p", "no:cacheprovider", *args],
                         cwd=root, env=session_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    repo = pygit2.Repository(str(root))
    [entry] = NotesStore(repo).entries(str(repo.head.target))
    receipt = entry.signed.receipt
    assert receipt.gpu_facts["source"] == "nvml" and receipt.gpus[0]["name"].startswith("NVIDIA")
    return {use["test"]: use for use in receipt.gpu_use}


@pytest.fixture
def suite(cli_project: Path) -> Path:
    needs("torch")
    write_files(cli_project, {"tests/test_real.py": SUITE})
    commit_all(cli_project, "real GPU tests")
    return cli_project


def test_probes_tell_gpu_work_from_a_cpu_fallback(suite):
    uses = record(suite)
    assert uses[GPU_TEST]["used"] is True and uses[GPU_TEST]["method"] == "torch.cuda.memory_stats"
    assert BUS.fullmatch(uses[GPU_TEST]["devices"][0])
    assert uses[GPU_TEST]["nvml"] in ("listed", "pid-namespace")
    assert uses[FALLBACK]["used"] is False, uses[FALLBACK]
    assert uses[COPY_ONLY]["used"] is True  # it did put data on the GPU
    if importlib.util.find_spec("cupy"):
        assert uses[CUPY_TEST]["used"] is True and uses[CUPY_TEST]["method"] == "cupy.memory_hook"
    if importlib.util.find_spec("numba"):
        # torch made the context earlier, and Numba has no counter: only kernels can tell
        assert uses[NUMBA_TEST]["used"] is None and "numba.cuda loaded" in uses[NUMBA_TEST]["evidence"]
    refused = gp(suite, "verify", "--require-gpu-use")
    assert refused.returncode == 1 and FALLBACK in refused.stdout and GPU_TEST not in refused.stdout


def test_kernel_traces_tell_computing_from_copying(suite):
    uses = record(suite, "--gpu-proof-kernels")
    kernels = {test: use.get("kernels") or {} for test, use in uses.items()}
    assert all(k.get("tracer") for k in kernels.values()), kernels
    assert uses[GPU_TEST]["method"] == "cupti.kernels" and kernels[GPU_TEST]["launches"] >= 2
    assert kernels[GPU_TEST]["gpu_time_ns"] > 0 and BUS.fullmatch(kernels[GPU_TEST]["devices"][0])
    assert kernels[COPY_ONLY]["launches"] == 0 and kernels[COPY_ONLY]["memcpy"]["count"] >= 2
    assert kernels[FALLBACK]["launches"] == 0 and uses[FALLBACK]["used"] is False
    if importlib.util.find_spec("numba"):
        assert uses[NUMBA_TEST]["used"] is True and kernels[NUMBA_TEST]["launches"] >= 1
        assert any("add_one" in k["name"] for k in kernels[NUMBA_TEST]["top"])
    refused = gp(suite, "verify", "--require-gpu-kernels")
    assert refused.returncode == 1
    assert FALLBACK in refused.stdout and COPY_ONLY in refused.stdout and GPU_TEST not in refused.stdout


def test_kernel_traces_under_xdist(suite):
    needs("xdist")
    uses = record(suite, "--gpu-proof-kernels", "-n", "2")
    assert uses[GPU_TEST]["kernels"]["launches"] >= 2 and uses[COPY_ONLY]["kernels"]["launches"] == 0


def test_tracing_never_starts_cuda_in_a_process_that_does_not_use_it(suite):
    write_files(suite, {"tests/test_real.py": "import pytest\n\n@pytest.mark.gpu_proof\ndef test_cpu():\n"
                                              "    assert sum(range(10)) == 45\n"})
    commit_all(suite, "cpu only")
    uses = record(suite, "--gpu-proof-kernels").values()
    assert uses and all(use["used"] is False for use in uses), uses
    # the driver's own finding is kept in the evidence: CUPTI loaded, CUDA never started
    assert all("libcuda was never loaded" in use["evidence"] or "CUDA was never initialised" in use["evidence"]
               for use in uses), uses


EDGES = """
import pytest
import torch


@pytest.fixture
def busy_gpu():
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    for _ in range(20):
        a = a @ a / 4096
    return a  # not synchronised: the GPU is still busy with the fixture's work as the body runs


@pytest.fixture(scope="module")
def ones():
    x = torch.ones(1 << 20, device="cuda")
    torch.cuda.synchronize()
    return x


@pytest.mark.gpu_proof
def test_body_idle_while_a_fixtures_kernels_run(busy_gpu):
    assert sum(range(10)) == 45


@pytest.mark.gpu_proof
def test_in_place_kernel_returning_without_a_sync(ones):
    ones.mul_(2)


@pytest.mark.gpu_proof
def test_profiles_itself():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]):
        assert (torch.ones(8, device="cuda") * 2).sum().item() == 16


@pytest.mark.gpu_proof
def test_after_a_profiler():
    assert (torch.ones(1024, device="cuda") * 2).sum().item() == 2048
"""


def test_kernel_windows_on_real_timing(cli_project):
    needs("torch")
    write_files(cli_project, {"tests/test_real.py": EDGES})
    commit_all(cli_project, "timing edges")
    uses = record(cli_project, "--gpu-proof-kernels")
    for test, use in uses.items():  # kept in the log: what CUPTI really did in each case
        print(test, use["used"], use["method"], {k: use["kernels"].get(k) for k in
                                                 ("launches", "incomplete", "dropped", "untimed", "tracer")})
    idle = uses["tests/test_real.py::test_body_idle_while_a_fixtures_kernels_run"]
    assert idle["kernels"]["launches"] == 0 and idle["used"] is not True  # the fixture's matmuls are nobody's
    in_place = uses["tests/test_real.py::test_in_place_kernel_returning_without_a_sync"]
    assert in_place["used"] is not False
    assert in_place["kernels"]["launches"] == 1 or in_place["kernels"]["incomplete"] >= 1
    assert uses["tests/test_real.py::test_after_a_profiler"]["used"] is True
