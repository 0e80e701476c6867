"""Fake machines for the device-facts tests: nvidia-smi scripts, NVML states, a bare torch.

An nvidia-smi is an executable shell script printing rows as the real one
would (``fake_smi``, ``printing``); NVML states are built with
tests/nvml_fake.py; ``fake_torch`` is just enough of ``torch.cuda`` for the
torch source. The tests that use these run with NVML blocked and nothing
cached (the ``no_cached_visibility`` fixture in tests/gpu/conftest.py).
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType, SimpleNamespace

from gitproof import gpu
from gitproof.gpu import GpuFacts
from tests.nvml_fake import device, machine

H100 = ("0, NVIDIA H100 80GB HBM3, GPU-11111111-2222-3333-4444-555555555555, 550.54.15, 81559, "
        "9.0, 00000000:18:00.0, Disabled")


A100_0 = ("0, NVIDIA A100-SXM4-80GB, GPU-aaaaaaaa-0000-0000-0000-0000, 535.104.05, 81920, 8.0, "
          "00000000:07:00.0, [N/A]")


A100_1 = ("1, NVIDIA A100-SXM4-80GB, GPU-bbbbbbbb-0000-0000-0000-0000, 535.104.05, 81920, 8.0, "
          "00000000:0F:00.0, Enabled")


OLD_DRIVER = "0, Tesla K80, [N/A], 418.87.01, 11441, 0000:04:00.0"


def fake_smi(tmp_path: Path, body: str, name: str = "nvidia-smi") -> Path:
    """Write an executable shell script standing in for nvidia-smi."""
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def printing(tmp_path: Path, *lines: str) -> Path:
    text = "\n".join(lines)
    return fake_smi(tmp_path, f"cat <<'EOF'\n{text}\nEOF\n")


A100_UUIDS = ("GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-aabbbbbb-0000-0000-0000-000000000000")


MIG_UUID = "MIG-c0c0c0c0-0000-0000-0000-000000000000"


NO_SMI = {"GITPROOF_NVIDIA_SMI": "/nonexistent/nvidia-smi"}


def two_a100s(**second: object) -> dict:
    return machine(device("NVIDIA A100-SXM4-80GB", A100_UUIDS[0], "00000000:07:00.0", 81920, (8, 0)),
                   device("NVIDIA A100-SXM4-80GB", A100_UUIDS[1], "00000000:0F:00.0", 81920, (8, 0),
                          **second))


def mixed_machine() -> dict:
    """An L4 at index 0 but on a higher PCI bus than the H100 at index 1."""
    return machine(device("NVIDIA L4", "GPU-4444", "00000000:3B:00.0", 23034, (8, 9)),
                   device("NVIDIA H100 80GB HBM3", "GPU-8888", "00000000:18:00.0"))


def facts_with(environ: dict[str, str] | None = None, **options) -> GpuFacts:
    return gpu.detect_facts(environ={**NO_SMI, **(environ or {})}, import_torch=False, **options)


def visibility(environ: dict[str, str]) -> list[bool | None]:
    return [device.visible for device in facts_with(environ).devices]


def fake_torch(*props: SimpleNamespace, error: Exception | None = None) -> ModuleType:
    """Just enough of torch.cuda for the torch source: a count and device properties."""
    def get_device_properties(ordinal: int) -> SimpleNamespace:
        if error is not None:
            raise error
        return props[ordinal]
    torch = ModuleType("torch")
    torch.cuda = SimpleNamespace(device_count=lambda: len(props),
                                 get_device_properties=get_device_properties)
    return torch


L4 = SimpleNamespace(name="NVIDIA L4", total_memory=23034 * 1024 * 1024, major=8, minor=9,
                     uuid="12345678-aaaa-bbbb-cccc-1234567890ab",
                     pci_domain_id=0, pci_bus_id=0x3B, pci_device_id=0)
