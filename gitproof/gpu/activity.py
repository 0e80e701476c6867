"""CUPTI's activity records: their layout, and the window that adds up one test body's.

Only the prefix of each record is read, the fields that have kept their
offsets in every record version since CUDA 9 (``kind``, ``start``, ``end``,
``deviceId``, ``correlationId``, the kernel's ``name``); each record is
checked for sanity before it counts.

How a test's work is attributed: the tracer (:mod:`gitproof.gpu.cupti`)
opens a :class:`Window` at CUPTI's current timestamp and closes it after a
flush; the window keeps the kernels *launched* inside it (CUPTI's
``queued`` timestamp, the host-side launch time, which gitproof asks CUPTI
to collect), whenever they ran. Work a fixture or an earlier test launched
counts for nobody, even if it runs on the GPU during this test. Copies and
memsets carry no launch time and are kept by their GPU start. Where CUPTI
gives no launch time, a kernel is kept by its GPU start too.

What a window cannot see: a kernel still running when the flush comes is
an incomplete record, and CUPTI stops a buffer's records there; records
CUPTI drops for lack of buffer space; kernels without timestamps. The
window counts each of these, and then never claims that nothing ran. The
records are added up as they arrive, so a test that launches millions of
kernels costs no memory per kernel.
"""
from __future__ import annotations

import ctypes
import threading
from collections import Counter
from dataclasses import dataclass, field

from gitproof.gpu.records import TopKernel, Transfers

KIND_MEMCPY, KIND_MEMSET, KIND_CONCURRENT_KERNEL = 1, 2, 10
KIND_KERNEL = 3  # the serialising variant; records look the same

TOP_KERNELS = 5          # kernels named in a record, by GPU time
MAX_NAME = 160           # characters of a (mangled) kernel name kept
_MAX_NAMES = 4096        # decoded names cached
_MAX_DEVICE = 1 << 16    # a device id above this is a misread record, not a device

# Record prefixes (the headers pack every record at 8-byte alignment). These offsets are the
# same in CUpti_ActivityKernel4 (CUDA 9) to CUpti_ActivityKernel13 (CUDA 13.5), and in the
# memcpy and memset records alike.
_OFF_KIND = 0
_KERNEL_START, _KERNEL_END, _KERNEL_DEVICE, _KERNEL_NAME, _KERNEL_QUEUED = 16, 24, 40, 104, 120
_COPY_BYTES, _COPY_START, _COPY_END, _COPY_DEVICE = 8, 16, 24, 32

_libc = ctypes.CDLL(None)
_strnlen = _libc.strnlen
_strnlen.restype = ctypes.c_size_t
_strnlen.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


@dataclass
class KernelStats:
    """What one test body ran on the GPU: the totals of a receipt's ``kernels`` object,
    before the probe maps the CUDA ordinals in ``devices`` to PCI bus ids."""

    tracer: str
    launches: int = 0
    gpu_time_ns: int = 0
    devices: list[int] = field(default_factory=list)  # CUDA ordinals
    top: list[TopKernel] = field(default_factory=list)
    memcpy: Transfers = field(default_factory=Transfers)
    memset: Transfers = field(default_factory=Transfers)
    dropped: int = 0      # records CUPTI reported lost
    incomplete: int = 0   # buffers cut short by a record still in flight
    untimed: int = 0      # kernel records without timestamps

    @property
    def any_activity(self) -> bool:
        return bool(self.launches or self.memcpy.count or self.memset.count)

    @property
    def blind_spots(self) -> int:
        """Records this window may have missed: then "nothing ran" cannot be claimed."""
        return self.dropped + self.incomplete + self.untimed


class Window:
    """The running totals of one test body's records, added to as buffers arrive."""

    def __init__(self, started: int) -> None:
        self.started = started
        self.finished: int | None = None
        self.launches = self.gpu_time = self.dropped = self.incomplete = self.untimed = 0
        self.devices: set[int] = set()
        self.counts: Counter[str] = Counter()
        self.times: Counter[str] = Counter()
        self.memcpy = {"count": 0, "bytes": 0}
        self.memset = {"count": 0, "bytes": 0}

    def holds(self, stamp: int) -> bool:
        return self.started <= stamp and (self.finished is None or stamp <= self.finished)

    def add_kernel(self, device: int, name: str, duration: int) -> None:
        self.launches += 1
        self.gpu_time += duration
        self.devices.add(device)
        self.counts[name] += 1
        self.times[name] += duration

    def add_transfer(self, kind: int, device: int, nbytes: int) -> None:
        bucket = self.memcpy if kind == KIND_MEMCPY else self.memset
        bucket["count"] += 1
        bucket["bytes"] += nbytes
        self.devices.add(device)

    def stats(self, tracer: str) -> KernelStats:
        busiest = sorted(self.counts, key=lambda n: (-self.times[n], -self.counts[n], n))[:TOP_KERNELS]
        top = [TopKernel(n, self.counts[n], self.times[n]) for n in busiest]
        return KernelStats(tracer, self.launches, self.gpu_time, sorted(self.devices), top,
                           Transfers(**self.memcpy), Transfers(**self.memset), self.dropped,
                           self.incomplete, self.untimed)


class RecordReader:
    """Adds activity records to a window. ``lock`` is the tracer's: CUPTI delivers
    buffers on its own threads while the test thread opens and closes windows."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._names: dict[int, str] = {}

    def read(self, window: Window, address: int, by_launch: bool) -> None:
        """Count the record at ``address`` if it belongs to ``window``; ``by_launch``:
        CUPTI collects launch times, so kernels are kept by when they were launched."""
        kind = _u32(address + _OFF_KIND)
        if kind in (KIND_CONCURRENT_KERNEL, KIND_KERNEL):
            start, end = _u64(address + _KERNEL_START), _u64(address + _KERNEL_END)
            device = _u32(address + _KERNEL_DEVICE)
            queued = _u64(address + _KERNEL_QUEUED) if by_launch else 0
            timed = _plausible(start, end, device)
            # A forced flush hands over kernels still running with zero GPU times; their
            # launch time, when CUPTI has one, still says whose they are.
            stamp = queued if queued and device < _MAX_DEVICE else (start if timed else 0)
            if not stamp:
                with self._lock:
                    window.untimed += 1
            elif window.holds(stamp):
                name = self._name(address + _KERNEL_NAME)
                with self._lock:
                    window.add_kernel(device, name, end - start if timed else 0)
        elif kind in (KIND_MEMCPY, KIND_MEMSET):
            start, end = _u64(address + _COPY_START), _u64(address + _COPY_END)
            device = _u32(address + _COPY_DEVICE)
            if _plausible(start, end, device) and window.holds(start):
                with self._lock:
                    window.add_transfer(kind, device, _u64(address + _COPY_BYTES))

    def _name(self, slot: int) -> str:
        pointer = ctypes.c_void_p.from_address(slot).value
        if not pointer:
            return "?"
        name = self._names.get(pointer)
        if name is None:  # CUPTI shares one string per kernel; decode it once
            raw = ctypes.string_at(pointer, _strnlen(pointer, MAX_NAME))  # never past the NUL
            name = raw.decode("utf-8", "replace")
            if len(self._names) >= _MAX_NAMES:
                self._names.clear()
            self._names[pointer] = name
        return name


def _u32(address: int) -> int:
    return ctypes.c_uint32.from_address(address).value


def _u64(address: int) -> int:
    return ctypes.c_uint64.from_address(address).value


def _plausible(start: int, end: int, device: int) -> bool:
    return 0 < start <= end and device < _MAX_DEVICE
