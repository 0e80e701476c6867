"""nvidia-smi: the device facts through one child process.

The second source of device facts (:mod:`gitproof.gpu.sources`), for
machines without the NVML bindings. ``$GITPROOF_NVIDIA_SMI`` picks the
program. Its output is parsed strictly: a row we do not understand is no
evidence at all, and every failure comes back as a short reason for the
receipt's notes rather than an exception.
"""
from __future__ import annotations

import csv
import subprocess
from collections.abc import Mapping

from gitproof.gpu.records import GpuDevice, canonical_bus_id

ENV_PROGRAM = "GITPROOF_NVIDIA_SMI"
QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap",
                "pci.bus_id", "mig.mode.current")
# Fields an older driver may not know: dropped, and the query retried, when it says so.
OPTIONAL_FIELDS = ("compute_cap", "pci.bus_id", "mig.mode.current")
TIMEOUT_S = 10.0
_MISSING_VALUES = {"", "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]"}


def program(environ: Mapping[str, str]) -> str:
    """The nvidia-smi to run: ``$GITPROOF_NVIDIA_SMI``, else the one on PATH."""
    return environ.get(ENV_PROGRAM) or "nvidia-smi"


def _run_query(program: str, fields: tuple[str, ...]) -> subprocess.CompletedProcess[str] | str:
    command = [program, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
    try:
        return subprocess.run(
            command, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {TIMEOUT_S:g}s"
    except OSError as exc:
        return f"cannot run {program}: {exc.strerror or exc}"


def _parse_rows(stdout: str, fields: tuple[str, ...]) -> list[dict[str, str]] | None:
    rows = []
    for values in csv.reader(stdout.splitlines(), skipinitialspace=True):
        if not values:
            continue
        if len(values) != len(fields):
            return None  # output we do not understand is no evidence at all
        rows.append({field: value.strip() for field, value in zip(fields, values, strict=True)})
    return rows


def _rejected_fields(result: subprocess.CompletedProcess[str],
                     fields: tuple[str, ...]) -> tuple[str, ...]:
    """Optional fields an older driver refused (it names them, e.g. compute_cap before ~510)."""
    if result.returncode == 0:
        return ()
    output = result.stdout + result.stderr
    return tuple(f for f in fields if f in OPTIONAL_FIELDS and f'"{f}"' in output)


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    return f"exited {result.returncode}" + (f": {lines[0].strip()}" if lines else "")


def query(program: str) -> list[dict[str, str]] | str:
    """Raw per-GPU rows keyed by query field, or why there are none."""
    fields: tuple[str, ...] = QUERY_FIELDS
    while True:
        result = _run_query(program, fields)
        if isinstance(result, str):
            return result
        rejected = _rejected_fields(result, fields)
        if not rejected:
            break
        fields = tuple(f for f in fields if f not in rejected)
    if result.returncode != 0:
        return _failure(result)
    rows = _parse_rows(result.stdout, fields)
    return "output not understood" if rows is None else rows


def _optional(value: str | None) -> str | None:
    return None if value is None or value in _MISSING_VALUES else value


def _as_int(value: str | None, fallback: int) -> int:
    try:
        return int(value) if value is not None else fallback
    except ValueError:
        return fallback


def _mig_state(value: str | None) -> str | None:
    value = _optional(value)
    return value.lower() if value is not None and value.lower() in ("enabled", "disabled") else None


def device_from_row(row: Mapping[str, str], position: int, include_uuid: bool) -> GpuDevice:
    """One row of :func:`query` as a device; ``position`` stands in for a missing index."""
    return GpuDevice(
        index=_as_int(row.get("index"), position),
        name=row.get("name", ""),
        uuid=_optional(row.get("uuid")) if include_uuid else None,
        driver=row.get("driver_version", ""),
        memory_mib=_as_int(row.get("memory.total"), 0),
        compute_capability=_optional(row.get("compute_cap")),
        pci_bus_id=canonical_bus_id(_optional(row.get("pci.bus_id"))),
        mig=_mig_state(row.get("mig.mode.current")),
    )
