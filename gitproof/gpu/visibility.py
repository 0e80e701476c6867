"""Which GPUs ``CUDA_VISIBLE_DEVICES`` lets the tests see, told as CUDA would tell it.

The variable names devices by CUDA ordinal, by (a unique prefix of) a GPU
UUID, or by MIG UUID; CUDA stops at the first entry it rejects. A source's
devices carry NVML / nvidia-smi indexes, which are PCI order, while CUDA's
ordinals are fastest first, so an ordinal is placed only when the order is
sure. Where a device cannot be told, its ``visible`` flag is None rather
than a guess.
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gitproof.gpu.records import GpuDevice
from gitproof.gpu.sources import Answer, nvml_source, smi_source, torch_sees_any

ENV_VISIBLE = "CUDA_VISIBLE_DEVICES"
ENV_ORDER = "CUDA_DEVICE_ORDER"
_ORDINAL = re.compile(r"[0-9]+")
# Anything in CUDA_VISIBLE_DEVICES that could be a device's UUID, wherever it stands.
_UUID_LIKE = re.compile(r"(GPU|MIG)-[^,\s\"']*|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.I)


@dataclass(frozen=True)
class Selection:
    """What CUDA_VISIBLE_DEVICES leaves CUDA: the devices it names (by ``index``),
    how many entries CUDA accepts, and whether some entry's device cannot be named."""

    chosen: frozenset[int] = frozenset()
    accepted: int = 0
    uncertain: bool = False

    def flag(self, device: GpuDevice) -> bool | None:
        """The device's ``visible``: True, False, or None when it cannot be told."""
        if device.index in self.chosen:
            return True
        return None if self.uncertain else False

    @property
    def any_visible(self) -> bool:
        """False only when CUDA surely sees no device."""
        return self.accepted > 0 or self.uncertain


def _cuda_order(devices: list[GpuDevice], environ: Mapping[str, str]) -> list[GpuDevice] | None:
    """Devices in CUDA ordinal order, or None when that order cannot be known.

    CUDA's default order is fastest first; only identical devices (or
    CUDA_DEVICE_ORDER=PCI_BUS_ID) make it PCI order, which NVML's index follows.
    With MIG on, CUDA enumerates MIG devices instead, so ordinals say nothing.
    """
    if any(device.mig == "enabled" for device in devices):
        return None
    if environ.get(ENV_ORDER) != "PCI_BUS_ID" and len({d.name for d in devices}) > 1:
        return None
    if all(device.pci_bus_id for device in devices):
        return sorted(devices, key=lambda device: device.pci_bus_id or "")
    return sorted(devices, key=lambda device: device.index)


# How an entry that names no single device is taken.
_REJECTED = "rejected"  # CUDA rejects it: parsing stops there
_UNKNOWN = "unknown"    # CUDA accepts it, but which device it names cannot be told
_UNSURE = "unsure"      # not even whether CUDA accepts it: stop, and claim nothing further


def _by_uuid_prefix(prefix: str, devices: list[GpuDevice]) -> GpuDevice | str:
    """The one device whose UUID starts with ``prefix`` (CUDA accepts unique prefixes)."""
    if any(device.uuid is None for device in devices):
        return _UNSURE
    matches = [d for d in devices if (d.uuid or "").lower().startswith(prefix.lower())]
    return matches[0] if len(matches) == 1 else _REJECTED


def _mig_parent(entry: str, answer: Answer) -> int | str:
    """Index of the GPU holding MIG device ``entry``. ``MIG-GPU-<uuid>/<gi>/<ci>``
    (drivers before R470) names its parent outright; newer UUIDs need NVML's map."""
    if entry.startswith("MIG-GPU-"):
        parent = _by_uuid_prefix(entry[len("MIG-"):].split("/")[0], answer.devices)
        return parent.index if isinstance(parent, GpuDevice) else parent
    if answer.mig_parents is None:
        return _UNSURE
    found = {i for uuid, i in answer.mig_parents.items() if uuid.startswith(entry)}
    return found.pop() if len(found) == 1 else _REJECTED


def _resolve(entry: str, answer: Answer, order: list[GpuDevice] | None) -> int | str:
    """The index of the device one entry names, or how it falls short."""
    if _ORDINAL.fullmatch(entry):  # ASCII digits only: str.isdigit() accepts "²" and "٣"
        if int(entry) >= len(answer.devices):
            return _REJECTED
        return _UNKNOWN if order is None else order[int(entry)].index
    if entry.startswith("GPU-"):
        device = _by_uuid_prefix(entry, answer.devices)
        return device.index if isinstance(device, GpuDevice) else device
    if entry.startswith("MIG-"):
        return _mig_parent(entry, answer)
    return _REJECTED


def select(value: str | None, answer: Answer, environ: Mapping[str, str]) -> Selection:
    """Parse CUDA_VISIBLE_DEVICES (``value``; None: unset) as CUDA does: stop at the
    first entry it rejects. ``environ`` supplies CUDA_DEVICE_ORDER."""
    if value is None:
        indexes = frozenset(device.index for device in answer.devices)
        return Selection(indexes, len(indexes))
    order = _cuda_order(answer.devices, environ)
    chosen: set[int] = set()
    accepted, uncertain = 0, False
    for entry in (part.strip() for part in value.split(",")):
        target = _resolve(entry, answer, order)
        if target in (_REJECTED, _UNSURE):
            uncertain = uncertain or target == _UNSURE
            break
        accepted += 1
        if target == _UNKNOWN:
            uncertain = True
        else:
            chosen.add(int(target))
    return Selection(frozenset(chosen), accepted, uncertain)


def redact_uuids(value: str | None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` with GPU and MIG UUIDs hidden (``include_gpu_uuid = false``).

    The variable may name devices by UUID, quoted or not; a receipt that
    leaves UUIDs out must not carry them here either. Ordinals stay.
    """
    if value is None:
        return None
    return _UUID_LIKE.sub(lambda m: f"{(m.group(1) or 'GPU').upper()}-redacted", value)


@functools.cache
def gpu_visible() -> bool:
    """Whether CUDA would see any GPU here; cached for the process (``cache_clear`` redoes it).

    NVML is asked first, so no process is spawned when it works; torch is
    consulted only if the tests already imported it.
    """
    for source in (nvml_source, smi_source):
        answer = source(os.environ, False)
        if not isinstance(answer, str):
            return select(os.environ.get(ENV_VISIBLE), answer, os.environ).any_visible
    return torch_sees_any()
