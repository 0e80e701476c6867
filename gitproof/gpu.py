"""GPU device facts for receipts.

A receipt says which GPUs the machine had, so the facts must come from
something that talks to the driver. Three sources are asked in order, and the
first that answers wins (an answer of "zero devices" counts):

1. NVML (:mod:`gitproof.nvml`, needs ``nvidia-ml-py``): in-process, no child
   process, and the only source for the CUDA driver version and the
   confidential-computing state.
2. ``nvidia-smi`` (``$GITPROOF_NVIDIA_SMI`` picks the program): one child process.
3. torch, when it is importable: last, because describing devices makes torch
   initialise CUDA in this process.

Each source that gives nothing leaves a note saying why, so a receipt with
``source: none`` explains itself. :func:`detect_gpus` is the older
nvidia-smi-only entry point and stays as it was.
"""
from __future__ import annotations

import csv
import functools
import importlib
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

ENV_PROGRAM = "GITPROOF_NVIDIA_SMI"
ENV_VISIBLE = "CUDA_VISIBLE_DEVICES"
ENV_ORDER = "CUDA_DEVICE_ORDER"
QUERY_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "compute_cap",
                "pci.bus_id", "mig.mode.current")
# Fields an older driver may not know: dropped, and the query retried, when it says so.
OPTIONAL_FIELDS = ("compute_cap", "pci.bus_id", "mig.mode.current")
TIMEOUT_S = 10.0
MIB = 1024 * 1024
_MISSING_VALUES = {"", "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]"}
_ORDINAL = re.compile(r"[0-9]+")
# Anything in CUDA_VISIBLE_DEVICES that could be a device's UUID, wherever it stands.
_UUID_LIKE = re.compile(r"(GPU|MIG)-[^,\s\"']*|[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.I)
_BUS_ID = re.compile(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])", re.I)


@dataclass(frozen=True)
class GpuDevice:
    """One GPU as a receipt's ``gpu:`` line records it.

    ``index`` is the NVML / nvidia-smi index (PCI order), not a CUDA ordinal,
    except for devices that only torch could describe. ``visible`` is whether
    ``CUDA_VISIBLE_DEVICES`` let the tests see the device; None when that
    cannot be told.
    """

    index: int
    name: str
    uuid: str | None
    driver: str
    memory_mib: int
    compute_capability: str | None
    pci_bus_id: str | None = None
    cuda_driver: str | None = None
    mig: str | None = None
    visible: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Receipt JSON; ``uuid`` is left out when None so opting out leaves no trace."""
        data: dict[str, Any] = {"index": self.index, "name": self.name}
        if self.uuid is not None:
            data["uuid"] = self.uuid
        data.update(
            pci_bus_id=self.pci_bus_id,
            driver=self.driver,
            cuda_driver=self.cuda_driver,
            memory_mib=self.memory_mib,
            compute_capability=self.compute_capability,
            mig=self.mig,
            visible=self.visible,
        )
        return data


@dataclass(frozen=True)
class GpuFacts:
    """Where the device facts came from, plus machine-wide GPU state.

    ``devices`` go to the receipt's ``gpu:`` lines; :meth:`to_dict` is the
    ``gpu-facts:`` line. ``confidential_computing`` is None unless NVML said.
    """

    source: str
    devices: list[GpuDevice]
    confidential_computing: dict[str, str] | None
    cuda_visible_devices: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "cuda_visible_devices": self.cuda_visible_devices,
            "confidential_computing": self.confidential_computing,
            "notes": list(self.notes),
        }


def canonical_bus_id(text: str | None) -> str | None:
    """PCI bus id in NVML's form, ``00000000:18:00.0``; None when unparseable.

    nvidia-smi, NVML, CUDA and torch spell the same address differently
    (4- or 8-digit domain, either case); one form lets them be compared.
    """
    match = _BUS_ID.fullmatch(text.strip()) if text else None
    if match is None:
        return None
    domain, bus, device, function = (int(part or "0", 16) for part in match.groups())
    return f"{domain:08X}:{bus:02X}:{device:02X}.{function:X}"


# --- nvidia-smi: the process boundary ------------------------------------------


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
        rows.append({field: value.strip() for field, value in zip(fields, values)})
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


def _query(program: str) -> list[dict[str, str]] | str:
    """Raw rows, or why there are none."""
    fields = QUERY_FIELDS
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


def query_nvidia_smi(program: str = "nvidia-smi") -> list[dict[str, str]] | None:
    """Raw per-GPU rows keyed by query field; None when nvidia-smi is absent or fails."""
    rows = _query(program)
    return None if isinstance(rows, str) else rows


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


def _device_from_row(row: dict[str, str], position: int, include_uuid: bool) -> GpuDevice:
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


def _program(environ: Mapping[str, str]) -> str:
    return environ.get(ENV_PROGRAM) or "nvidia-smi"


def detect_gpus(include_uuid: bool = True, program: str | None = None) -> list[GpuDevice]:
    """NVIDIA GPUs nvidia-smi lists (empty when none); ``$GITPROOF_NVIDIA_SMI`` picks the
    program. Kept for callers that want nvidia-smi alone; receipts use :func:`detect_facts`."""
    rows = query_nvidia_smi(program or _program(os.environ)) or []
    devices = [_device_from_row(row, i, include_uuid) for i, row in enumerate(rows)]
    return sorted(devices, key=lambda device: device.index)


# --- the sources ---------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """What one source said. ``mig_parents`` maps MIG UUIDs to their GPU's index;
    None when the source cannot tell which GPU a MIG device belongs to."""

    source: str
    devices: list[GpuDevice]
    confidential_computing: dict[str, str] | None = None
    mig_parents: dict[str, int] | None = None


def _nvml_source(environ: Mapping[str, str], import_torch: bool) -> _Answer | str:
    # Imported here: gitproof.nvml builds GpuDevice, so it imports this module.
    from gitproof import nvml

    found = nvml.facts(include_uuid=True)  # UUIDs are needed to match CUDA_VISIBLE_DEVICES
    if isinstance(found, nvml.NvmlUnavailable):
        return f"nvml: {found.reason}"
    return _Answer("nvml", found.devices, found.confidential_computing, found.mig_parents)


def _smi_source(environ: Mapping[str, str], import_torch: bool) -> _Answer | str:
    rows = _query(_program(environ))
    if isinstance(rows, str):
        return f"nvidia-smi: {rows}"
    return _Answer("nvidia-smi", [_device_from_row(row, i, True) for i, row in enumerate(rows)])


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
    parts = [getattr(props, f"pci_{name}_id", None) for name in ("domain", "bus", "device")]
    if not all(isinstance(part, int) for part in parts):
        return None
    return canonical_bus_id("{:x}:{:x}:{:x}.0".format(*parts))


def _torch_device(torch: Any, ordinal: int) -> GpuDevice:
    props = torch.cuda.get_device_properties(ordinal)
    return GpuDevice(
        index=ordinal, name=str(props.name), uuid=_torch_uuid(props), driver="",
        memory_mib=int(props.total_memory) // MIB,
        compute_capability=f"{props.major}.{props.minor}",
        pci_bus_id=_torch_bus_id(props), visible=True,
    )


def _torch_source(environ: Mapping[str, str], import_torch: bool) -> _Answer | str:
    """torch sees CUDA ordinals after CUDA_VISIBLE_DEVICES, so its devices are all visible."""
    torch = _torch_module(import_torch)
    if isinstance(torch, str):
        return torch
    try:
        devices = [_torch_device(torch, i) for i in range(torch.cuda.device_count())]
    except Exception as exc:  # the framework boundary: any failure is "no answer"
        return f"torch: {type(exc).__name__}: {exc}"
    return _Answer("torch", devices)


_SOURCES = (_nvml_source, _smi_source, _torch_source)


# --- CUDA_VISIBLE_DEVICES ------------------------------------------------------


@dataclass(frozen=True)
class _Selection:
    """What CUDA_VISIBLE_DEVICES leaves CUDA: the devices it names (by ``index``),
    how many entries CUDA accepts, and whether some entry's device cannot be named."""

    chosen: frozenset[int] = frozenset()
    accepted: int = 0
    uncertain: bool = False

    def flag(self, device: GpuDevice) -> bool | None:
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


def _mig_parent(entry: str, answer: _Answer) -> int | str:
    """Index of the GPU holding MIG device ``entry``. ``MIG-GPU-<uuid>/<gi>/<ci>``
    (drivers before R470) names its parent outright; newer UUIDs need NVML's map."""
    if entry.startswith("MIG-GPU-"):
        parent = _by_uuid_prefix(entry[len("MIG-"):].split("/")[0], answer.devices)
        return parent.index if isinstance(parent, GpuDevice) else parent
    if answer.mig_parents is None:
        return _UNSURE
    found = {i for uuid, i in answer.mig_parents.items() if uuid.startswith(entry)}
    return found.pop() if len(found) == 1 else _REJECTED


def _resolve(entry: str, answer: _Answer, order: list[GpuDevice] | None) -> int | str:
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


def _select(value: str | None, answer: _Answer, environ: Mapping[str, str]) -> _Selection:
    """Parse CUDA_VISIBLE_DEVICES as CUDA does: stop at the first entry it rejects."""
    if value is None:
        indexes = frozenset(device.index for device in answer.devices)
        return _Selection(indexes, len(indexes))
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
    return _Selection(frozenset(chosen), accepted, uncertain)


# --- facts ---------------------------------------------------------------------


def _facts(answer: _Answer, environ: Mapping[str, str], include_uuid: bool,
           notes: list[str]) -> GpuFacts:
    value = environ.get(ENV_VISIBLE)
    devices = answer.devices
    if answer.source != "torch":
        selection = _select(value, answer, environ)
        devices = [replace(device, visible=selection.flag(device)) for device in devices]
    if not include_uuid:
        devices = [replace(device, uuid=None) for device in devices]
        value = redact_uuids(value)
    devices = sorted(devices, key=lambda device: device.index)
    return GpuFacts(answer.source, devices, answer.confidential_computing, value, notes)


def redact_uuids(value: str | None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` with GPU and MIG UUIDs hidden (``include_gpu_uuid = false``).

    The variable may name devices by UUID, quoted or not; a receipt that
    leaves UUIDs out must not carry them here either. Ordinals stay.
    """
    if value is None:
        return None
    return _UUID_LIKE.sub(lambda m: f"{(m.group(1) or 'GPU').upper()}-redacted", value)


def detect_facts(include_uuid: bool = True, environ: Mapping[str, str] | None = None,
                 import_torch: bool = True) -> GpuFacts:
    """The machine's GPUs from the first source that answers (NVML, nvidia-smi, torch).

    ``environ`` (default ``os.environ``) supplies ``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER`` and ``GITPROOF_NVIDIA_SMI`` as the tests saw them;
    ``GITPROOF_NVML`` is read from the process environment by :mod:`gitproof.nvml`.
    torch is imported only when ``import_torch`` or when it already is.
    """
    environ = os.environ if environ is None else environ
    notes: list[str] = []
    for source in _SOURCES:
        answer = source(environ, import_torch)
        if isinstance(answer, str):
            notes.append(answer)
            continue
        return _facts(answer, environ, include_uuid, notes)
    visible = environ.get(ENV_VISIBLE)
    return GpuFacts("none", [], None, visible if include_uuid else redact_uuids(visible), notes)


def _torch_sees_any() -> bool:
    """Counting needs no device description, so torch's CUDA is not initialised here."""
    torch = sys.modules.get("torch")
    try:
        return torch is not None and torch.cuda.device_count() > 0
    except Exception:  # the framework boundary
        return False


@functools.cache
def gpu_visible() -> bool:
    """Whether CUDA would see any GPU here; cached for the process (``cache_clear`` redoes it).

    NVML is asked first, so no process is spawned when it works; torch is
    consulted only if the tests already imported it.
    """
    for source in (_nvml_source, _smi_source):
        answer = source(os.environ, False)
        if not isinstance(answer, str):
            return _select(os.environ.get(ENV_VISIBLE), answer, os.environ).any_visible
    return _torch_sees_any()


def summary(devices: list[GpuDevice]) -> str:
    """``"NVIDIA H100 80GB HBM3"``, ``"2x NVIDIA A100-SXM4-80GB"``, mixed joined by ", "."""
    if not devices:
        return "none"
    counts = Counter(device.name for device in devices)
    return ", ".join(name if n == 1 else f"{n}x {name}" for name, n in counts.items())
