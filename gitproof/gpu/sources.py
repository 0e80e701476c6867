"""The three sources of GPU device facts, each answering or saying why not.

A receipt says which GPUs the machine had, so the facts must come from
something that talks to the driver. Three sources are asked in order
(:data:`SOURCES`), and the first that answers wins (an answer of "zero
devices" counts):

1. NVML (:mod:`gitproof.gpu.nvml`, needs ``nvidia-ml-py``): in-process, no
   child process, and the only source for the CUDA driver version and the
   confidential-computing state.
2. ``nvidia-smi`` (:mod:`gitproof.gpu.smi`): one child process.
3. torch, when it is importable: last, because describing devices makes torch
   initialise CUDA in this process.

A source that gives nothing returns a note saying why, so a receipt with
``source: none`` explains itself.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitproof.gpu.nvml import NvmlUnavailable
from gitproof.gpu.nvml import facts as nvml_facts
from gitproof.gpu.smi import device_from_row
from gitproof.gpu.smi import program as smi_program
from gitproof.gpu.smi import query as smi_query
from gitproof.gpu.records import MIB, GpuDevice, canonical_bus_id


@dataclass(frozen=True)
class Answer:
    """What one source said. ``mig_parents`` maps MIG UUIDs to their GPU's index;
    None when the source cannot tell which GPU a MIG device belongs to."""

    source: str
    devices: list[GpuDevice]
    confidential_computing: dict[str, str] | None = None
    mig_parents: dict[str, int] | None = None


# A source: (environ, import_torch) -> its answer, or a note saying why there is none.
Source = Callable[[Mapping[str, str], bool], Answer | str]


def nvml_source(environ: Mapping[str, str], import_torch: bool) -> Answer | str:
    found = nvml_facts(include_uuid=True)  # UUIDs are needed to match CUDA_VISIBLE_DEVICES
    if isinstance(found, NvmlUnavailable):
        return f"nvml: {found.reason}"
    return Answer("nvml", found.devices, found.confidential_computing, found.mig_parents)


def smi_source(environ: Mapping[str, str], import_torch: bool) -> Answer | str:
    rows = smi_query(smi_program(environ))
    if isinstance(rows, str):
        return f"nvidia-smi: {rows}"
    return Answer("nvidia-smi", [device_from_row(row, i, True) for i, row in enumerate(rows)])


def _torch_module(import_torch: bool) -> Any:
    """torch, or a note saying why not; never imported unless the caller allows it."""
    if sys.modules.get("torch") is not None:
        return sys.modules["torch"]
    if not import_torch:
        return "torch: not imported by the tests"
    try:
        return importlib.import_module("torch")
    except ImportError:
        return "torch: not installed"
    except Exception as exc:  # a broken CUDA install can fail torch's import with anything
        return f"torch: import failed: {type(exc).__name__}: {exc}"


def _torch_uuid(props: Any) -> str | None:
    raw = getattr(props, "uuid", None)
    if raw is None:
        return None
    text = str(raw)
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _torch_bus_id(props: Any) -> str | None:
    domain, bus, device = (getattr(props, f"pci_{name}_id", None) for name in ("domain", "bus", "device"))
    if not all(isinstance(part, int) for part in (domain, bus, device)):
        return None
    return canonical_bus_id(f"{domain:x}:{bus:x}:{device:x}.0")


def _torch_device(torch: Any, ordinal: int) -> GpuDevice:
    props = torch.cuda.get_device_properties(ordinal)
    return GpuDevice(
        index=ordinal, name=str(props.name), uuid=_torch_uuid(props), driver="",
        memory_mib=int(props.total_memory) // MIB,
        compute_capability=f"{props.major}.{props.minor}",
        pci_bus_id=_torch_bus_id(props), visible=True,
    )


def torch_source(environ: Mapping[str, str], import_torch: bool) -> Answer | str:
    """torch sees CUDA ordinals after CUDA_VISIBLE_DEVICES, so its devices are all visible."""
    torch = _torch_module(import_torch)
    if isinstance(torch, str):
        return torch
    try:
        devices = [_torch_device(torch, i) for i in range(torch.cuda.device_count())]
    except Exception as exc:  # the framework boundary: any failure is "no answer"
        return f"torch: {type(exc).__name__}: {exc}"
    return Answer("torch", devices)


def torch_sees_any() -> bool:
    """Whether an already imported torch counts a device. Counting needs no device
    description, so torch's CUDA is not initialised here."""
    torch = sys.modules.get("torch")
    try:
        return torch is not None and torch.cuda.device_count() > 0
    except Exception:  # the framework boundary
        return False


SOURCES: tuple[Source, ...] = (nvml_source, smi_source, torch_source)
