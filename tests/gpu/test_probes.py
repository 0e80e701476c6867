"""The GPU-use probes (gitproof.gpu.probes), each against a fake of its boundary: torch,
CuPy and libcuda (tests/fakes), and CUPTI (tests/fakes/libcupti_fake.c) for the kernels probe.

Most tests watch a body through the real monitor and its default probes, as the
plugin does; the kernels probe is driven alone.
"""
from __future__ import annotations

import ctypes
import os
import sys

import pytest

from gitproof.gpu.cupti import ENV_LIBRARY as CUPTI_LIBRARY
from gitproof.gpu.cupti import CuptiError, reset
from gitproof.gpu.driver import DriverHandle
from gitproof.gpu.findings import Finding, combine
from gitproof.gpu.monitor import GpuUseMonitor
from gitproof.gpu.probes import CupyProbe, KernelProbe, TorchProbe, UncountedProbe
from gitproof.gpu.records import (METHOD_CONTEXT, METHOD_CUPY, METHOD_KERNELS, METHOD_NOT_INITIALIZED,
                                  METHOD_NOT_LOADED, METHOD_TORCH, Transfers)
from tests.gpu.watching import TEST, UNUSED_NVML, nothing, watch
from tests.libcuda_fake import PCI_0, PCI_1, retain_primary

pytestmark = pytest.mark.usefixtures("isolated_boundaries")
GEMM = b"_Z4gemmPfS_S_i"


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


def test_an_older_torch_without_the_nested_stats_is_read_through_memory_stats(torch, monkeypatch):
    monkeypatch.delattr(torch.cuda, "memory_stats_as_nested_dict")
    use = watch(lambda: torch.cuda._fake_allocate(0, 2))
    assert (use.used, use.method, use.evidence) == (True, METHOD_TORCH, "2 torch allocations on cuda:0")


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


def test_cupy_imported_during_the_test_keeps_torchs_empty_counter_from_deciding(torch, fakes_path):
    torch.cuda._fake_allocate(0, 1)  # an earlier test's; torch will count nothing in this one
    sys.modules.pop("cupy", None)

    def body():
        import cupy  # noqa: F401  (its pool work would go uncounted)
    use = watch(body)
    assert (use.used, use.method) == (None, None)
    assert "CuPy was imported during the test" in use.evidence


# -- the CUDA driver probe ---------------------------------------------------------------------

def test_driver_not_loaded_is_not_use():
    use = watch(nothing)
    assert (use.used, use.method, use.evidence) == (False, METHOD_NOT_LOADED,
                                                    "libcuda was never loaded by the test process")


def test_driver_loaded_during_the_test_but_never_initialised_is_not_use(libcuda_path):
    use = watch(lambda: ctypes.CDLL(str(libcuda_path), mode=os.RTLD_GLOBAL))
    assert (use.used, use.method) == (False, METHOD_NOT_INITIALIZED)
    assert use.evidence == "libcuda is loaded but CUDA was never initialised (no cuInit)"


def test_a_test_that_starts_cuda_after_tests_without_it_is_seen(libcuda_path):
    monitor = GpuUseMonitor(corroborate=lambda devices: UNUSED_NVML)
    assert [watch(nothing, monitor).method for _ in range(3)] == [METHOD_NOT_LOADED] * 3

    def body():
        lib = ctypes.CDLL(str(libcuda_path), mode=os.RTLD_GLOBAL)
        lib.cuInit(0)
        retain_primary(lib, 1)
    use = watch(body, monitor)
    assert (use.used, use.method, use.devices) == (True, METHOD_CONTEXT, [PCI_1])


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


# -- libraries without a counter (Numba) -------------------------------------------------------

def test_an_empty_framework_counter_does_not_say_not_used_while_numba_is_loaded(torch, monkeypatch):
    torch.cuda._fake_allocate(0, 1)  # an earlier test's
    monkeypatch.setitem(sys.modules, "numba.cuda", type(sys)("numba.cuda"))
    monitor = GpuUseMonitor([TorchProbe(DriverHandle()), UncountedProbe()], corroborate=lambda d: UNUSED_NVML)
    use = watch(nothing, monitor)
    assert (use.used, use.method) == (None, None)
    assert "numba.cuda loaded: GPU work done through it shows only" in use.evidence


def test_without_such_a_library_the_empty_counter_still_decides(torch):
    torch.cuda._fake_allocate(0, 1)
    monitor = GpuUseMonitor([TorchProbe(DriverHandle()), UncountedProbe()], corroborate=lambda d: UNUSED_NVML)
    assert watch(nothing, monitor).used is False


# -- the kernels probe -------------------------------------------------------------------------

def watch_probe(probe: KernelProbe, body) -> Finding:
    state = probe.begin()
    body()
    return probe.end(state)



def test_a_launch_is_use_by_kernels_with_its_totals(libcupti):
    finding = watch_probe(KernelProbe(DriverHandle(lambda: None)),
                          lambda: libcupti.fake_cupti_kernel(0, GEMM, 1_500_000))
    assert (finding.used, finding.method) == (True, METHOD_KERNELS)
    assert finding.evidence == "1 kernel launch on cuda:0 (1.500 ms of GPU time)"
    kernels = finding.kernels
    assert (kernels.launches, kernels.gpu_time_ns, kernels.devices) == (1, 1_500_000, ["cuda:0"])
    assert finding.devices == ()  # no driver here to turn cuda:0 into a PCI bus id


def test_copies_without_kernels_decide_nothing_but_are_recorded(libcupti):
    finding = watch_probe(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_memcpy(0, 8))
    assert (finding.used, finding.method) == (None, None)
    assert finding.evidence == ("no kernel was launched while the test body ran (only 1 copies and 0 memsets "
                                "on cuda:0); work still running when the body returned is not seen")
    assert finding.kernels.launches == 0 and finding.kernels.memcpy == Transfers(1, 8)


def test_no_kernel_at_all_still_decides_nothing(libcupti):
    finding = watch_probe(KernelProbe(DriverHandle(lambda: None)), lambda: None)
    assert (finding.used, finding.method, finding.kernels.launches) == (None, None, 0)


def test_blind_spots_are_said_in_the_evidence(libcupti):
    finding = watch_probe(KernelProbe(DriverHandle(lambda: None)), lambda: (libcupti.fake_cupti_in_flight(),
                                                                     libcupti.fake_cupti_drop(4)))
    assert finding.used is None and "; 5 kernel record(s) were lost, cut short or untimed;" in finding.evidence
    assert (finding.kernels.dropped, finding.kernels.incomplete) == (4, 1)


def test_a_tracer_that_fails_mid_session_is_said_in_the_record(libcupti, monkeypatch):
    probe = KernelProbe(DriverHandle(lambda: None))
    def broken(started):
        raise CuptiError("cuptiActivityFlushAll failed: CUPTI_ERROR_UNKNOWN (999)")
    monkeypatch.setattr(probe.tracer, "end", broken)
    finding = watch_probe(probe, lambda: None)
    assert finding.kernels.tracer is None and "failed at the end of the test" in finding.kernels.error
    monkeypatch.setattr(probe.tracer, "begin", lambda: 1 / 0)
    assert "failed at the start of the test: ZeroDivisionError" in watch_probe(probe, lambda: None).kernels.error


def test_an_unavailable_tracer_says_why_in_every_record(tmp_path, monkeypatch):
    monkeypatch.setenv(CUPTI_LIBRARY, str(tmp_path / "absent.so"))
    reset()
    finding = watch_probe(KernelProbe(DriverHandle(lambda: None)), lambda: None)
    reset()
    assert finding.used is None
    assert finding.kernels.tracer is None and "CUPTI not found" in finding.kernels.error


def test_kernels_decide_before_allocation_counters_and_travel_into_the_record(libcupti):
    kernel = watch_probe(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_kernel(0, GEMM, 10))
    torch_none = Finding(False, METHOD_TORCH, "no torch CUDA allocation during the test")
    use = combine(TEST, [kernel, torch_none])
    assert (use.used, use.method) == (True, METHOD_KERNELS)
    assert use.to_dict()["kernels"]["launches"] == 1


def test_allocation_without_kernels_is_used_but_records_zero_launches(libcupti):
    copy_only = watch_probe(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_memcpy(0, 8))
    allocated = Finding(True, METHOD_TORCH, "1 torch allocation on cuda:0")
    use = combine(TEST, [copy_only, allocated])
    assert (use.used, use.method, use.kernels.launches) == (True, METHOD_TORCH, 0)


def test_records_without_kernel_tracing_have_no_kernels_key():
    assert "kernels" not in combine(TEST, [Finding(False, METHOD_TORCH, "none")]).to_dict()
