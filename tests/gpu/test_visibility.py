"""CUDA_VISIBLE_DEVICES read as CUDA reads it (gitproof.gpu.visibility): each device's
``visible`` flag, ``gpu_visible``, and UUIDs redacted when a repository opts out of them."""
from __future__ import annotations

import sys

import pytest

from gitproof import gpu
from tests import nvml_fake
from tests.gpu.machines import (A100_0, A100_1, H100, L4, MIG_UUID, facts_with, fake_smi, fake_torch,
                                mixed_machine, printing, two_a100s, visibility)
from tests.nvml_fake import device, machine

pytestmark = pytest.mark.usefixtures("no_cached_visibility")


@pytest.mark.parametrize("value, expected", [
    (None, [True, True]),
    ("", [False, False]),
    ("-1", [False, False]),
    ("1", [False, True]),
    ("1,0", [True, True]),
    (" 1 ", [False, True]),
    ("0,abc,1", [True, False]),      # CUDA stops at the first invalid entry
    ("2,0", [False, False]),         # out of range is invalid too
    ("GPU-aaaaaaaa", [True, False]),  # unique prefix
    ("GPU-aa", [False, False]),      # ambiguous prefix: invalid
    ("GPU-ffff,1", [False, False]),  # no such GPU: invalid, stop
    ("1,GPU-aaaaaaaa", [True, True]),
])
def test_cuda_visible_devices_on_identical_gpus(fake_nvml, value, expected):
    fake_nvml(two_a100s())
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert visibility(environ) == expected


def test_ordinals_on_different_gpus_cannot_be_placed(fake_nvml):
    """CUDA orders different GPUs fastest first, which no source here can rank."""
    fake_nvml(mixed_machine())
    assert visibility({"CUDA_VISIBLE_DEVICES": "0"}) == [None, None]
    assert visibility({"CUDA_VISIBLE_DEVICES": "0,GPU-4444"}) == [True, None]
    assert visibility({"CUDA_VISIBLE_DEVICES": "GPU-8888"}) == [False, True]


def test_pci_bus_id_order_places_ordinals(fake_nvml):
    fake_nvml(mixed_machine())
    assert visibility({"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) == [
        False, True]


def test_mig_entries(fake_nvml):
    fake_nvml(two_a100s(mig_mode=[1, 1], mig_devices=[{"uuid": MIG_UUID}]))
    assert visibility({"CUDA_VISIBLE_DEVICES": MIG_UUID}) == [False, True]
    assert visibility({"CUDA_VISIBLE_DEVICES": "MIG-ffff,0"}) == [False, False]  # NVML knows all
    assert visibility({"CUDA_VISIBLE_DEVICES": "0"}) == [None, None]  # ordinals count MIG devices


def test_mig_entries_without_nvml(tmp_path):
    smi = str(printing(tmp_path, A100_0, A100_1))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": smi, "CUDA_VISIBLE_DEVICES": MIG_UUID},
                             import_torch=False)
    assert [d.visible for d in facts.devices] == [None, None]
    legacy = f"MIG-{A100_1.split(', ')[2]}/1/0"  # drivers before R470 embed the GPU's UUID
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": smi, "CUDA_VISIBLE_DEVICES": legacy},
                             import_torch=False)
    assert [d.visible for d in facts.devices] == [False, True]


def test_uuid_entries_when_a_uuid_is_unknown(tmp_path):
    no_uuid = A100_1.replace("GPU-bbbbbbbb-0000-0000-0000-0000", "[N/A]").replace("Enabled", "Disabled")
    smi = str(printing(tmp_path, A100_0, no_uuid))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": smi,
                                      "CUDA_VISIBLE_DEVICES": "1,GPU-aaaa"}, import_torch=False)
    assert [d.visible for d in facts.devices] == [None, True]


def test_uuid_opt_out_still_resolves_uuid_entries(fake_nvml):
    fake_nvml(two_a100s())
    facts = facts_with({"CUDA_VISIBLE_DEVICES": "GPU-aab"}, include_uuid=False)
    assert [(d.uuid, d.visible) for d in facts.devices] == [(None, False), (None, True)]
    assert all("uuid" not in d.to_dict() for d in facts.devices)


# --- gpu_visible ---------------------------------------------------------------


def test_gpu_visible_false_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    assert gpu.gpu_visible() is False
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    assert gpu.gpu_visible() is False  # cached for the process


def test_gpu_visible_asks_nvml_and_spawns_nothing(fake_nvml, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(fake_smi(tmp_path, f'touch "{marker}"\nexit 6\n')))
    fake_nvml(machine(device()))
    assert gpu.gpu_visible() is True
    assert not marker.exists()
    assert "nvmlDeviceGetCount" in nvml_fake.module().calls


@pytest.mark.parametrize("value, visible", [("", False), ("-1", False), ("0", True),
                                            ("GPU-nope", False), (None, True)])
def test_gpu_visible_honours_cuda_visible_devices(fake_nvml, monkeypatch, value, visible):
    fake_nvml(machine(device()))
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert gpu.gpu_visible() is visible


def test_gpu_visible_with_ordinals_that_cannot_be_placed(fake_nvml, monkeypatch):
    fake_nvml(mixed_machine())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu.gpu_visible() is True  # some GPU is visible even if we cannot say which


def test_gpu_visible_no_devices_from_nvml(fake_nvml, monkeypatch):
    fake_nvml(machine())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu.gpu_visible() is False


def test_gpu_visible_falls_back_to_imported_torch_only(monkeypatch, tmp_path):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    monkeypatch.setitem(sys.modules, "torch", fake_torch(L4, error=RuntimeError("not asked")))
    assert gpu.gpu_visible() is True
    gpu.gpu_visible.cache_clear()
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    assert gpu.gpu_visible() is False


@pytest.mark.parametrize("value", ["0,\u00b2", "\u0663", "0,1\u00b2"])
def test_non_ascii_digits_are_not_ordinals(fake_nvml, monkeypatch, value):
    fake_nvml(machine(device(), device(uuid="GPU-22222222-2222-2222-2222-222222222222",
                                       bus_id="00000000:3B:00.0")))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    facts = gpu.detect_facts(import_torch=False)  # CUDA stops at the entry; so do we, without a crash
    assert facts.source == "nvml" and len(facts.devices) == 2
    assert gpu.gpu_visible() is (value != "\u0663")


# --- UUIDs left out -----------------------------------------------------------


@pytest.mark.parametrize("value, redacted", [
    ("GPU-11111111-2222-3333-4444-555555555555", "GPU-redacted"),
    ("0,GPU-abc,MIG-GPU-abc/1/0", "0,GPU-redacted,MIG-redacted"),
    ("1,0", "1,0"),
    ("", ""),
])
def test_uuid_opt_out_also_hides_uuids_in_cuda_visible_devices(tmp_path, monkeypatch, value, redacted):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    private = gpu.detect_facts(include_uuid=False, import_torch=False)
    assert private.cuda_visible_devices == redacted
    assert gpu.detect_facts(include_uuid=True, import_torch=False).cuda_visible_devices == value
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    assert gpu.detect_facts(include_uuid=False, import_torch=False).cuda_visible_devices == redacted


@pytest.mark.parametrize("value, redacted", [
    ('"GPU-00102030-4050-6070-8090-a0b0c0d0e0f0"', '"GPU-redacted"'),
    ("0 GPU-00102030-4050-6070-8090-a0b0c0d0e0f0", "0 GPU-redacted"),
    ("00102030-4050-6070-8090-A0B0C0D0E0F0", "GPU-redacted"),
    ("'MIG-00102030-4050-6070-8090-a0b0c0d0e0f0',1", "'MIG-redacted',1"),
])
def test_uuid_opt_out_hides_uuids_however_they_are_written(value, redacted):
    assert gpu.redact_uuids(value) == redacted
