"""Stand-in for the ``pynvml`` module of nvidia-ml-py, for machines without a GPU.

Only the subset gitproof calls, under the real names, with the real error
codes and an ``NVMLError`` whose constructor picks the per-code subclass, as
the real one does. Tests reach it by putting ``tests/fakes`` first on
``sys.path`` (``PYTHONPATH`` for child processes).

State is a JSON file named by ``$GITPROOF_FAKE_NVML``, read at ``nvmlInit``;
unset means no driver, so ``nvmlInit`` raises LIBRARY_NOT_FOUND like the real
module does. ``tests/nvml_fake.py`` writes it. Keys (all optional)::

    driver_version       "550.54.15"
    cuda_driver_version  12040
    strings_as_bytes     true: strings come back as bytes (older bindings)
    conf_compute         {"environment": 2, "ccFeature": 1, "devToolsMode": 0};
                         absent: NOT_SUPPORTED
    init_error           NVML error code nvmlInit raises
    errors               {"<function>": code}: system-wide failures
    absent               ["<function>"]: removed from the module at nvmlInit
                         (bindings older than the function)
    call_log             file that gets one line per API call (for child processes)
    devices              [{"name", "uuid", "pci_bus_id", "memory_total" (bytes),
                           "compute_capability": [9, 0], "mig_mode": [cur, pending],
                           "processes": [pid, ...], "errors": {"<function>": code},
                           "mig_devices": [{"uuid", "processes", "errors"}]}]

Every API call is also appended to the module-level ``calls`` list.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_CC_SYSTEM_FEATURE_DISABLED = 0
NVML_CC_SYSTEM_FEATURE_ENABLED = 1
NVML_CC_SYSTEM_ENVIRONMENT_UNAVAILABLE = 0
NVML_CC_SYSTEM_ENVIRONMENT_SIM = 1
NVML_CC_SYSTEM_ENVIRONMENT_PROD = 2
NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF = 0
NVML_CC_SYSTEM_DEVTOOLS_MODE_ON = 1

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """``NVMLError(code)`` builds the code's subclass, so ``except NVMLError_NotSupported``
    works; a subclass may be raised without its code, as with the real module."""

    _by_code: dict[int, type[NVMLError]] = {}
    _code: int | None = None

    def __new__(cls, value: int | None = None) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, NVMLError)
        error = Exception.__new__(cls)
        error.value = cls._code if cls._code is not None else value
        return error

    def __init__(self, value: int | None = None) -> None:
        super().__init__(self.value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def _error_class_name(constant: str) -> str:
    words = constant[len("NVML_ERROR_"):].split("_")
    return "NVMLError_" + "".join(word.capitalize() for word in words)


for _name, _code in list(globals().items()):
    if _name.startswith("NVML_ERROR_"):
        _class = type(_error_class_name(_name), (NVMLError,), {"_code": _code})
        NVMLError._by_code[_code] = _class
        globals()[_class.__name__] = _class

calls: list[str] = []
_state: dict[str, Any] | None = None


def _record(name: str, state: dict[str, Any] | None = None) -> None:
    calls.append(name)
    log = (state or _state or {}).get("call_log")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(name + "\n")


def _fail_if_told(name: str, errors: dict[str, int]) -> None:
    if name in errors:
        raise NVMLError(errors[name])


def _system(name: str) -> dict[str, Any]:
    """Bookkeeping for a call without a device: logged, initialised, failing if told."""
    _record(name)
    if _state is None:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    _fail_if_told(name, _state.get("errors", {}))
    return _state


class _Handle:
    """An opaque device handle; MIG handles carry their parent."""

    def __init__(self, spec: dict[str, Any], parent: _Handle | None = None) -> None:
        self.spec = spec
        self.parent = parent


def _device(name: str, handle: _Handle) -> dict[str, Any]:
    _system(name)
    _fail_if_told(name, handle.spec.get("errors", {}))
    return handle.spec


def _out(text: str) -> str | bytes:
    return text.encode() if (_state or {}).get("strings_as_bytes") else text


def _read_state() -> dict[str, Any] | None:
    path = os.environ.get("GITPROOF_FAKE_NVML")
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def nvmlInit() -> None:
    global _state
    state = _read_state()
    _record("nvmlInit", state)
    if state is None:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    if "init_error" in state:
        raise NVMLError(state["init_error"])
    _state = state
    for name in state.get("absent", []):
        globals().pop(name, None)


def nvmlShutdown() -> None:
    global _state
    _system("nvmlShutdown")
    _state = None


def nvmlSystemGetDriverVersion() -> str | bytes:
    return _out(_system("nvmlSystemGetDriverVersion").get("driver_version", "550.54.15"))


def nvmlSystemGetCudaDriverVersion() -> int:
    return _system("nvmlSystemGetCudaDriverVersion").get("cuda_driver_version", 12040)


def nvmlSystemGetConfComputeState() -> SimpleNamespace:
    state = _system("nvmlSystemGetConfComputeState")
    if "conf_compute" not in state:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return SimpleNamespace(**state["conf_compute"])


def nvmlDeviceGetCount() -> int:
    return len(_system("nvmlDeviceGetCount").get("devices", []))


def nvmlDeviceGetHandleByIndex(index: int) -> _Handle:
    devices = _system("nvmlDeviceGetHandleByIndex").get("devices", [])
    if not 0 <= index < len(devices):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(devices[index])


def nvmlDeviceGetName(handle: _Handle) -> str | bytes:
    spec = _device("nvmlDeviceGetName", handle)
    return _out(spec.get("name") or handle.parent.spec["name"] + " MIG")


def nvmlDeviceGetUUID(handle: _Handle) -> str | bytes:
    return _out(_device("nvmlDeviceGetUUID", handle)["uuid"])


def nvmlDeviceGetPciInfo(handle: _Handle) -> SimpleNamespace:
    bus_id = _device("nvmlDeviceGetPciInfo", handle)["pci_bus_id"]
    return SimpleNamespace(busId=_out(bus_id), busIdLegacy=_out(bus_id[4:]))


def nvmlDeviceGetMemoryInfo(handle: _Handle) -> SimpleNamespace:
    total = _device("nvmlDeviceGetMemoryInfo", handle)["memory_total"]
    return SimpleNamespace(total=total, free=total, used=0)


def nvmlDeviceGetCudaComputeCapability(handle: _Handle) -> tuple[int, int]:
    major, minor = _device("nvmlDeviceGetCudaComputeCapability", handle)["compute_capability"]
    return major, minor


def nvmlDeviceGetMigMode(handle: _Handle) -> list[int]:
    spec = _device("nvmlDeviceGetMigMode", handle)
    if "mig_mode" not in spec:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return list(spec["mig_mode"])


def nvmlDeviceGetMaxMigDeviceCount(handle: _Handle) -> int:
    spec = _device("nvmlDeviceGetMaxMigDeviceCount", handle)
    if "mig_mode" not in spec:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(handle: _Handle, index: int) -> _Handle:
    spec = _device("nvmlDeviceGetMigDeviceHandleByIndex", handle)
    if spec.get("mig_mode", [0])[0] != NVML_DEVICE_MIG_ENABLE:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    migs = spec.get("mig_devices", [])
    if index >= len(migs):
        raise NVMLError(NVML_ERROR_NOT_FOUND)  # an empty slot, as on real hardware
    return _Handle(migs[index], parent=handle)


def nvmlDeviceGetComputeRunningProcesses(handle: _Handle) -> list[SimpleNamespace]:
    spec = _device("nvmlDeviceGetComputeRunningProcesses", handle)
    return [SimpleNamespace(pid=pid, usedGpuMemory=1 << 20) for pid in spec.get("processes", [])]
