"""The GPU records a receipt carries, as typed values.

A receipt holds three kinds of GPU record, each a JSON object on one line
(docs/receipt-format.md): ``gpu:`` (:class:`GpuDevice`), ``gpu-facts:``
(:class:`GpuFacts`, less its devices) and ``gpu-use:`` (:class:`GpuUse`,
whose ``kernels`` object is a :class:`KernelTotals`).

``to_dict`` is that JSON, key order included: receipts are signed text, so
the order is part of what a signature covers. ``from_dict`` reads a record
back from a receipt :mod:`gitproof.receipt` has parsed, and never raises.
It has to be lenient because receipt text is untrusted: receipt.py checks
the types of the ``gpu-use`` and ``gpu-facts`` keys it knows, but not those of
a ``gpu:`` line, and any key may be absent in a receipt from an older
writer. So a value that is missing or of the wrong type reads as the
field's default (None, 0, empty), except text meant for people (a device's
``name``, the facts' ``source``, a kernel's ``name``), which reads as the
value's ``str()``, or ``"?"`` when absent, as ``show`` has always printed it.
For every record this version writes, ``from_dict(r.to_dict()) == r``.

This module imports nothing but the standard library, so the verifier can
read GPU records without loading any GPU code.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024  # the unit of GpuDevice.memory_mib
_BUS_ID = re.compile(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])", re.I)

# The values of GpuUse.method: which probe decided (gitproof.gpu.probes).
METHOD_TORCH = "torch.cuda.memory_stats"
METHOD_CUPY = "cupy.memory_hook"
METHOD_CONTEXT = "cuda-driver.context"
METHOD_NOT_LOADED = "cuda-driver.not-loaded"
METHOD_NOT_INITIALIZED = "cuda-driver.not-initialized"
METHOD_KERNELS = "cupti.kernels"
METHODS = (METHOD_KERNELS, METHOD_TORCH, METHOD_CUPY, METHOD_CONTEXT, METHOD_NOT_LOADED,
           METHOD_NOT_INITIALIZED)
# The values of GpuUse.nvml: what NVML's per-process list said (gitproof.gpu.monitor).
NVML_ANSWERS = ("listed", "not-listed", "pid-namespace", "unavailable")


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


def milliseconds(nanoseconds: int) -> str:
    """``20383`` -> ``"0.020"``, in whole numbers: a hostile count may be too big for a float."""
    return f"{nanoseconds // 1_000_000}.{nanoseconds // 1000 % 1000:03d}"


# -- lenient readers for from_dict ---------------------------------------------------------

_ABSENT: Any = object()


def _label(value: Any) -> str:
    """Text a person reads: a string as it is, any other JSON value as its str(), absent as "?"."""
    return "?" if value is _ABSENT else value if isinstance(value, str) else str(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _texts(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


# -- gpu: ----------------------------------------------------------------------------------


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuDevice:
        """A ``gpu:`` object as parsed (unchecked by receipt.py: any key may be any JSON).

        ``visible`` is None unless the object says true or false, so
        ``device.visible is False`` holds only for a device the receipt says
        was hidden; ``driver`` reads as ``""`` and ``index``/``memory_mib`` as 0
        when missing or mistyped.
        """
        return cls(
            index=_count(data.get("index")),
            name=_label(data.get("name", _ABSENT)),
            uuid=_text(data.get("uuid")),
            driver=_text(data.get("driver")) or "",
            memory_mib=_count(data.get("memory_mib")),
            compute_capability=_text(data.get("compute_capability")),
            pci_bus_id=_text(data.get("pci_bus_id")),
            cuda_driver=_text(data.get("cuda_driver")),
            mig=_text(data.get("mig")),
            visible=_flag(data.get("visible")),
        )


# -- gpu-facts: ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuFacts:
    """Where the device facts came from, plus machine-wide GPU state.

    ``devices`` go to the receipt's ``gpu:`` lines; :meth:`to_dict` is the
    ``gpu-facts:`` line. ``source`` is ``nvml``, ``nvidia-smi``, ``torch`` or
    ``none``; ``confidential_computing`` is None unless NVML said (keys
    ``feature``, ``environment``, ``dev_tools``); ``cuda_visible_devices`` is
    the variable as the tests saw it (None: unset); ``notes`` say why the
    sources before ``source`` gave nothing.
    """

    source: str
    devices: list[GpuDevice]
    confidential_computing: dict[str, str] | None
    cuda_visible_devices: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``gpu-facts:`` object; the devices are written as ``gpu:`` lines instead."""
        return {
            "source": self.source,
            "cuda_visible_devices": self.cuda_visible_devices,
            "confidential_computing": self.confidential_computing,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any],
                  devices: Iterable[Mapping[str, Any]] = ()) -> GpuFacts:
        """A ``gpu-facts:`` object, with the receipt's ``gpu:`` objects as ``devices``.

        A receipt from before gitproof 0.2 has no ``gpu-facts:`` line: a
        reader checks for that (``receipt.gpu_facts is None``) before calling
        this. ``confidential_computing`` values read as their str().
        """
        state = data.get("confidential_computing")
        return cls(
            source=_label(data.get("source", _ABSENT)),
            devices=[GpuDevice.from_dict(device) for device in devices],
            confidential_computing=({key: _label(value) for key, value in state.items()}
                                    if isinstance(state, dict) else None),
            cuda_visible_devices=_text(data.get("cuda_visible_devices")),
            notes=_texts(data.get("notes")),
        )


# -- gpu-use: and its kernels object ------------------------------------------------------


@dataclass(frozen=True)
class Transfers:
    """Copies or memsets a test body ran: how many, and how many bytes in all."""

    count: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: Any) -> Transfers:
        """``{"count", "bytes"}``; anything else reads as none."""
        if not isinstance(data, Mapping):
            return cls()
        return cls(_count(data.get("count")), _count(data.get("bytes")))


@dataclass(frozen=True)
class TopKernel:
    """One of the busiest kernels of a test body: its (mangled) name, launches and GPU time."""

    name: str
    launches: int
    gpu_time_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "launches": self.launches, "gpu_time_ns": self.gpu_time_ns}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopKernel:
        return cls(_label(data.get("name", _ABSENT)), _count(data.get("launches")),
                   _count(data.get("gpu_time_ns")))


@dataclass(frozen=True)
class KernelTotals:
    """A ``gpu-use`` record's ``kernels`` object: what CUPTI saw a test body run.

    ``tracer`` None means the kernels were not traced and ``error`` says
    why; the counts are then zero and not written. Otherwise ``tracer`` names
    CUPTI and its version, ``devices`` are PCI bus ids (``"cuda:N"`` where the
    driver could not map an ordinal), ``top`` the busiest kernels by GPU
    time, and ``dropped``/``incomplete``/``untimed`` count records the
    window may have missed (then "nothing ran" cannot be claimed).
    """

    tracer: str | None
    error: str | None = None
    launches: int = 0
    gpu_time_ns: int = 0
    devices: list[str] = field(default_factory=list)
    top: list[TopKernel] = field(default_factory=list)
    memcpy: Transfers = field(default_factory=Transfers)
    memset: Transfers = field(default_factory=Transfers)
    dropped: int = 0
    incomplete: int = 0
    untimed: int = 0

    @classmethod
    def untraced(cls, error: str | None) -> KernelTotals:
        """The record of a test whose kernels could not be traced, saying why."""
        return cls(None, error)

    @property
    def traced(self) -> bool:
        return self.tracer is not None

    def to_dict(self) -> dict[str, Any]:
        """``{"tracer": null, "error": ...}`` when not traced, else every total, in receipt order."""
        if self.tracer is None:
            return {"tracer": None, "error": self.error}
        return {"tracer": self.tracer, "launches": self.launches, "gpu_time_ns": self.gpu_time_ns,
                "devices": list(self.devices), "top": [kernel.to_dict() for kernel in self.top],
                "memcpy": self.memcpy.to_dict(), "memset": self.memset.to_dict(),
                "dropped": self.dropped, "incomplete": self.incomplete, "untimed": self.untimed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KernelTotals:
        """A ``kernels`` object as receipt.py let it through: missing counts read as 0,
        a missing ``memcpy``/``memset`` as none, ``top`` entries that are not objects are skipped."""
        top = data.get("top")
        return cls(
            tracer=_text(data.get("tracer")),
            error=_text(data.get("error")),
            launches=_count(data.get("launches")),
            gpu_time_ns=_count(data.get("gpu_time_ns")),
            devices=_texts(data.get("devices")),
            top=[TopKernel.from_dict(entry) for entry in top if isinstance(entry, Mapping)]
            if isinstance(top, list) else [],
            memcpy=Transfers.from_dict(data.get("memcpy")),
            memset=Transfers.from_dict(data.get("memset")),
            dropped=_count(data.get("dropped")),
            incomplete=_count(data.get("incomplete")),
            untimed=_count(data.get("untimed")),
        )


@dataclass(frozen=True)
class GpuUse:
    """One test's GPU-use record, as written in a receipt's ``gpu-use:`` line."""

    test: str                 # node id
    used: bool | None         # True: use seen; False: a probe that would see use saw none;
                              # None: unknown (no probe could decide)
    method: str | None        # the probe that decided (one of METHODS), None when unknown
    evidence: str             # short sentence(s) saying what was seen
    devices: list[str] = field(default_factory=list)  # PCI bus ids used, when known
    nvml: str | None = None   # one of NVML_ANSWERS; None: not asked (used is not True)
    kernels: KernelTotals | None = None  # the kernels probe's totals; None: not traced

    def __init__(self, test: str, used: bool | None, method: str | None, evidence: str,
                 devices: list[str] | None = None, nvml: str | None = None,
                 kernels: KernelTotals | None = None) -> None:
        # Written out: the generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__, and the plugin makes one of these for every test it watches.
        fields = self.__dict__
        fields["test"], fields["used"], fields["method"], fields["evidence"] = test, used, method, evidence
        fields["devices"] = [] if devices is None else devices
        fields["nvml"], fields["kernels"] = nvml, kernels

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"test": self.test, "used": self.used, "method": self.method,
                                "evidence": self.evidence, "devices": list(self.devices),
                                "nvml": self.nvml}
        if self.kernels is not None:  # absent, not null, when tracing was not asked for
            data["kernels"] = self.kernels.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GpuUse:
        """A ``gpu-use`` object as receipt.py let it through (``test`` and ``used`` checked).

        A missing ``evidence`` reads as ``""``, and ``kernels`` as None unless it is an object.
        """
        kernels = data.get("kernels")
        return cls(
            test=_label(data.get("test", _ABSENT)),
            used=_flag(data.get("used")),
            method=_text(data.get("method")),
            evidence=_text(data.get("evidence")) or "",
            devices=_texts(data.get("devices")),
            nvml=_text(data.get("nvml")),
            kernels=KernelTotals.from_dict(kernels) if isinstance(kernels, Mapping) else None,
        )
