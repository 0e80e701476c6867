"""GPU device facts for receipts.

Everything that touches the driver goes through :func:`query_nvidia_smi`, which
returns raw rows; swapping in NVML later only replaces that one function.
"""
from __future__ import annotations

import csv
import functools
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from typing import Any

ENV_PROGRAM = "GITPROOF_NVIDIA_SMI"
QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap")
TIMEOUT_S = 10.0
_REQUIRED_KEYS = ("name", "driver", "memory_mib")
_MISSING_VALUES = {"", "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]"}


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    uuid: str | None
    driver: str
    memory_mib: int
    compute_capability: str | None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "name": self.name}
        if self.uuid is not None:
            data["uuid"] = self.uuid
        data.update(
            driver=self.driver,
            memory_mib=self.memory_mib,
            compute_capability=self.compute_capability,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuDevice:
        """Build from a receipt; unknown keys are ignored so newer receipts still load."""
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"GPU device is missing required field(s): {', '.join(missing)}")
        return cls(
            index=_typed(data, "index", int, default=0),
            name=_typed(data, "name", str),
            uuid=_typed(data, "uuid", str, optional=True),
            driver=_typed(data, "driver", str),
            memory_mib=_typed(data, "memory_mib", int),
            compute_capability=_typed(data, "compute_capability", str, optional=True),
        )


def _typed(data: dict[str, Any], key: str, kind: type, *, optional: bool = False,
           default: Any = None) -> Any:
    value = data.get(key, default)
    if value is None and (optional or key not in data):
        return value
    # bool is an int subclass; a boolean index or size is a malformed receipt.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"GPU device field {key!r} must be {kind.__name__}, got {value!r}")
    return value


# --- the boundary --------------------------------------------------------------


def _run_query(program: str, fields: tuple[str, ...]) -> subprocess.CompletedProcess[str] | None:
    command = [program, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _parse_rows(stdout: str, fields: tuple[str, ...]) -> list[dict[str, str]] | None:
    rows = []
    for values in csv.reader(stdout.splitlines(), skipinitialspace=True):
        if not values:
            continue
        if len(values) != len(fields):
            return None  # output we do not understand is no evidence at all
        rows.append({field: value.strip() for field, value in zip(fields, values)})
    return rows


def _unknown_compute_cap(result: subprocess.CompletedProcess[str] | None) -> bool:
    """Drivers before ~510 reject the compute_cap field."""
    if result is None or result.returncode == 0:
        return False
    return "compute_cap" in result.stdout + result.stderr


def query_nvidia_smi(program: str = "nvidia-smi") -> list[dict[str, str]] | None:
    """Raw per-GPU rows keyed by query field; None when nvidia-smi is absent or fails."""
    fields = QUERY_FIELDS
    result = _run_query(program, fields)
    if _unknown_compute_cap(result):
        fields = tuple(field for field in QUERY_FIELDS if field != "compute_cap")
        result = _run_query(program, fields)
    if result is None or result.returncode != 0:
        return None
    return _parse_rows(result.stdout, fields)


# --- devices -------------------------------------------------------------------


def _optional(value: str | None) -> str | None:
    return None if value is None or value in _MISSING_VALUES else value


def _as_int(value: str | None, fallback: int) -> int:
    try:
        return int(value) if value is not None else fallback
    except ValueError:
        return fallback


def _device_from_row(row: dict[str, str], position: int, include_uuid: bool) -> GpuDevice:
    return GpuDevice(
        index=_as_int(row.get("index"), position),
        name=row.get("name", ""),
        uuid=_optional(row.get("uuid")) if include_uuid else None,
        driver=row.get("driver_version", ""),
        memory_mib=_as_int(row.get("memory.total"), 0),
        compute_capability=_optional(row.get("compute_cap")),
    )


def detect_gpus(include_uuid: bool = True, program: str | None = None) -> list[GpuDevice]:
    """Visible NVIDIA GPUs (empty when none); ``$GITPROOF_NVIDIA_SMI`` picks the program."""
    program = program or os.environ.get(ENV_PROGRAM) or "nvidia-smi"
    rows = query_nvidia_smi(program) or []
    devices = [_device_from_row(row, i, include_uuid) for i, row in enumerate(rows)]
    return sorted(devices, key=lambda device: device.index)


@functools.cache
def gpu_visible() -> bool:
    """Whether any GPU is visible; cached for the process (call ``cache_clear`` to redo)."""
    return bool(detect_gpus(include_uuid=False))


def summary(devices: list[GpuDevice]) -> str:
    """``"NVIDIA H100 80GB HBM3"``, ``"2x NVIDIA A100-SXM4-80GB"``, mixed joined by ", "."""
    if not devices:
        return "none"
    counts = Counter(device.name for device in devices)
    return ", ".join(name if n == 1 else f"{n}x {name}" for name, n in counts.items())
