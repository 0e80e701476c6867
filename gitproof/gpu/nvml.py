"""NVML, through the ``pynvml`` module that ``nvidia-ml-py`` ships.

Why NVML: it answers in-process (no ``nvidia-smi`` child), and it alone tells
the CUDA driver version, the confidential-computing state, which GPU a MIG
device belongs to, and which processes hold a compute context on a GPU.

Why so defensive: the bindings are an optional extra (``git-gpu-proof[nvml]``),
their age and the driver's age vary independently (a function may be missing
from the module, or present and answer "function not found"), and any NVML
call may fail. Every failure becomes "NVML cannot answer" with a short reason;
no exception leaves this module. ``GITPROOF_NVML=off`` disables NVML for
users whose NVML hangs or misbehaves.

``nvmlInit`` runs once per process, on first use, and NVML is never shut
down: a receipt may ask several times, and the process exit releases it.
"""
from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from gitproof.gpu.records import MIB, GpuDevice, canonical_bus_id

ENV_SWITCH = "GITPROOF_NVML"
_OFF_VALUES = ("off", "0", "false", "no")
# Keyed by what the bindings return, which is not always an int.
_CC_FEATURE: dict[object, str] = {0: "off", 1: "on"}
_CC_ENVIRONMENT: dict[object, str] = {0: "unavailable", 1: "sim", 2: "prod"}
_CC_DEV_TOOLS: dict[object, str] = {0: "off", 1: "on"}
_MIG_MODE: dict[object, str] = {0: "disabled", 1: "enabled"}


@dataclass(frozen=True)
class NvmlUnavailable:
    """NVML gave no answer; ``reason`` is a short phrase for a receipt note."""

    reason: str


@dataclass(frozen=True)
class NvmlFacts:
    """What NVML says about the machine.

    ``devices`` have ``visible=None`` (CUDA_VISIBLE_DEVICES is :mod:`gitproof.gpu.visibility`'s
    business);
    ``mig_parents`` maps each MIG device UUID to its GPU's index, None when
    some MIG-enabled GPU would not list its MIG devices.
    """

    devices: list[GpuDevice]
    confidential_computing: dict[str, str] | None
    cuda_driver: str | None
    mig_parents: dict[str, int] | None


class _Failure(Exception):
    """One NVML call gave no answer; the message names the call and why."""


_lock = threading.Lock()
_library_state: ModuleType | NvmlUnavailable | None = None


def reset() -> None:
    """Forget the cached import and ``nvmlInit`` outcome, so the next call starts over.

    For tests, which swap the bindings between cases; NVML is not shut down.
    """
    global _library_state
    with _lock:
        _library_state = None


def _disabled() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in _OFF_VALUES


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # the bindings' __str__ itself calls into NVML
        text = ""
    return text or type(exc).__name__


def _call(lib: ModuleType, name: str, *args: Any) -> Any:
    """Call ``lib.<name>``; any failure becomes :class:`_Failure`.

    The bindings raise NVMLError subclasses, NVMLLibraryMismatchError and ctypes
    errors, and older ones lack newer functions: all mean "no answer".
    """
    function = getattr(lib, name, None)
    if function is None:
        raise _Failure(f"{name} is missing (nvidia-ml-py too old)")
    try:
        return function(*args)
    except Exception as exc:
        raise _Failure(f"{name} failed: {_describe(exc)}") from None


def _optional(lib: ModuleType, name: str, *args: Any) -> Any:
    """A call whose failure costs one field, not the answer ("Not Supported" is common)."""
    try:
        return _call(lib, name, *args)
    except _Failure:
        return None


def _load() -> ModuleType | NvmlUnavailable:
    try:
        lib = importlib.import_module("pynvml")
    except ImportError:
        return NvmlUnavailable("nvidia-ml-py is not installed")
    except Exception as exc:  # a broken install can fail its import with anything
        return NvmlUnavailable(f"pynvml import failed: {_describe(exc)}")
    try:
        _call(lib, "nvmlInit")
    except _Failure as exc:
        return NvmlUnavailable(str(exc))
    return lib


def _library() -> ModuleType | NvmlUnavailable:
    """The initialised bindings, or why there are none; imported and initialised once."""
    global _library_state
    if _disabled():
        return NvmlUnavailable(f"disabled by {ENV_SWITCH}=off")
    with _lock:
        if _library_state is None:
            _library_state = _load()
        return _library_state


# --- conversions: the bindings return bytes or str, lists or tuples, by version --


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.rstrip("\0").strip() if isinstance(value, str) else None


def _cuda_version(value: Any) -> str | None:
    """12040 -> "12.4": NVML encodes the CUDA driver API version as 1000*major + 10*minor."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


def _capability(value: Any) -> str | None:
    try:
        major, minor = value
        return f"{int(major)}.{int(minor)}"
    except (TypeError, ValueError):
        return None


def _memory_mib(info: Any) -> int:
    """Total memory in MiB; 0 when unknown, as nvidia-smi's ``[N/A]`` gives."""
    total = getattr(info, "total", None)
    return int(total) // MIB if isinstance(total, int) else 0


def _bus_id(info: Any) -> str | None:
    for attribute in ("busId", "busIdLegacy"):
        found = canonical_bus_id(_text(getattr(info, attribute, None)))
        if found:
            return found
    return None


def _mig(modes: Any) -> str | None:
    """``nvmlDeviceGetMigMode`` gives (current, pending); the current mode counts."""
    try:
        return _MIG_MODE.get(modes[0])
    except (TypeError, IndexError, KeyError):
        return None


def _conf_compute(lib: ModuleType) -> dict[str, str] | None:
    """The machine's confidential-computing state (R535+ drivers); None when unknown."""
    state = _optional(lib, "nvmlSystemGetConfComputeState")
    if state is None:
        return None
    values = [getattr(state, name, None) for name in ("ccFeature", "environment", "devToolsMode")]
    if not all(isinstance(value, int) for value in values):
        return None
    feature, environment, dev_tools = values
    return {
        "feature": _CC_FEATURE.get(feature, str(feature)),
        "environment": _CC_ENVIRONMENT.get(environment, str(environment)),
        "dev_tools": _CC_DEV_TOOLS.get(dev_tools, str(dev_tools)),
    }


# --- devices -------------------------------------------------------------------


def _device(lib: ModuleType, handle: Any, index: int, driver: str,
            cuda: str | None) -> GpuDevice:
    """One GPU; its name is required, every other per-device field is optional."""
    name = _text(_call(lib, "nvmlDeviceGetName", handle))
    if not name:
        raise _Failure(f"nvmlDeviceGetName gave no name for GPU {index}")
    return GpuDevice(
        index=index,
        name=name,
        uuid=_text(_optional(lib, "nvmlDeviceGetUUID", handle)) or None,
        driver=driver,
        memory_mib=_memory_mib(_optional(lib, "nvmlDeviceGetMemoryInfo", handle)),
        compute_capability=_capability(_optional(lib, "nvmlDeviceGetCudaComputeCapability",
                                                  handle)),
        pci_bus_id=_bus_id(_optional(lib, "nvmlDeviceGetPciInfo", handle)),
        cuda_driver=cuda,
        mig=_mig(_optional(lib, "nvmlDeviceGetMigMode", handle)),
    )


def _mig_handles(lib: ModuleType, handle: Any) -> list[Any] | None:
    """Handles of the MIG devices on a GPU; None when NVML will not list them.
    Empty slots answer NOT_FOUND, so a failing slot is skipped."""
    slots = _optional(lib, "nvmlDeviceGetMaxMigDeviceCount", handle)
    if not isinstance(slots, int):
        return None
    handles = (_optional(lib, "nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
               for slot in range(slots))
    return [mig for mig in handles if mig is not None]


def _mig_uuids(lib: ModuleType, handle: Any) -> list[str] | None:
    handles = _mig_handles(lib, handle)
    if handles is None:
        return None
    uuids = [_text(_optional(lib, "nvmlDeviceGetUUID", mig)) for mig in handles]
    return [uuid for uuid in uuids if uuid]


def _handles(lib: ModuleType) -> list[Any]:
    count = _call(lib, "nvmlDeviceGetCount")
    return [_call(lib, "nvmlDeviceGetHandleByIndex", index) for index in range(count)]


def _read(lib: ModuleType, include_uuid: bool) -> NvmlFacts:
    driver = _text(_call(lib, "nvmlSystemGetDriverVersion")) or ""
    cuda = _cuda_version(_optional(lib, "nvmlSystemGetCudaDriverVersion"))
    devices: list[GpuDevice] = []
    parents: dict[str, int] | None = {}
    for index, handle in enumerate(_handles(lib)):
        device = _device(lib, handle, index, driver, cuda)
        devices.append(device if include_uuid else replace(device, uuid=None))
        uuids = _mig_uuids(lib, handle) if device.mig == "enabled" else []
        if uuids is None or parents is None:
            parents = None
        else:
            parents.update(dict.fromkeys(uuids, index))
    return NvmlFacts(devices, _conf_compute(lib), cuda, parents)


def facts(include_uuid: bool) -> NvmlFacts | NvmlUnavailable:
    """Every GPU NVML lists, or why NVML cannot answer.

    The whole answer fails only when NVML cannot count the GPUs, open one, name
    one or say the driver version; any other field it will not give is None.
    """
    lib = _library()
    if isinstance(lib, NvmlUnavailable):
        return lib
    try:
        return _read(lib, include_uuid)
    except _Failure as exc:
        return NvmlUnavailable(str(exc))
    except Exception as exc:  # bindings answering in shapes we do not expect
        return NvmlUnavailable(f"unexpected answer from NVML: {exc!r}")


# --- processes -----------------------------------------------------------------


def _pids_on(lib: ModuleType, handle: Any) -> set[int] | None:
    """PIDs with a compute context on one handle; None when NVML will not list them."""
    processes = _optional(lib, "nvmlDeviceGetComputeRunningProcesses", handle)
    if processes is None:
        return None
    return {process.pid for process in processes if isinstance(getattr(process, "pid", None), int)}


def _pids_on_gpu(lib: ModuleType, handle: Any) -> set[int] | None:
    """A MIG GPU's own list needs privileges a container often lacks, so its MIG
    devices are asked too; None only when no list at all was given."""
    lists = [_pids_on(lib, handle)]
    if _mig(_optional(lib, "nvmlDeviceGetMigMode", handle)) == "enabled":
        lists += [_pids_on(lib, mig) for mig in _mig_handles(lib, handle) or []]
    given = [pids for pids in lists if pids is not None]
    return set().union(*given) if given else None


def process_devices(pids: set[int]) -> dict[str, bool] | None:
    """PCI bus id -> whether any of ``pids`` holds a compute context on that GPU.

    None when NVML cannot answer. A GPU whose bus id or process list NVML will
    not give is left out: unknown is not "not used". NVML lists host PIDs, so
    inside a PID namespace our own PID is never listed (see
    :func:`in_pid_namespace`).
    """
    lib = _library()
    if isinstance(lib, NvmlUnavailable):
        return None
    try:
        return _process_devices(lib, pids)
    except Exception:  # _Failure, or bindings answering in shapes we do not expect
        return None


def _process_devices(lib: ModuleType, pids: set[int]) -> dict[str, bool]:
    handles = _handles(lib)
    found: dict[str, bool] = {}
    for handle in handles:
        bus_id = _bus_id(_optional(lib, "nvmlDeviceGetPciInfo", handle))
        listed = _pids_on_gpu(lib, handle)
        if bus_id is not None and listed is not None:
            found[bus_id] = not listed.isdisjoint(pids)
    return found


def in_pid_namespace(status: Path = Path("/proc/self/status")) -> bool:
    """Whether this process runs in a PID namespace below the host's (a container).

    The kernel's ``NSpid:`` line lists our PID in each namespace from the
    outermost in; more than one entry means NVML's host PIDs are not ours.
    When that cannot be read the answer is True: a PID missing from NVML's
    list must then not be taken as proof that the process used no GPU.
    """
    try:
        lines = status.read_text().splitlines()
    except OSError:
        return True
    for line in lines:
        if line.startswith("NSpid:"):
            return len(line.split()) > 2
    return True
