"""The part of ``torch.cuda`` the probe calls, with state a test drives.

Like the real module: nothing is initialised until the first allocation (or
``init()``); ``memory_stats`` answers ``{}`` before that and counts
allocation requests in ``allocation.all.allocated`` after. Initialising
loads the CUDA driver and calls ``cuInit``, and the first allocation on a
device makes its primary context, as real torch does: the driver is the
fake libcuda named by ``$GITPROOF_LIBCUDA`` (without it, there is no driver
at all, as with a mocked torch).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

_BASICS = {"name": "Fake GPU", "total_memory": 80 << 30, "major": 9, "minor": 0}
_DEFAULT_DEVICE = {**_BASICS, "uuid": "00102030-4050-6070-8090-a0b0c0d0e0f0",
                   "pci_domain_id": 0, "pci_bus_id": 0x18, "pci_device_id": 0}

_devices: list[dict[str, Any]] = [dict(_DEFAULT_DEVICE)]
_initialized = False
_allocations: dict[int, int] = {}
_with_counter = True


@dataclass
class _Uuid:
    text: str

    def __str__(self) -> str:  # torch prints a device UUID without the "GPU-" prefix
        return self.text


class _DeviceProperties:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.name = spec["name"]
        self.total_memory, self.major, self.minor = spec["total_memory"], spec["major"], spec["minor"]
        if spec.get("uuid") is not None:
            self.uuid = _Uuid(spec["uuid"])
        for key in ("pci_domain_id", "pci_bus_id", "pci_device_id"):
            if key in spec:  # older torch releases lack these
                setattr(self, key, spec[key])


def _check(device: int) -> int:
    index = 0 if device is None else int(getattr(device, "index", device))
    if not 0 <= index < len(_devices):
        raise AssertionError("Invalid device id")
    return index


def is_initialized() -> bool:
    return _initialized


def init() -> None:
    global _initialized
    if not _initialized:
        driver = _driver()
        if driver is not None:
            assert driver.cuInit(0) == 0
    _initialized = True


def _driver() -> ctypes.CDLL | None:
    path = os.environ.get("GITPROOF_LIBCUDA")
    return ctypes.CDLL(path, mode=os.RTLD_GLOBAL) if path and os.path.exists(path) else None


def device_count() -> int:
    return len(_devices)


def memory_stats(device: int | None = None) -> dict[str, int]:
    if not _initialized:
        return {}
    stats = {"allocated_bytes.all.current": 0}
    if _with_counter:
        stats["allocation.all.allocated"] = _allocations.get(_check(device), 0)
    return stats


def memory_stats_as_nested_dict(device: int | None = None) -> dict[str, Any]:
    """The unflattened form the probe prefers; ``memory_stats`` is its flattening."""
    if not _initialized:
        return {}
    nested: dict[str, Any] = {"allocated_bytes": {"all": {"current": 0}}}
    if _with_counter:
        nested["allocation"] = {"all": {"allocated": _allocations.get(_check(device), 0)}}
    return nested


def get_device_properties(device: int) -> _DeviceProperties:
    init()  # the real one initialises CUDA too
    return _DeviceProperties(_devices[_check(device)])


# -- test controls (not torch API) ---------------------------------------------

def _fake_configure(devices: list[dict[str, Any]] | None = None, counter: bool = True) -> None:
    """Start over: not initialised, no allocations, these devices.

    A device spec has optional ``uuid`` and ``pci_*_id`` keys (absent: the
    property is missing, as in older torch); name and memory have defaults.
    """
    global _devices, _initialized, _with_counter
    _devices = ([{**_BASICS, **d} for d in devices] if devices is not None
                else [dict(_DEFAULT_DEVICE)])
    _initialized, _with_counter = False, counter
    _allocations.clear()


def _fake_allocate(device: int = 0, n: int = 1) -> None:
    """``n`` allocation requests on ``cuda:device``, as tensor creation makes."""
    init()
    index = _check(device)
    driver = _driver()
    if driver is not None and index not in _allocations:
        context = ctypes.c_void_p()
        assert driver.cuDevicePrimaryCtxRetain(ctypes.byref(context), index) == 0
    _allocations[index] = _allocations.get(index, 0) + n
