"""gitproof.gpu.nvml against the fake nvidia-ml-py bindings (the NVML boundary is all we fake)."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gitproof.gpu import GpuDevice, nvml
from tests import nvml_fake
from tests.nvml_fake import H100_UUID, device, machine

A100_UUIDS = ("GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-bbbbbbbb-0000-0000-0000-000000000000")
MIG_UUIDS = ("MIG-c0c0c0c0-0000-0000-0000-000000000000", "MIG-d1d1d1d1-0000-0000-0000-000000000000")


@pytest.fixture(autouse=True)
def no_real_nvml(monkeypatch):
    nvml_fake.block(monkeypatch)
    yield
    nvml.reset()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """install(state) puts the fake bindings in place with that machine state."""
    def install(state: dict | None) -> None:
        nvml_fake.install(monkeypatch, tmp_path / "nvml.json", state)
    return install


def answers() -> bool:
    """Whether NVML answers in this process (importing and initialising it if needed)."""
    return not isinstance(nvml.facts(include_uuid=True), nvml.NvmlUnavailable)


def two_a100s_one_with_mig() -> dict:
    return machine(
        device("NVIDIA A100-SXM4-80GB", A100_UUIDS[0], "00000000:07:00.0", 81920, (8, 0),
               processes=[4242]),
        device("NVIDIA A100-SXM4-80GB", A100_UUIDS[1], "00000000:0F:00.0", 81920, (8, 0),
               mig_mode=[1, 1], mig_devices=[{"uuid": MIG_UUIDS[0], "processes": [777]},
                                             {"uuid": MIG_UUIDS[1]}]),
    )


def test_h100_facts(fake):
    fake(machine(device()))
    found = nvml.facts(include_uuid=True)
    assert found == nvml.NvmlFacts(
        devices=[GpuDevice(0, "NVIDIA H100 80GB HBM3", H100_UUID, "550.54.15", 81559, "9.0",
                           pci_bus_id="00000000:18:00.0", cuda_driver="12.4", mig="disabled")],
        confidential_computing={"feature": "on", "environment": "prod", "dev_tools": "off"},
        cuda_driver="12.4", mig_parents={})
    assert answers() is True


def test_two_gpus_with_mig_map_mig_devices_to_their_gpu(fake):
    fake(two_a100s_one_with_mig())
    found = nvml.facts(include_uuid=True)
    assert [(d.index, d.uuid, d.mig) for d in found.devices] == [
        (0, A100_UUIDS[0], "disabled"), (1, A100_UUIDS[1], "enabled")]
    assert found.mig_parents == {MIG_UUIDS[0]: 1, MIG_UUIDS[1]: 1}
    # Seven slots asked, five empty (NOT_FOUND) and skipped.
    assert nvml_fake.module().calls.count("nvmlDeviceGetMigDeviceHandleByIndex") == 7


def test_mig_devices_that_cannot_be_listed_leave_the_map_unknown(fake):
    state = two_a100s_one_with_mig()
    state["devices"][1]["errors"] = {"nvmlDeviceGetMaxMigDeviceCount": 4}
    fake(state)
    found = nvml.facts(include_uuid=True)
    assert found.mig_parents is None
    assert found.devices[1].mig == "enabled"


def test_uuid_opt_out(fake):
    fake(two_a100s_one_with_mig())
    found = nvml.facts(include_uuid=False)
    assert [d.uuid for d in found.devices] == [None, None]
    assert found.mig_parents == {MIG_UUIDS[0]: 1, MIG_UUIDS[1]: 1}  # still needed internally


def test_bytes_and_str_bindings_agree(fake):
    """Older bindings return bytes where newer ones return str."""
    fake(machine(device()))
    as_str = nvml.facts(include_uuid=True)
    fake(machine(device(), strings_as_bytes=True))
    as_bytes = nvml.facts(include_uuid=True)
    bindings = nvml_fake.module()
    assert isinstance(bindings.nvmlDeviceGetUUID(bindings.nvmlDeviceGetHandleByIndex(0)), bytes)
    assert as_bytes == as_str


@pytest.mark.parametrize("function, field, unknown", [
    ("nvmlDeviceGetUUID", "uuid", None),
    ("nvmlDeviceGetPciInfo", "pci_bus_id", None),
    ("nvmlDeviceGetCudaComputeCapability", "compute_capability", None),
    ("nvmlDeviceGetMigMode", "mig", None),
    ("nvmlDeviceGetMemoryInfo", "memory_mib", 0),
])
def test_a_field_not_supported_costs_only_that_field(fake, function, field, unknown):
    fake(machine(device(errors={function: 3}), device(bus_id="00000000:3B:00.0")))
    (first, second) = nvml.facts(include_uuid=True).devices
    assert getattr(first, field) == unknown
    assert getattr(second, field) != unknown
    assert first.name == "NVIDIA H100 80GB HBM3"


def test_old_driver_without_cc_or_cuda_version(fake):
    """New bindings over an old driver: the functions exist but NVML lacks them."""
    fake(machine(device(), errors={"nvmlSystemGetConfComputeState": 13,
                                   "nvmlSystemGetCudaDriverVersion": 13}))
    found = nvml.facts(include_uuid=True)
    assert found.confidential_computing is None
    assert found.cuda_driver is None and found.devices[0].cuda_driver is None
    assert found.devices[0].compute_capability == "9.0"


def test_old_bindings_without_the_functions(fake):
    fake(machine(device(), absent=["nvmlSystemGetConfComputeState", "nvmlDeviceGetMigMode"]))
    found = nvml.facts(include_uuid=True)
    assert not hasattr(nvml_fake.module(), "nvmlSystemGetConfComputeState")
    assert found.confidential_computing is None
    assert found.devices[0].mig is None
    assert found.devices[0].pci_bus_id == "00000000:18:00.0"


def test_machine_without_confidential_computing_support(fake):
    state = machine(device(name="Tesla T4", capability=(7, 5)))
    del state["conf_compute"]  # the fake answers NOT_SUPPORTED
    fake(state)
    assert nvml.facts(include_uuid=True).confidential_computing is None


def test_cc_state_values_are_named(fake):
    fake(machine(device(), conf_compute={"environment": 1, "ccFeature": 0, "devToolsMode": 1}))
    assert nvml.facts(include_uuid=True).confidential_computing == {
        "feature": "off", "environment": "sim", "dev_tools": "on"}


@pytest.mark.parametrize("encoded, text", [(12040, "12.4"), (11020, "11.2"), (12080, "12.8"),
                                           (13000, "13.0"), (0, None)])
def test_cuda_driver_version_decoding(fake, encoded, text):
    fake(machine(device(), cuda_driver_version=encoded))
    assert nvml.facts(include_uuid=True).cuda_driver == text


@pytest.mark.parametrize("state, reason", [
    (None, "nvmlInit failed: NVML Shared Library Not Found"),
    (machine(device(), init_error=9), "nvmlInit failed: Driver Not Loaded"),
    (machine(device(), errors={"nvmlDeviceGetCount": 999}), "nvmlDeviceGetCount failed: Unknown Error"),
    (machine(device(errors={"nvmlDeviceGetName": 15})), "nvmlDeviceGetName failed: GPU is lost"),
    (machine(device(), absent=["nvmlSystemGetDriverVersion"]),
     "nvmlSystemGetDriverVersion is missing (nvidia-ml-py too old)"),
])
def test_nvml_that_cannot_answer_says_why(fake, state, reason):
    fake(state)
    assert nvml.facts(include_uuid=True) == nvml.NvmlUnavailable(reason)


def test_process_devices_none_when_gpus_cannot_be_counted(fake):
    fake(machine(device(processes=[1]), errors={"nvmlDeviceGetCount": 999}))
    assert nvml.process_devices({1}) is None


def test_failed_init_is_not_retried_until_reset(fake):
    fake(None)
    assert answers() is False
    assert nvml.process_devices({1}) is None
    assert nvml_fake.module().calls == ["nvmlInit"]
    nvml.reset()
    assert answers() is False
    assert nvml_fake.module().calls == ["nvmlInit", "nvmlInit"]


def test_not_installed():
    assert nvml.facts(include_uuid=True) == nvml.NvmlUnavailable("nvidia-ml-py is not installed")
    assert answers() is False
    assert nvml.process_devices({1}) is None


def test_disabled_by_environment(fake, monkeypatch):
    fake(machine(device()))
    monkeypatch.setenv("GITPROOF_NVML", "off")
    assert nvml.facts(include_uuid=True) == nvml.NvmlUnavailable("disabled by GITPROOF_NVML=off")
    assert nvml.process_devices({1}) is None
    assert "pynvml" not in sys.modules  # never even imported
    monkeypatch.setenv("GITPROOF_NVML", "on")
    assert answers() is True


def test_one_init_per_process_even_across_threads(fake):
    fake(machine(device()))
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(answers())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    nvml.facts(include_uuid=True)
    nvml.process_devices({1})
    assert results == [True] * 8
    assert nvml_fake.module().calls.count("nvmlInit") == 1


def test_exceptions_other_than_nvmlerror_are_contained(fake, monkeypatch):
    """Bindings newer than the driver raise NVMLLibraryMismatchError, not an NVMLError."""
    fake(machine(device()))
    answers()

    def mismatch(handle):
        raise RuntimeError("driver too old for this struct")
    monkeypatch.setattr(nvml_fake.module(), "nvmlDeviceGetComputeRunningProcesses", mismatch)
    monkeypatch.setattr(nvml_fake.module(), "nvmlDeviceGetUUID", mismatch)
    assert nvml.process_devices({1}) == {}
    assert nvml.facts(include_uuid=True).devices[0].uuid is None


def test_process_devices(fake):
    fake(two_a100s_one_with_mig())
    assert nvml.process_devices({4242}) == {"00000000:07:00.0": True, "00000000:0F:00.0": False}
    assert nvml.process_devices({1, 2}) == {"00000000:07:00.0": False, "00000000:0F:00.0": False}


def test_process_devices_asks_mig_devices_when_the_gpu_list_is_denied(fake):
    state = two_a100s_one_with_mig()
    state["devices"][1]["errors"] = {"nvmlDeviceGetComputeRunningProcesses": 4}
    fake(state)
    assert nvml.process_devices({777}) == {"00000000:07:00.0": False, "00000000:0F:00.0": True}


def test_process_devices_leaves_out_what_nvml_will_not_say(fake):
    fake(machine(device(errors={"nvmlDeviceGetComputeRunningProcesses": 3}),
                 device(bus_id="00000000:3B:00.0", processes=[5], errors={"nvmlDeviceGetPciInfo": 3}),
                 device(bus_id="00000000:5E:00.0", processes=[5])))
    assert nvml.process_devices({5}) == {"00000000:5E:00.0": True}


@pytest.mark.parametrize("status, inside", [
    ("Name:\tpython\nNSpid:\t4242\n", False),
    ("Name:\tpython\nNSpid:\t981234\t17\n", True),
    ("Name:\tpython\n", True),  # kernel too old to say: assume the worst
])
def test_in_pid_namespace(tmp_path, status, inside):
    path = tmp_path / "status"
    path.write_text(status)
    assert nvml.in_pid_namespace(path) is inside


def test_in_pid_namespace_unreadable(tmp_path):
    assert nvml.in_pid_namespace(tmp_path / "absent") is True


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_in_pid_namespace_on_this_machine():
    line = next(text for text in Path("/proc/self/status").read_text().splitlines()
                if text.startswith("NSpid:"))
    assert nvml.in_pid_namespace() is (len(line.split()) > 2)


def test_child_process_imports_the_fake(tmp_path):
    state = nvml_fake.write(tmp_path / "nvml.json",
                            machine(device(), call_log=str(tmp_path / "calls")))
    code = "from gitproof.gpu import nvml; print(nvml.facts(include_uuid=False).devices[0].name)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=nvml_fake.child_env(state), check=True)
    assert result.stdout.strip() == "NVIDIA H100 80GB HBM3"
    assert (tmp_path / "calls").read_text().splitlines()[0] == "nvmlInit"


def test_bindings_answering_in_unexpected_shapes_never_raise(fake, monkeypatch):
    fake(machine(device(processes=[1])))
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: "two")
    answer = nvml.facts(include_uuid=True)
    assert isinstance(answer, nvml.NvmlUnavailable) and "unexpected answer from NVML" in answer.reason
    assert nvml.process_devices({1}) is None


def test_an_odd_compute_capability_loses_that_field_only(fake, monkeypatch):
    fake(machine(device()))
    import pynvml

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCudaComputeCapability", lambda handle: ("9", "x"))
    answer = nvml.facts(include_uuid=True)
    assert not isinstance(answer, nvml.NvmlUnavailable)
    assert answer.devices[0].compute_capability is None and answer.devices[0].name == "NVIDIA H100 80GB HBM3"
