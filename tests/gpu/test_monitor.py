"""The GPU-use monitor (gitproof.gpu.monitor): failing probes kept inside it, NVML
corroboration through the fake pynvml, and the summary line."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gitproof.gpu import nvml
from gitproof.gpu.cupti import TRACED_KINDS
from gitproof.gpu.driver import DriverHandle
from gitproof.gpu.findings import Finding
from gitproof.gpu.monitor import GpuUseMonitor, default_probes, nvml_corroboration, summarize
from gitproof.gpu.probes import DriverProbe, KernelProbe
from gitproof.gpu.records import METHOD_NOT_LOADED
from tests.gpu.watching import TEST, UNUSED_NVML, nothing, watch
from tests.libcuda_fake import FAKES, PCI_0, PCI_1

pytestmark = pytest.mark.usefixtures("isolated_boundaries")
GEMM = b"_Z4gemmPfS_S_i"


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



def test_the_monitor_closes_the_tracer(libcupti):
    monitor = GpuUseMonitor([KernelProbe(DriverHandle(lambda: None))], corroborate=lambda d: "unavailable")
    monitor.start(TEST)
    libcupti.fake_cupti_kernel(0, GEMM, 10)
    assert monitor.stop(TEST).kernels.launches == 1
    monitor.close()
    assert not any(libcupti.fake_cupti_enabled(kind) for kind in TRACED_KINDS)


# -- a process with nothing to watch ----------------------------------------------------------

class Counting:
    """A probe that can say it has nothing to watch, and counts how often it is asked."""

    name, framework = "counting", False
    absent_state, absent_finding = "absent", Finding(False, "counting.none", "nothing to count")

    def __init__(self) -> None:
        self.is_absent = True
        self.asked: list[object] = []

    def absent(self) -> bool:
        return self.is_absent

    def begin(self) -> str:
        self.asked.append("begin")
        return "present"

    def end(self, state: str) -> Finding:
        self.asked.append(("end", state))
        return Finding(None, None, f"ended from {state}")


def test_probes_with_nothing_to_watch_are_not_asked():
    probe = Counting()
    monitor = GpuUseMonitor([probe], corroborate=lambda devices: UNUSED_NVML)
    uses = [watch(nothing, monitor, nodeid=f"t.py::test_{n}") for n in range(3)]
    assert probe.asked == []
    assert [(u.test, u.used, u.method, u.evidence) for u in uses] == [
        (f"t.py::test_{n}", False, "counting.none", "nothing to count") for n in range(3)]


def test_a_test_that_brings_something_to_watch_is_judged_from_the_absent_state():
    probe = Counting()

    def body() -> None:
        probe.is_absent = False  # e.g. the test imported torch
    use = watch(body, GpuUseMonitor([probe], corroborate=lambda devices: UNUSED_NVML))
    assert probe.asked == [("end", "absent")]
    assert use.evidence == "ended from absent"


def test_probes_are_asked_when_one_of_them_cannot_tell():
    probe = Counting()
    watch(nothing, GpuUseMonitor([probe, Exploding("end")], corroborate=lambda devices: UNUSED_NVML))
    assert probe.asked == ["begin", ("end", "present")]


def test_probes_are_asked_when_telling_fails():
    probe = Counting()

    def broken() -> bool:
        raise RuntimeError("boom")
    probe.absent = broken
    watch(nothing, GpuUseMonitor([probe], corroborate=lambda devices: UNUSED_NVML))
    assert probe.asked == ["begin", ("end", "present")]


def test_each_default_probe_with_nothing_to_watch_says_what_begin_and_end_would():
    for probe in default_probes(DriverHandle()):
        probe.begin()  # the driver probe's first look, which finds no libcuda here
        assert probe.absent(), probe.name
        assert probe.begin() == probe.absent_state, probe.name
        assert probe.end(probe.absent_state) == probe.absent_finding, probe.name


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
    return GpuUseMonitor()  # the real corroboration, through gitproof.gpu.nvml


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
