"""The receipt's GPU records (gitproof.gpu.records): their JSON, key order included, and
reading them back from receipts, well-formed or not."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gitproof import gpu
from gitproof.gpu import GpuDevice, GpuFacts, GpuUse, KernelTotals, TopKernel, Transfers
from gitproof.gpu.records import METHOD_KERNELS, METHOD_TORCH
from tests.libcuda_fake import PCI_0

EVIDENCE = sorted((Path(__file__).parent.parent.parent / "docs" / "gpu-evidence").glob("*.receipt"))
TEST = "tests/test_k.py::test_k"


def as_receipt_json(value: dict) -> str:
    """How receipt.py writes a JSON value on a line."""
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, allow_nan=False)


# -- to_dict: the receipt's JSON ---------------------------------------------------------------

def test_dict_keys_in_order():
    device = GpuDevice(1, "NVIDIA L4", "GPU-1234", "550.54.15", 23034, "8.9",
                       pci_bus_id="00000000:3B:00.0", cuda_driver="12.4", mig="disabled",
                       visible=False)
    assert list(device.to_dict().items()) == [
        ("index", 1), ("name", "NVIDIA L4"), ("uuid", "GPU-1234"),
        ("pci_bus_id", "00000000:3B:00.0"), ("driver", "550.54.15"), ("cuda_driver", "12.4"),
        ("memory_mib", 23034), ("compute_capability", "8.9"), ("mig", "disabled"),
        ("visible", False),
    ]
    anonymous = GpuDevice(0, "NVIDIA L4", None, "550.54.15", 23034, None)
    assert "uuid" not in anonymous.to_dict()


def test_facts_dict_keys_in_order():
    devices = [GpuDevice(0, "NVIDIA H100 80GB HBM3", None, "550.54.15", 81559, "9.0")]
    facts = GpuFacts("nvidia-smi", devices, None, "0,1", ["nvml: nvidia-ml-py is not installed"])
    assert list(facts.to_dict()) == ["source", "cuda_visible_devices", "confidential_computing",
                                     "notes"]
    assert facts.to_dict()["notes"] == ["nvml: nvidia-ml-py is not installed"]


@pytest.mark.parametrize("text, canonical", [
    ("00000000:18:00.0", "00000000:18:00.0"),
    ("0000:3b:00.0", "00000000:3B:00.0"),      # CUDA / sysfs spelling
    ("18:00.0", "00000000:18:00.0"),
    (" 00000001:af:1f.7 ", "00000001:AF:1F.7"),
    ("not a bus id", None), ("", None), (None, None), ("00:00:00:00.0", None),
])
def test_canonical_bus_id(text, canonical):
    assert gpu.canonical_bus_id(text) == canonical


def test_record_keys_in_order():
    use = GpuUse(TEST, True, METHOD_TORCH, "3 torch allocations on cuda:0", [PCI_0], "listed")
    data = use.to_dict()
    assert list(data) == ["test", "used", "method", "evidence", "devices", "nvml"]
    assert json.loads(json.dumps(data)) == data


TRACED = KernelTotals("cupti 130001 (libcupti.so.13)", None, 3, 6_500, [PCI_0, "cuda:1"],
                      [TopKernel("_Z4gemmPfS_S_i", 2, 6_000), TopKernel("fill", 1, 500)],
                      Transfers(2, 48), Transfers(1, 8), dropped=1, incomplete=2, untimed=3)


def test_kernels_keys_in_order():
    assert list(TRACED.to_dict()) == ["tracer", "launches", "gpu_time_ns", "devices", "top", "memcpy",
                                      "memset", "dropped", "incomplete", "untimed"]
    assert TRACED.to_dict()["top"][0] == {"name": "_Z4gemmPfS_S_i", "launches": 2, "gpu_time_ns": 6_000}
    assert TRACED.to_dict()["memcpy"] == {"count": 2, "bytes": 48}
    assert KernelTotals.untraced("CUPTI not found").to_dict() == {"tracer": None, "error": "CUPTI not found"}
    use = GpuUse(TEST, True, METHOD_KERNELS, "3 kernel launches", [PCI_0], "listed", TRACED)
    assert list(use.to_dict()) == ["test", "used", "method", "evidence", "devices", "nvml", "kernels"]


# -- from_dict: reading receipts back ----------------------------------------------------------

@pytest.mark.parametrize("record", [
    GpuDevice(1, "NVIDIA L4", "GPU-1234", "550.54.15", 23034, "8.9", "00000000:3B:00.0", "12.4", "disabled", False),
    GpuDevice(0, "NVIDIA L4", None, "", 0, None),
    GpuUse(TEST, None, None, "no probe applied"),
    GpuUse(TEST, True, METHOD_KERNELS, "3 kernel launches", [PCI_0], "listed", TRACED),
    GpuUse(TEST, None, None, "kernels were not traced: CUPTI not found", kernels=KernelTotals.untraced("no")),
    TRACED,
], ids=repr)
def test_what_this_version_writes_reads_back_the_same(record):
    assert type(record).from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_facts_read_back_with_their_devices():
    devices = [GpuDevice(0, "NVIDIA H100 80GB HBM3", None, "550.54.15", 81559, "9.0", visible=True)]
    facts = GpuFacts("nvml", devices, {"feature": "on", "environment": "prod", "dev_tools": "off"}, "0", ["x"])
    assert GpuFacts.from_dict(facts.to_dict(), [d.to_dict() for d in devices]) == facts


@pytest.mark.parametrize("path", EVIDENCE, ids=lambda p: p.name)
def test_the_evidence_receipts_read_back_byte_for_byte(path):
    """Real receipts from an H200 (docs/gpu-evidence): every GPU line, rewritten from its record."""
    lines = [line.partition(": ") for line in path.read_text().splitlines()]
    values = {key: [value for k, _, value in lines if k == key] for key in ("gpu", "gpu-facts", "gpu-use")}
    assert values["gpu"] and values["gpu-facts"] and values["gpu-use"]
    for text in values["gpu"]:
        assert as_receipt_json(GpuDevice.from_dict(json.loads(text)).to_dict()) == text
    for text in values["gpu-facts"]:
        assert as_receipt_json(GpuFacts.from_dict(json.loads(text)).to_dict()) == text
    for text in values["gpu-use"]:
        written = json.loads(text)
        read = GpuUse.from_dict(written).to_dict()
        if "kernels" in written:  # 0.2's kernels objects lack incomplete and untimed: they read as 0
            assert read["kernels"] == {"incomplete": 0, "untimed": 0, **written["kernels"]}
            read["kernels"] = written["kernels"]
        assert as_receipt_json(read) == text


def test_a_gpu_line_of_any_shape_is_read_without_raising():
    """receipt.py does not check gpu: objects, so every key may be missing or of any type."""
    assert GpuDevice.from_dict({}) == GpuDevice(0, "?", None, "", 0, None)
    odd = GpuDevice.from_dict({"index": True, "name": 5, "uuid": 7, "driver": None, "memory_mib": "80GB",
                               "compute_capability": 9.0, "visible": "yes", "mig": ["enabled"]})
    assert odd == GpuDevice(0, "5", None, "", 0, None)
    assert GpuDevice.from_dict({"name": None}).name == "None"  # as show has always printed it
    assert GpuDevice.from_dict({"visible": False}).visible is False


def test_gpu_use_and_kernels_from_older_or_sparser_writers():
    use = GpuUse.from_dict({"test": TEST, "used": None})
    assert (use.method, use.evidence, use.devices, use.nvml, use.kernels) == (None, "", [], None, None)
    assert GpuUse.from_dict({"test": TEST, "used": True, "kernels": None}).kernels is None
    untraced = GpuUse.from_dict({"test": TEST, "used": None, "kernels": {"tracer": None}}).kernels
    assert untraced == KernelTotals(None) and not untraced.traced
    sparse = KernelTotals.from_dict({"tracer": "cupti", "top": [{"name": "k"}, "not an entry"]})
    assert sparse == KernelTotals("cupti", top=[TopKernel("k", 0, 0)])
    assert (sparse.memcpy, sparse.launches, sparse.traced) == (Transfers(0, 0), 0, True)
    assert KernelTotals.from_dict({"tracer": "cupti", "launches": True}).launches == 0


def test_facts_from_a_sparse_line():
    facts = GpuFacts.from_dict({"source": "none", "confidential_computing": {"feature": None}})
    assert facts == GpuFacts("none", [], {"feature": "None"}, None, [])


@pytest.mark.parametrize("nanoseconds, text", [(20_383, "0.020"), (1_500_000, "1.500"), (0, "0.000"),
                                               (2**64 - 1, "18446744073709.551")])
def test_milliseconds(nanoseconds, text):
    assert gpu.milliseconds(nanoseconds) == text
