"""Kernel-level evidence: CUPTI's activity API, read through ctypes.

Why ctypes and not a binding: NVIDIA ships CUPTI as a C library (in the
``nvidia-cuda-cupti`` wheel and the CUDA toolkit) and no maintained Python
binding exposes its activity API; CUPTI-Python targets a newer API surface
than the drivers our users run. The part used here is small and stable:
register two buffer callbacks, enable four activity kinds, flush, and walk
the records. Only the prefix of each record is read, the fields that have
kept their offsets in every record version since CUDA 9 (``kind``,
``start``, ``end``, ``deviceId``, ``correlationId``, the kernel's ``name``);
each record is checked for sanity before it counts.

How a test's work is attributed: :meth:`KernelTracer.begin` takes CUPTI's
timestamp; :meth:`KernelTracer.end` takes it again, flushes the completed
buffers, and counts the records whose GPU start lies inside that window.
Records of fixtures and earlier tests started before the window and count
for nobody. A kernel still queued or running when the body returns is not
delivered by that flush, and when it is delivered later it lies outside
every later window: counted for nobody. The error is always toward less
evidence, never toward a test that did nothing. (A kernel queued by one
test that only starts on the GPU inside the next test's window would count
for the next test; that needs a test that returns without waiting for its
own GPU work, and the next test's record would still be true of the
process.)

Loading CUPTI is opt-in (``--gpu-proof-kernels``): one process can have one
activity client, so tracing would take CUPTI from a test that profiles
itself (``torch.profiler`` uses it), and each traced kernel costs a little.
``$GITPROOF_LIBCUPTI`` names the library to load (a fake, in tests).
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ENV_LIBRARY = "GITPROOF_LIBCUPTI"
SONAMES = ("libcupti.so.13", "libcupti.so.12", "libcupti.so.11.8", "libcupti.so")

CUPTI_SUCCESS = 0
CUPTI_ERROR_MAX_LIMIT_REACHED = 12  # cuptiActivityGetNextRecord: no more records in the buffer
KIND_MEMCPY, KIND_MEMSET, KIND_CONCURRENT_KERNEL = 1, 2, 10
KIND_KERNEL = 3  # the serialising variant; records look the same
TRACED_KINDS = (KIND_CONCURRENT_KERNEL, KIND_MEMCPY, KIND_MEMSET)
FLUSH_UNFORCED, FLUSH_FORCED = 0, 1

BUFFER_BYTES = 1 << 20  # about 4,000 kernel records; CUPTI asks for more when one fills
_ALIGN = 8
TOP_KERNELS = 5          # kernels named in a record, by GPU time
MAX_NAME = 160           # characters of a (mangled) kernel name kept
_MAX_DEVICE = 1 << 16    # a device id above this is a misread record, not a device

# Record prefixes (the headers pack every record at 8-byte alignment).
_OFF_KIND = 0
_KERNEL_START, _KERNEL_END, _KERNEL_DEVICE, _KERNEL_NAME = 16, 24, 40, 104
_COPY_BYTES, _COPY_START, _COPY_END, _COPY_DEVICE = 8, 16, 24, 32  # memcpy and memset alike

_RequestFunc = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),
                                ctypes.POINTER(ctypes.c_size_t))
_CompleteFunc = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                 ctypes.c_size_t, ctypes.c_size_t)


class CuptiError(RuntimeError):
    """CUPTI cannot trace here; the message says why, in words for a receipt."""


@dataclass(frozen=True)
class Activity:
    """One traced record: a kernel, a copy or a memset."""

    kind: str          # "kernel", "memcpy", "memset"
    device: int        # CUDA device ordinal
    start: int         # ns, CUPTI's clock (the same as cuptiGetTimestamp)
    end: int
    name: str = ""     # kernels only: the (mangled) function name
    nbytes: int = 0    # copies and memsets only

    @property
    def duration(self) -> int:
        return max(0, self.end - self.start)


@dataclass
class KernelStats:
    """What one test body ran on the GPU, as a receipt's ``kernels`` object records it."""

    tracer: str
    launches: int = 0
    gpu_time_ns: int = 0
    devices: list[int] = field(default_factory=list)  # CUDA ordinals; the probe maps them to PCI ids
    top: list[dict[str, Any]] = field(default_factory=list)
    memcpy: dict[str, int] = field(default_factory=lambda: {"count": 0, "bytes": 0})
    memset: dict[str, int] = field(default_factory=lambda: {"count": 0, "bytes": 0})
    dropped: int = 0

    @property
    def any_activity(self) -> bool:
        return bool(self.launches or self.memcpy["count"] or self.memset["count"])


def summarize(activities: list[Activity], tracer: str, dropped: int = 0) -> KernelStats:
    """Totals of one window's records: launches, GPU time, devices, the busiest kernels."""
    stats = KernelStats(tracer=tracer, dropped=dropped)
    counts: Counter[str] = Counter()
    times: Counter[str] = Counter()
    devices = set()
    for activity in activities:
        devices.add(activity.device)
        if activity.kind == "kernel":
            stats.launches += 1
            stats.gpu_time_ns += activity.duration
            counts[activity.name] += 1
            times[activity.name] += activity.duration
        else:
            bucket = stats.memcpy if activity.kind == "memcpy" else stats.memset
            bucket["count"] += 1
            bucket["bytes"] += activity.nbytes
    stats.devices = sorted(devices)
    busiest = sorted(counts, key=lambda name: (-times[name], -counts[name], name))[:TOP_KERNELS]
    stats.top = [{"name": name, "launches": counts[name], "gpu_time_ns": times[name]} for name in busiest]
    return stats


# -- finding the library ---------------------------------------------------------------------


def _already_loaded() -> str | None:
    """A CUPTI this process loaded already (torch's profiler, say): the one to share."""
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:
        return None
    for soname in SONAMES:
        try:
            ctypes.CDLL(soname, mode=noload | os.RTLD_LOCAL)
            return soname
        except OSError:
            continue
    return None


def candidates() -> list[str]:
    """Where CUPTI may be, best first: $GITPROOF_LIBCUPTI, a copy already loaded, the
    ``nvidia-cuda-cupti`` wheels on sys.path, the CUDA toolkit, then the loader's path."""
    named = os.environ.get(ENV_LIBRARY)
    if named:
        return [named]
    found: list[str] = []
    loaded = _already_loaded()
    if loaded:
        found.append(loaded)
    for entry in sys.path:
        for pattern in ("nvidia/cu*/lib/libcupti.so*", "nvidia/cuda_cupti/lib/libcupti.so*"):
            found += sorted(glob.glob(os.path.join(entry or ".", pattern)), reverse=True)
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            for sub in ("extras/CUPTI/lib64", "lib64"):
                found += sorted(glob.glob(os.path.join(root, sub, "libcupti.so*")), reverse=True)
    found += list(SONAMES)
    return list(dict.fromkeys(found))


# -- the tracer ------------------------------------------------------------------------------


class _Library:
    """The bound CUPTI functions of one loaded library."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.name = name
        self.get_version = self._bind(lib, "cuptiGetVersion", ctypes.POINTER(ctypes.c_uint32))
        self.register = self._bind(lib, "cuptiActivityRegisterCallbacks", _RequestFunc, _CompleteFunc)
        self.enable = self._bind(lib, "cuptiActivityEnable", ctypes.c_int)
        self.disable = self._bind(lib, "cuptiActivityDisable", ctypes.c_int)
        self.flush_all = self._bind(lib, "cuptiActivityFlushAll", ctypes.c_uint32)
        self.next_record = self._bind(lib, "cuptiActivityGetNextRecord", ctypes.c_void_p, ctypes.c_size_t,
                                      ctypes.POINTER(ctypes.c_void_p))
        self.dropped = self._bind(lib, "cuptiActivityGetNumDroppedRecords", ctypes.c_void_p,
                                  ctypes.c_uint32, ctypes.POINTER(ctypes.c_size_t))
        self.timestamp = self._bind(lib, "cuptiGetTimestamp", ctypes.POINTER(ctypes.c_uint64))
        self._result_string = getattr(lib, "cuptiGetResultString", None)

    @staticmethod
    def _bind(lib: ctypes.CDLL, name: str, *argtypes: Any) -> Any:
        function = getattr(lib, name)  # AttributeError: not CUPTI
        function.restype = ctypes.c_int
        function.argtypes = list(argtypes)
        return function

    def describe(self, code: int) -> str:
        if self._result_string is not None:
            text = ctypes.c_char_p()
            self._result_string.restype = ctypes.c_int
            self._result_string.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
            if self._result_string(code, ctypes.byref(text)) == CUPTI_SUCCESS and text.value:
                return f"{text.value.decode('ascii', 'replace')} ({code})"
        return f"CUPTI error {code}"


def _open(name: str) -> _Library:
    try:
        lib = ctypes.CDLL(name, mode=os.RTLD_LOCAL)
    except OSError as exc:
        raise CuptiError(f"cannot load {name}: {exc}") from None
    try:
        return _Library(lib, name)
    except AttributeError as exc:
        raise CuptiError(f"{name} is not CUPTI ({exc})") from None


class KernelTracer:
    """The process's one CUPTI activity client; :func:`tracer` makes it."""

    def __init__(self, library: _Library) -> None:
        self._lib = library
        self._lock = threading.Lock()
        self._records: list[Activity] = []
        self._buffers: dict[int, ctypes.Array] = {}  # handed to CUPTI, by aligned address
        self._free: list[tuple[int, ctypes.Array]] = []  # returned by CUPTI, ready for reuse
        self._names: dict[int, str] = {}
        self._dropped = 0
        self._active = False
        # Unforced: only buffers whose records are all complete. On an H200 that costs 360 us a
        # test against 640 us forced, and a forced flush adds only records of work still in
        # flight, which no window could count anyway (benchmarks/bench_gpu_probes.py).
        self.flush_flag = FLUSH_UNFORCED
        # Kept for the life of the process: CUPTI may call them until it is disabled.
        self._on_request = _RequestFunc(self._request)
        self._on_complete = _CompleteFunc(self._complete)
        version = ctypes.c_uint32()
        self.version = version.value if library.get_version(ctypes.byref(version)) == CUPTI_SUCCESS else None

    @property
    def description(self) -> str:
        base = os.path.basename(self._lib.name)
        return f"cupti {self.version} ({base})" if self.version else f"cupti ({base})"

    def _check(self, call: str, code: int) -> None:
        if code != CUPTI_SUCCESS:
            raise CuptiError(f"{call} failed: {self._lib.describe(code)}")

    def start(self) -> None:
        """Register the buffers and enable kernel, copy and memset records."""
        self._check("cuptiActivityRegisterCallbacks", self._lib.register(self._on_request, self._on_complete))
        for kind in TRACED_KINDS:
            code = self._lib.enable(kind)
            if code != CUPTI_SUCCESS:
                self.stop()
                self._check(f"cuptiActivityEnable({kind})", code)
        self._active = True

    def stop(self) -> None:
        """Disable tracing and deliver what is left (at the end of the session)."""
        for kind in TRACED_KINDS:
            self._lib.disable(kind)
        self._lib.flush_all(FLUSH_FORCED)
        self._active = False
        with self._lock:
            self._records.clear()

    @property
    def active(self) -> bool:
        return self._active

    def now(self) -> int:
        stamp = ctypes.c_uint64()
        self._check("cuptiGetTimestamp", self._lib.timestamp(ctypes.byref(stamp)))
        return stamp.value

    def begin(self) -> int:
        """Open a window and return its start time; records that started earlier (set-up,
        earlier tests) are left out when the window closes, so no flush is needed here."""
        return self.now()

    def end(self, started: int) -> KernelStats:
        """Close the window opened at ``started``: the activity that began inside it."""
        finished = self.now()
        self._check("cuptiActivityFlushAll", self._lib.flush_all(self.flush_flag))
        with self._lock:
            records, self._records = self._records, []
            dropped, self._dropped = self._dropped, 0
        inside = [r for r in records if started <= r.start <= finished]
        return summarize(inside, self.description, dropped)

    # -- the callbacks (CUPTI's threads or the flushing thread) --------------------------

    def _request(self, buffer: Any, size: Any, max_records: Any) -> None:
        try:
            with self._lock:  # reuse: a fresh megabyte costs more than the flush itself
                aligned, block = self._free.pop() if self._free else self._new_buffer()
                self._buffers[aligned] = block
            buffer[0] = aligned
            size[0] = BUFFER_BYTES
            max_records[0] = 0  # as many as fit
        except BaseException:  # never let an exception unwind into C
            buffer[0] = None
            size[0] = 0

    def _complete(self, context: Any, stream: int, buffer: Any, size: int, valid: int) -> None:
        try:
            found = self._walk(buffer, valid) if buffer else []
            lost = ctypes.c_size_t()
            more = lost.value if self._lib.dropped(context, stream, ctypes.byref(lost)) == CUPTI_SUCCESS else 0
            with self._lock:
                self._records += found
                self._dropped += more
        except BaseException:
            pass
        finally:
            with self._lock:
                block = self._buffers.pop(buffer or 0, None)
                if block is not None and len(block) == BUFFER_BYTES + _ALIGN:
                    self._free.append((buffer, block))

    @staticmethod
    def _new_buffer() -> tuple[int, ctypes.Array]:
        block = ctypes.create_string_buffer(BUFFER_BYTES + _ALIGN)
        address = ctypes.addressof(block)
        return address + (-address % _ALIGN), block

    def _walk(self, buffer: int, valid: int) -> list[Activity]:
        found = []
        record = ctypes.c_void_p()
        while self._lib.next_record(buffer, valid, ctypes.byref(record)) == CUPTI_SUCCESS:
            activity = self._read(record.value)
            if activity is not None:
                found.append(activity)
        return found

    def _read(self, address: int | None) -> Activity | None:
        if not address:
            return None
        kind = _u32(address + _OFF_KIND)
        if kind in (KIND_CONCURRENT_KERNEL, KIND_KERNEL):
            start, end = _u64(address + _KERNEL_START), _u64(address + _KERNEL_END)
            device = _u32(address + _KERNEL_DEVICE)
            if not _plausible(start, end, device):
                return None
            return Activity("kernel", device, start, end, name=self._name(address + _KERNEL_NAME))
        if kind in (KIND_MEMCPY, KIND_MEMSET):
            start, end = _u64(address + _COPY_START), _u64(address + _COPY_END)
            device = _u32(address + _COPY_DEVICE)
            if not _plausible(start, end, device):
                return None
            return Activity("memcpy" if kind == KIND_MEMCPY else "memset", device, start, end,
                            nbytes=_u64(address + _COPY_BYTES))
        return None

    def _name(self, slot: int) -> str:
        pointer = ctypes.c_void_p.from_address(slot).value
        if not pointer:
            return "?"
        name = self._names.get(pointer)
        if name is None:  # CUPTI shares one string per kernel; decode it once
            raw = ctypes.string_at(pointer, MAX_NAME + 1)
            name = raw.split(b"\0", 1)[0][:MAX_NAME].decode("utf-8", "replace")
            self._names[pointer] = name
        return name


def _u32(address: int) -> int:
    return ctypes.c_uint32.from_address(address).value


def _u64(address: int) -> int:
    return ctypes.c_uint64.from_address(address).value


def _plausible(start: int, end: int, device: int) -> bool:
    return 0 < start <= end and device < _MAX_DEVICE


_tracer_lock = threading.Lock()
_tracer: KernelTracer | CuptiError | None = None


def tracer() -> KernelTracer:
    """The process's tracer, started on first use; raises :class:`CuptiError` saying why not.

    The outcome is kept: a process either traces from then on or says why not.
    """
    global _tracer
    with _tracer_lock:
        if _tracer is None:
            _tracer = _start_first()
        if isinstance(_tracer, CuptiError):
            raise _tracer
        return _tracer


def _start_first() -> KernelTracer | CuptiError:
    reasons = []
    for name in candidates():
        try:
            started = KernelTracer(_open(name))
            started.start()
            return started
        except CuptiError as exc:
            reasons.append(str(exc))
    if all(r.startswith("cannot load") for r in reasons):
        return CuptiError("CUPTI not found: install nvidia-cuda-cupti (or the CUDA toolkit), or set "
                          f"{ENV_LIBRARY} to libcupti's path")
    return CuptiError("; ".join(r for r in reasons if not r.startswith("cannot load")))


def reset() -> None:
    """Stop and forget the tracer (tests swap libraries between cases)."""
    global _tracer
    with _tracer_lock:
        if isinstance(_tracer, KernelTracer) and _tracer.active:
            _tracer.stop()
        _tracer = None
