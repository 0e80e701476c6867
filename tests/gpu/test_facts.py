"""gitproof.gpu.detect_facts: which source answers (NVML, nvidia-smi, torch), the notes of
those that do not, and the torch source, against fakes of each boundary."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from gitproof import gpu
from gitproof.gpu import GpuDevice, GpuFacts, smi
from tests.gpu.machines import (H100, L4, MIG_UUID, NO_SMI, facts_with, fake_smi, fake_torch, printing,
                                two_a100s)
from tests.nvml_fake import H100_UUID, device, machine

pytestmark = pytest.mark.usefixtures("no_cached_visibility")


def test_facts_from_nvml(fake_nvml):
    fake_nvml(machine(device()))
    facts = facts_with()
    assert facts == GpuFacts(
        source="nvml",
        devices=[GpuDevice(0, "NVIDIA H100 80GB HBM3", H100_UUID, "550.54.15", 81559, "9.0",
                           pci_bus_id="00000000:18:00.0", cuda_driver="12.4", mig="disabled",
                           visible=True)],
        confidential_computing={"feature": "on", "environment": "prod", "dev_tools": "off"},
        cuda_visible_devices=None, notes=[])
    assert facts.to_dict() == {
        "source": "nvml", "cuda_visible_devices": None,
        "confidential_computing": {"feature": "on", "environment": "prod", "dev_tools": "off"},
        "notes": []}


def test_facts_from_two_gpus_with_mig(fake_nvml):
    fake_nvml(two_a100s(mig_mode=[1, 0], mig_devices=[{"uuid": MIG_UUID}]))
    facts = facts_with()
    assert [(d.index, d.mig, d.visible) for d in facts.devices] == [
        (0, "disabled", True), (1, "enabled", True)]
    assert gpu.summary(facts.devices) == "2x NVIDIA A100-SXM4-80GB"


def test_nvml_answer_spawns_no_nvidia_smi(fake_nvml, tmp_path):
    marker = tmp_path / "ran"
    smi = fake_smi(tmp_path, f'touch "{marker}"\necho "{H100}"\n')
    fake_nvml(machine(device()))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(smi)}, import_torch=False)
    assert facts.source == "nvml" and not marker.exists()


def test_nvml_init_failure_falls_back_to_nvidia_smi(fake_nvml, tmp_path):
    fake_nvml(machine(device(), init_error=9))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(printing(tmp_path, H100))},
                             import_torch=False)
    assert facts.source == "nvidia-smi"
    assert facts.notes == ["nvml: nvmlInit failed: Driver Not Loaded"]
    assert facts.confidential_computing is None
    [found] = facts.devices
    assert (found.pci_bus_id, found.cuda_driver, found.mig, found.visible) == (
        "00000000:18:00.0", None, "disabled", True)


def test_nvml_disabled_by_environment(fake_nvml, tmp_path, monkeypatch):
    fake_nvml(machine(device()))
    monkeypatch.setenv("GITPROOF_NVML", "off")
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(printing(tmp_path, H100))},
                             import_torch=False)
    assert facts.source == "nvidia-smi"
    assert facts.notes == ["nvml: disabled by GITPROOF_NVML=off"]


def test_nothing_answers():
    facts = gpu.detect_facts(environ={**NO_SMI, "CUDA_VISIBLE_DEVICES": "0"}, import_torch=False)
    assert facts == GpuFacts("none", [], None, "0", [
        "nvml: nvidia-ml-py is not installed",
        "nvidia-smi: cannot run /nonexistent/nvidia-smi: No such file or directory",
        "torch: not imported by the tests",
    ])


@pytest.mark.parametrize("script, note", [
    ("echo 'No devices were found'\nexit 6\n", "nvidia-smi: exited 6: No devices were found"),
    ("echo '0, half a row'\n", "nvidia-smi: output not understood"),
    ("exit 9\n", "nvidia-smi: exited 9"),
])
def test_nvidia_smi_notes(tmp_path, script, note):
    facts = facts_with({"GITPROOF_NVIDIA_SMI": str(fake_smi(tmp_path, script))})
    assert facts.notes[1] == note


def test_nvidia_smi_timeout_note(tmp_path, monkeypatch):
    monkeypatch.setattr(smi, "TIMEOUT_S", 0.5)
    facts = facts_with({"GITPROOF_NVIDIA_SMI": str(fake_smi(tmp_path, "exec sleep 30\n"))})
    assert facts.notes[1] == "nvidia-smi: timed out after 0.5s"


def test_nvidia_smi_answering_zero_devices_wins(tmp_path):
    facts = facts_with({"GITPROOF_NVIDIA_SMI": str(fake_smi(tmp_path, "exit 0\n"))})
    assert (facts.source, facts.devices) == ("nvidia-smi", [])


def test_summary_strings():
    h100 = GpuDevice(0, "NVIDIA H100 80GB HBM3", None, "550", 81559, "9.0")
    l4 = GpuDevice(2, "NVIDIA L4", None, "550", 23034, "8.9")
    assert gpu.summary([]) == "none"
    assert gpu.summary([h100]) == "NVIDIA H100 80GB HBM3"
    assert gpu.summary([h100, h100]) == "2x NVIDIA H100 80GB HBM3"
    assert gpu.summary([h100, h100, l4]) == "2x NVIDIA H100 80GB HBM3, NVIDIA L4"


# --- the torch source ----------------------------------------------------------


def test_facts_from_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(L4))
    facts = gpu.detect_facts(environ={**NO_SMI, "CUDA_VISIBLE_DEVICES": "3"}, import_torch=False)
    assert facts.source == "torch"
    assert facts.devices == [GpuDevice(0, "NVIDIA L4", "GPU-12345678-aaaa-bbbb-cccc-1234567890ab",
                                       "", 23034, "8.9", pci_bus_id="00000000:3B:00.0",
                                       visible=True)]
    assert facts.cuda_visible_devices == "3"
    assert facts.notes[0] == "nvml: nvidia-ml-py is not installed"


def test_torch_without_uuid_or_pci_fields(monkeypatch):
    old = SimpleNamespace(name="Tesla V100", total_memory=16 << 30, major=7, minor=0)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(old))
    [found] = facts_with(include_uuid=True).devices
    assert (found.uuid, found.pci_bus_id, found.memory_mib) == (None, None, 16384)


def test_torch_failure_is_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(L4, error=RuntimeError("CUDA error")))
    facts = facts_with()
    assert facts.source == "none"
    assert facts.notes[-1] == "torch: RuntimeError: CUDA error"


def test_torch_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import raises ImportError, as if absent
    facts = gpu.detect_facts(environ=NO_SMI, import_torch=True)
    assert facts.source == "none"
    assert facts.notes[-1] == "torch: not installed"
