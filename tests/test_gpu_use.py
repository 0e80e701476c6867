"""Per-test GPU-use evidence: the probes, how they combine, NVML corroboration,
and real pytest sessions whose tests drive fake frameworks.

Only the framework / driver / NVML boundary is fake (tests/fakes: torch,
cupy, pynvml, and libcuda compiled from C); the monitor, the plugin, the
receipt and git are the real ones.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from gitproof import nvml
from gitproof.cuda_driver import ENV_LIBRARY
from gitproof.gpu_use import (METHOD_CONTEXT, METHOD_CUPY, METHOD_NOT_INITIALIZED, METHOD_NOT_LOADED,
                              METHOD_TORCH, CupyProbe, DriverHandle, DriverProbe, Finding, GpuUse,
                              GpuUseMonitor, TorchProbe, combine, nvml_corroboration, summarize)
from gitproof.notes import NotesStore
from tests.helpers import commit_all, write_files
from tests.libcuda_fake import PCI_0, PCI_1, fresh_copy, retain_primary

FAKES = Path(__file__).parent / "fakes"
FAKE_MODULES = ("torch", "cupy", "pynvml")
TEST = "tests/test_k.py::test_k"
UNUSED_NVML = "unavailable"


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def isolated_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No real driver, NVML off, and no fake module left behind for other tests."""
    monkeypatch.setenv(ENV_LIBRARY, str(tmp_path / "no-libcuda.so"))
    monkeypatch.setenv(nvml.ENV_SWITCH, "off")
    nvml.reset()
    yield
    nvml.reset()
    for name in [n for n in sys.modules if n.split(".")[0] in FAKE_MODULES]:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(FAKES)):
            del sys.modules[name]


@pytest.fixture
def fakes_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(FAKES))
    return FAKES


@pytest.fixture
def torch(fakes_path, libcuda_path):
    """The fake torch; initialising its CUDA loads and starts the fake driver, as torch does."""
    import torch

    torch.cuda._fake_configure()
    return torch


@pytest.fixture
def cupy(fakes_path):
    import cupy

    return cupy


def watch(body, monitor: GpuUseMonitor | None = None, nodeid: str = TEST) -> GpuUse:
    """Run ``body`` as one watched test."""
    monitor = monitor or GpuUseMonitor(corroborate=lambda devices: UNUSED_NVML)
    monitor.start(nodeid)
    body()
    return monitor.stop(nodeid)


def nothing() -> None:
    pass


# -- the record ------------------------------------------------------------------------------

def test_record_keys_in_order():
    use = GpuUse(TEST, True, METHOD_TORCH, "3 torch allocations on cuda:0", [PCI_0], "listed")
    data = use.to_dict()
    assert list(data) == ["test", "used", "method", "evidence", "devices", "nvml"]
    assert json.loads(json.dumps(data)) == data


# -- combining findings ------------------------------------------------------------------------

SEEN = Finding(True, METHOD_TORCH, "3 torch allocations on cuda:0", (PCI_0,))
SEEN_BY_DRIVER = Finding(True, METHOD_CONTEXT, "a CUDA primary context became active", (PCI_1,))
NOT_SEEN = Finding(False, METHOD_NOT_LOADED, "libcuda was never loaded by the test process")
UNDECIDED = Finding(None, None, "a CUDA context existed before the test")


def test_a_counted_allocation_wins_and_names_method_and_devices():
    use = combine(TEST, [UNDECIDED, SEEN, SEEN_BY_DRIVER])
    assert (use.used, use.method, use.evidence, use.devices) == (True, METHOD_TORCH, SEEN.evidence, [PCI_0])


def test_a_count_without_any_cuda_in_the_process_is_unknown():
    use = combine(TEST, [SEEN, NOT_SEEN])  # a mocked torch: it counts, but CUDA never ran
    assert (use.used, use.method) == (None, None)
    assert use.evidence == f"{SEEN.evidence}; {NOT_SEEN.evidence}"


def test_devices_come_from_the_first_probe_that_knows_them():
    seen_without_devices = Finding(True, METHOD_TORCH, "1 torch allocation on cuda:0")
    assert combine(TEST, [seen_without_devices, SEEN_BY_DRIVER]).devices == [PCI_1]


def test_no_use_beats_no_decision_and_keeps_every_reason():
    use = combine(TEST, [UNDECIDED, NOT_SEEN])
    assert (use.used, use.method) == (False, METHOD_NOT_LOADED)
    assert use.evidence == f"{UNDECIDED.evidence}; {NOT_SEEN.evidence}"


def test_only_undecided_probes_make_unknown():
    use = combine(TEST, [UNDECIDED])
    assert (use.used, use.method, use.evidence) == (None, None, UNDECIDED.evidence)
    assert combine(TEST, []).evidence == "no probe applied"


# -- the torch probe ---------------------------------------------------------------------------

def test_torch_probe_does_not_apply_and_imports_nothing_when_torch_is_absent(fakes_path):
    probe = TorchProbe(DriverHandle())
    assert probe.end(probe.begin()) is None
    assert "torch" not in sys.modules


def test_torch_imported_but_cuda_never_initialised_is_not_use(torch):
    use = watch(nothing)
    assert (use.used, use.method) == (False, METHOD_TORCH)
    assert use.evidence.startswith("torch never initialised CUDA")
    assert not torch.cuda.is_initialized(), "watching must not initialise CUDA"


def test_torch_allocations_during_the_test_are_use_on_their_device(torch):
    use = watch(lambda: torch.cuda._fake_allocate(0, 3))
    assert (use.used, use.method, use.devices) == (True, METHOD_TORCH, [PCI_0])
    assert use.evidence == "3 torch allocations on cuda:0"


def test_torch_counts_only_this_tests_allocations(torch):
    torch.cuda._fake_allocate(0, 5)  # an earlier test's tensors
    use = watch(nothing)
    assert (use.used, use.method) == (False, METHOD_TORCH)
    assert use.evidence.startswith("no torch CUDA allocation during the test;")


def test_torch_allocations_on_two_devices(torch):
    torch.cuda._fake_configure([{"pci_domain_id": 0, "pci_bus_id": 0x18, "pci_device_id": 0},
                                {"pci_domain_id": 1, "pci_bus_id": 0xAF, "pci_device_id": 2}])
    use = watch(lambda: (torch.cuda._fake_allocate(0, 1), torch.cuda._fake_allocate(1, 2)))
    assert use.evidence == "1 torch allocation on cuda:0, 2 on cuda:1"
    assert use.devices == [PCI_0, "00000001:AF:02.0"]


def test_torch_initialising_cuda_without_allocating_is_not_use(torch):
    torch_only = GpuUseMonitor([TorchProbe(DriverHandle(lambda: None))], corroborate=lambda d: "unavailable")
    use = watch(torch.cuda.init, torch_only)  # as get_device_properties() before a CPU fallback does
    assert (use.used, use.method) == (None, None)
    assert "torch initialised CUDA during the test but allocated nothing on the GPU" in use.evidence


HELD_BUT_IDLE = Finding(False, METHOD_TORCH, "no torch CUDA allocation during the test")
TORCH_WITHOUT_CUDA = Finding(False, METHOD_TORCH, "torch never initialised CUDA")


def test_a_new_context_is_not_use_while_torch_held_cuda_and_allocated_nothing():
    use = combine(TEST, [HELD_BUT_IDLE, SEEN_BY_DRIVER])
    assert (use.used, use.method) == (None, None)
    assert use.evidence == f"{HELD_BUT_IDLE.evidence}; {SEEN_BY_DRIVER.evidence}"


def test_a_new_context_is_use_only_when_no_framework_is_in_the_process():
    use = combine(TEST, [SEEN_BY_DRIVER])  # Numba or a raw extension, say
    assert (use.used, use.method, use.devices) == (True, METHOD_CONTEXT, [PCI_1])
    assert combine(TEST, [TORCH_WITHOUT_CUDA, SEEN_BY_DRIVER]).used is None
    cupy_idle = Finding(False, METHOD_CUPY, "no CuPy memory-pool allocation during the test")
    assert combine(TEST, [cupy_idle, SEEN_BY_DRIVER]).used is None
    imported_late = Finding(None, None, "CuPy was imported during the test", framework=True)
    assert combine(TEST, [imported_late, SEEN_BY_DRIVER]).used is None


def test_torch_imported_during_the_test_is_still_seen(fakes_path, libcuda_path):
    def body():
        import torch
        torch.cuda._fake_configure()
        torch.cuda._fake_allocate(0, 1)
    assert watch(body).used is True


def test_torch_without_the_allocation_counter_decides_nothing(torch):
    torch.cuda._fake_configure(counter=False)
    use = watch(lambda: torch.cuda._fake_allocate(0, 1))
    # torch cannot count; the context its allocation made is not enough with torch in the process
    assert (use.used, use.method) == (None, None)
    assert "torch.cuda.memory_stats has no allocation.all.allocated counter" in use.evidence
    assert "a CUDA primary context became active on cuda:0" in use.evidence


def test_torch_device_without_pci_ids_is_found_through_its_uuid(torch, libcuda):
    torch.cuda._fake_configure([{"uuid": "00102030-4050-6070-8090-a0b0c0d0e0f0"}])
    libcuda.cuInit(0)
    use = watch(lambda: torch.cuda._fake_allocate(0, 1))
    assert (use.used, use.devices) == (True, [PCI_0])


def test_torch_device_without_pci_ids_or_driver_has_no_device(torch):
    torch.cuda._fake_configure([{"uuid": "00102030-4050-6070-8090-a0b0c0d0e0f0"}])
    torch_only = GpuUseMonitor([TorchProbe(DriverHandle(lambda: None))], corroborate=lambda d: "unavailable")
    use = watch(lambda: torch.cuda._fake_allocate(0, 1), torch_only)
    assert (use.used, use.devices) == (True, [])


# -- the CuPy probe ----------------------------------------------------------------------------

def test_cupy_pool_allocations_are_counted_per_device(cupy, libcuda):
    libcuda.cuInit(0)
    use = watch(lambda: [cupy._fake_malloc(1024, device=1) for _ in range(2)])
    assert (use.used, use.method, use.devices) == (True, METHOD_CUPY, [PCI_1])
    assert use.evidence == "2 CuPy memory-pool allocations on cuda:1"


def test_cupy_without_allocations_is_not_use_and_the_hook_is_removed(cupy):
    use = watch(nothing)
    assert (use.used, use.method) == (False, METHOD_CUPY)
    assert "no CuPy memory-pool allocation during the test" in use.evidence
    assert not cupy.cuda.memory_hook.get_memory_hooks()


def test_cupy_hook_sees_nothing_outside_the_test(cupy):
    monitor = GpuUseMonitor(corroborate=lambda devices: UNUSED_NVML)
    watch(nothing, monitor)
    cupy._fake_malloc(64)  # between tests: not counted for anyone
    assert watch(nothing, monitor).used is False


def test_cupy_imported_during_the_test_decides_nothing(fakes_path):
    def body():
        import cupy
        cupy._fake_malloc(64)
    use = watch(body)
    assert "CuPy was imported during the test, after counting began" in use.evidence
    assert use.method == METHOD_NOT_LOADED


def test_cupy_probe_does_not_apply_when_cupy_is_absent(fakes_path):
    probe = CupyProbe(DriverHandle())
    assert probe.end(probe.begin()) is None and "cupy" not in sys.modules


# -- the CUDA driver probe ---------------------------------------------------------------------

def test_driver_not_loaded_is_not_use():
    use = watch(nothing)
    assert (use.used, use.method, use.evidence) == (False, METHOD_NOT_LOADED,
                                                    "libcuda was never loaded by the test process")


def test_driver_loaded_during_the_test_but_never_initialised_is_not_use(libcuda_path):
    use = watch(lambda: ctypes.CDLL(str(libcuda_path), mode=os.RTLD_GLOBAL))
    assert (use.used, use.method) == (False, METHOD_NOT_INITIALIZED)
    assert use.evidence == "libcuda is loaded but CUDA was never initialised (no cuInit)"


def test_a_primary_context_made_during_the_test_is_use_on_its_device(libcuda):
    def body():
        libcuda.cuInit(0)
        retain_primary(libcuda, 1)
    use = watch(body)
    assert (use.used, use.method, use.devices) == (True, METHOD_CONTEXT, [PCI_1])
    assert use.evidence == "a CUDA primary context became active on cuda:1 during the test"


def test_a_context_made_current_during_the_test_is_use(libcuda):
    libcuda.cuInit(0)
    retain_primary(libcuda, 0)  # an earlier test's context, not current in this thread
    use = watch(lambda: retain_primary(libcuda, 0, make_current=True))
    assert (use.used, use.method, use.devices) == (True, METHOD_CONTEXT, [PCI_0])
    assert use.evidence == "a CUDA context became current on cuda:0 during the test"


def test_a_context_from_before_the_test_decides_nothing(libcuda):
    libcuda.cuInit(0)
    retain_primary(libcuda, 0, make_current=True)
    use = watch(nothing)
    assert (use.used, use.method) == (None, None)
    assert "a CUDA context existed before the test" in use.evidence


def test_initialised_without_any_context_decides_nothing(libcuda):
    use = watch(lambda: libcuda.cuInit(0))
    assert use.used is None and "no context was active at the end of the test" in use.evidence


def test_watching_never_initialises_the_driver(libcuda, torch, cupy):
    watch(nothing)
    assert libcuda.gitproof_fake_init_calls() == 0


# -- failures stay inside the monitor ----------------------------------------------------------

class Exploding:
    name = "exploding"

    def __init__(self, when: str) -> None:
        self.when = when

    def begin(self):
        if self.when == "begin":
            raise RuntimeError("boom at begin")

    def end(self, state):
        raise RuntimeError("boom at end")


@pytest.mark.parametrize("when, text", [("begin", "exploding probe failed at the start: "
                                                  "RuntimeError('boom at begin')"),
                                        ("end", "exploding probe failed: RuntimeError('boom at end')")])
def test_a_failing_probe_is_no_decision_with_its_error(when, text):
    monitor = GpuUseMonitor([Exploding(when), DriverProbe(DriverHandle())])
    use = watch(nothing, monitor)
    assert (use.used, use.method) == (False, METHOD_NOT_LOADED)
    assert text in use.evidence


def test_a_framework_that_raises_does_not_reach_the_test(torch, monkeypatch):
    torch.cuda.init()

    def broken(device=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.cuda, "memory_stats_as_nested_dict", broken)
    use = watch(nothing)
    assert "torch probe failed at the start: RuntimeError('CUDA error" in use.evidence


def test_stop_without_start_is_unknown():
    use = GpuUseMonitor().stop(TEST)
    assert (use.used, use.evidence) == (None, "GPU use was not watched: the test never started")


def test_a_second_start_releases_the_first_hooks(cupy):
    monitor = GpuUseMonitor(corroborate=lambda devices: UNUSED_NVML)
    monitor.start(TEST)
    monitor.start(TEST)
    monitor.stop(TEST)
    assert not cupy.cuda.memory_hook.get_memory_hooks()


# -- NVML corroboration ------------------------------------------------------------------------

def fake_nvml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: dict[str, list[int]]) -> None:
    """NVML (fake pynvml) listing ``processes`` per PCI bus id."""
    devices = [{"name": "Fake GPU", "uuid": f"GPU-{i:08x}-0000-0000-0000-000000000000",
                "pci_bus_id": bus_id, "memory_total": 80 << 30, "compute_capability": [9, 0],
                "processes": pids} for i, (bus_id, pids) in enumerate(processes.items())]
    state = tmp_path / "nvml.json"
    state.write_text(json.dumps({"devices": devices}))
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setenv("GITPROOF_FAKE_NVML", str(state))
    monkeypatch.delenv(nvml.ENV_SWITCH)
    nvml.reset()


def monitor_with_nvml() -> GpuUseMonitor:
    return GpuUseMonitor()  # the real corroboration, through gitproof.nvml


def test_nvml_lists_this_process_on_the_device_used(torch, tmp_path, monkeypatch):
    fake_nvml(tmp_path, monkeypatch, {PCI_0: [os.getpid()], PCI_1: []})
    use = watch(lambda: torch.cuda._fake_allocate(0, 1), monitor_with_nvml())
    assert use.nvml == "listed"


@pytest.mark.parametrize("namespaced, answer", [(False, "not-listed"), (True, "pid-namespace")])
def test_nvml_not_listing_this_process(torch, tmp_path, monkeypatch, namespaced, answer):
    fake_nvml(tmp_path, monkeypatch, {PCI_0: [os.getpid() + 1], PCI_1: [os.getpid()]})
    nspid = f"NSpid:\t{os.getpid()}\t7\n" if namespaced else f"NSpid:\t{os.getpid()}\n"
    status = tmp_path / "status"
    status.write_text(f"Name:\tpython\n{nspid}")
    real = nvml.in_pid_namespace
    monkeypatch.setattr(nvml, "in_pid_namespace", lambda: real(status))
    use = watch(lambda: torch.cuda._fake_allocate(0, 1), monitor_with_nvml())
    assert use.nvml == answer  # listed on another device only: not this one


def test_nvml_unavailable(torch, tmp_path, monkeypatch):
    fake_nvml(tmp_path, monkeypatch, {PCI_0: [os.getpid()]})
    monkeypatch.delenv("GITPROOF_FAKE_NVML")  # the fake then finds no driver
    use = watch(lambda: torch.cuda._fake_allocate(0, 1), monitor_with_nvml())
    assert use.nvml == "unavailable"


def test_nvml_is_not_asked_unless_use_was_seen(torch):
    asked = []
    monitor = GpuUseMonitor(corroborate=lambda devices: asked.append(devices) or "listed")
    assert watch(nothing, monitor).nvml is None
    assert watch(lambda: torch.cuda._fake_allocate(0, 1), monitor).nvml == "listed"
    assert asked == [[PCI_0]]


def test_corroboration_of_unknown_devices_looks_at_every_device(tmp_path, monkeypatch):
    fake_nvml(tmp_path, monkeypatch, {PCI_0: [], PCI_1: [os.getpid()]})
    assert nvml_corroboration([]) == "listed"


def test_a_failing_corroboration_is_unavailable(torch):
    def broken(devices):
        raise OSError("NVML hung up")
    use = watch(lambda: torch.cuda._fake_allocate(0, 1), GpuUseMonitor(corroborate=broken))
    assert (use.used, use.nvml) == (True, "unavailable")


# -- the summary line --------------------------------------------------------------------------

def test_summary_names_the_tests_that_did_not_use_the_gpu():
    records = [{"test": "t::a", "used": True}, {"test": "t::b", "used": False},
               {"test": "t::c", "used": None}, {"test": "t::d", "used": True}]
    assert summarize(records) == "GPU use: 2 used, 1 not used (t::b), 1 unknown (t::c)"


def test_summary_cuts_long_lists():
    records = [{"test": f"t::{i}", "used": False} for i in range(7)]
    assert summarize(records, limit=2) == "GPU use: 0 used, 7 not used (t::0, t::1, and 5 more), 0 unknown"


# -- real pytest sessions ----------------------------------------------------------------------

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


def test_require_gpu_use_catches_the_cpu_fallback_of_a_recorded_run(torch_project):
    from tests.remotes import gp

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


# -- libraries without a counter (Numba) ---------------------------------------------------------

def test_an_empty_framework_counter_does_not_say_not_used_while_numba_is_loaded(torch, monkeypatch):
    from gitproof.gpu_use import UncountedProbe

    torch.cuda._fake_allocate(0, 1)  # an earlier test's
    monkeypatch.setitem(sys.modules, "numba.cuda", type(sys)("numba.cuda"))
    monitor = GpuUseMonitor([TorchProbe(DriverHandle()), UncountedProbe()], corroborate=lambda d: UNUSED_NVML)
    use = watch(nothing, monitor)
    assert (use.used, use.method) == (None, None)
    assert "numba.cuda loaded: GPU work done through it shows only" in use.evidence


def test_without_such_a_library_the_empty_counter_still_decides(torch):
    from gitproof.gpu_use import UncountedProbe

    torch.cuda._fake_allocate(0, 1)
    monitor = GpuUseMonitor([TorchProbe(DriverHandle()), UncountedProbe()], corroborate=lambda d: UNUSED_NVML)
    assert watch(nothing, monitor).used is False


def test_an_older_torch_without_the_nested_stats_is_read_through_memory_stats(torch, monkeypatch):
    monkeypatch.delattr(torch.cuda, "memory_stats_as_nested_dict")
    use = watch(lambda: torch.cuda._fake_allocate(0, 2))
    assert (use.used, use.method, use.evidence) == (True, METHOD_TORCH, "2 torch allocations on cuda:0")


def test_cupy_imported_during_the_test_keeps_torchs_empty_counter_from_deciding(torch, fakes_path):
    torch.cuda._fake_allocate(0, 1)  # an earlier test's; torch will count nothing in this one
    sys.modules.pop("cupy", None)

    def body():
        import cupy  # noqa: F401  (its pool work would go uncounted)
    use = watch(body)
    assert (use.used, use.method) == (None, None)
    assert "CuPy was imported during the test" in use.evidence
