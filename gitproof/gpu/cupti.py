"""Kernel-level evidence: CUPTI's activity API, read through ctypes.

Why ctypes and not a binding: NVIDIA ships CUPTI as a C library (in the
``nvidia-cuda-cupti`` wheel and the CUDA toolkit) and no maintained Python
binding exposes its activity API; CUPTI-Python targets a newer API surface
than the drivers our users run. The part used here is small and stable:
register two buffer callbacks, enable four activity kinds, flush, and walk
the records. The records themselves, and how each test's share of them is
found, are :mod:`gitproof.gpu.activity`'s; this module finds and binds the
library and runs the one tracer a process may have.

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
from typing import Any

from gitproof.errors import GitproofError
from gitproof.gpu.activity import (KIND_CONCURRENT_KERNEL, KIND_MEMCPY, KIND_MEMSET, KernelStats, RecordReader,
                                   Window)

ENV_LIBRARY = "GITPROOF_LIBCUPTI"
SONAMES = ("libcupti.so.13", "libcupti.so.12", "libcupti.so.11.8", "libcupti.so")

CUPTI_SUCCESS = 0
CUPTI_ERROR_MAX_LIMIT_REACHED = 12  # cuptiActivityGetNextRecord: no more records in the buffer
CUPTI_ERROR_INVALID_KIND = 21       # cuptiActivityGetNextRecord: an incomplete record; stop there
TRACED_KINDS = (KIND_CONCURRENT_KERNEL, KIND_MEMCPY, KIND_MEMSET)
FLUSH_UNFORCED, FLUSH_FORCED = 0, 1

BUFFER_BYTES = 1 << 20  # about 4,000 kernel records; CUPTI asks for more when one fills
_ALIGN = 8

_RequestFunc = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),
                                ctypes.POINTER(ctypes.c_size_t))
_CompleteFunc = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p,
                                 ctypes.c_size_t, ctypes.c_size_t)


class CuptiError(GitproofError, RuntimeError):
    """CUPTI cannot trace here; the message says why, in words for a receipt."""


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
        self.latency = (self._bind(lib, "cuptiActivityEnableLatencyTimestamps", ctypes.c_uint8)
                        if hasattr(lib, "cuptiActivityEnableLatencyTimestamps") else None)
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
        self._lock = threading.Lock()  # never held while calling into CUPTI
        self._window: Window | None = None
        self._buffers: dict[int, ctypes.Array[ctypes.c_char]] = {}  # handed to CUPTI, by aligned address
        self._free: list[tuple[int, ctypes.Array[ctypes.c_char]]] = []  # returned by CUPTI, ready for reuse
        self._reader = RecordReader(self._lock)
        self._active = False
        self.by_launch = False  # kernels kept by their launch time (CUPTI's "queued")
        # Forced: a buffer that also holds a record still in flight is delivered too, with
        # the completed records before it; an unforced flush would hold them all back.
        self.flush_flag = FLUSH_FORCED
        # Kept for the life of the process: CUPTI may call them until it is disabled.
        self._on_request = _RequestFunc(self._request)
        self._on_complete = _CompleteFunc(self._complete)
        version = ctypes.c_uint32()
        self.version = version.value if library.get_version(ctypes.byref(version)) == CUPTI_SUCCESS else None

    @property
    def description(self) -> str:
        base = os.path.basename(self._lib.name)
        name = f"cupti {self.version} ({base})" if self.version else f"cupti ({base})"
        return name if self.by_launch else name + ", no launch times"

    def _check(self, call: str, code: int) -> None:
        if code != CUPTI_SUCCESS:
            raise CuptiError(f"{call} failed: {self._lib.describe(code)}")

    def start(self) -> None:
        """Register the buffers, ask for launch times, enable kernel, copy and memset records."""
        self._check("cuptiActivityRegisterCallbacks", self._lib.register(self._on_request, self._on_complete))
        self.by_launch = self._lib.latency is not None and self._lib.latency(1) == CUPTI_SUCCESS
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
        with self._lock:
            self._window = None
        self._lib.flush_all(FLUSH_FORCED)
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def now(self) -> int:
        stamp = ctypes.c_uint64()
        self._check("cuptiGetTimestamp", self._lib.timestamp(ctypes.byref(stamp)))
        return stamp.value

    def begin(self) -> int:
        """Open a window at CUPTI's current time and return that time."""
        started = self.now()
        with self._lock:
            self._window = Window(started)
        return started

    def end(self, started: int) -> KernelStats:
        """Close the window opened at ``started``: what was launched (or copied) inside it."""
        finished = self.now()
        with self._lock:
            window = self._window
            if window is None or window.started != started:
                raise CuptiError("the kernel window was closed by another test or a second session")
            window.finished = finished
        try:
            self._check("cuptiActivityFlushAll", self._lib.flush_all(self.flush_flag))
        finally:
            with self._lock:
                self._window = None
        return window.stats(self.description)

    # -- the callbacks (CUPTI's threads or the flushing thread) --------------------------
    # ctypes reports and swallows an exception raised in a callback; these catch their own
    # so that the buffer is always returned and the tracer's state stays whole.

    def _request(self, buffer: Any, size: Any, max_records: Any) -> None:
        try:
            with self._lock:  # reuse: a fresh megabyte costs more than the flush itself
                aligned, block = self._free.pop() if self._free else self._new_buffer()
                self._buffers[aligned] = block
            buffer[0] = aligned
            size[0] = BUFFER_BYTES
            max_records[0] = 0  # as many as fit
        except Exception:
            buffer[0] = None
            size[0] = 0

    def _complete(self, context: Any, stream: int, buffer: Any, size: int, valid: int) -> None:
        try:
            with self._lock:
                window = self._window
            if window is not None and buffer:
                self._walk(window, buffer, valid)
                lost = ctypes.c_size_t()
                if self._lib.dropped(context, stream, ctypes.byref(lost)) == CUPTI_SUCCESS and lost.value:
                    with self._lock:
                        window.dropped += lost.value
        except Exception:
            pass
        finally:
            with self._lock:
                block = self._buffers.pop(buffer or 0, None)
                if block is not None and len(block) == BUFFER_BYTES + _ALIGN:
                    self._free.append((buffer, block))

    @staticmethod
    def _new_buffer() -> tuple[int, ctypes.Array[ctypes.c_char]]:
        block = ctypes.create_string_buffer(BUFFER_BYTES + _ALIGN)
        address = ctypes.addressof(block)
        return address + (-address % _ALIGN), block

    def _walk(self, window: Window, buffer: int, valid: int) -> None:
        record = ctypes.c_void_p()
        while True:
            code = self._lib.next_record(buffer, valid, ctypes.byref(record))
            if code != CUPTI_SUCCESS:
                if code == CUPTI_ERROR_INVALID_KIND:  # in flight: CUPTI says stop here
                    with self._lock:
                        window.incomplete += 1
                return
            if record.value:
                self._reader.read(window, record.value, self.by_launch)


_tracer_lock = threading.Lock()
_tracer: KernelTracer | CuptiError | None = None
_kept: list[KernelTracer] = []  # tracers CUPTI may still call back: never freed


def tracer() -> KernelTracer:
    """The process's tracer, started on first use; raises :class:`CuptiError` saying why not.

    The outcome is kept: a process either traces from then on or says why not. A tracer
    stopped at the end of one pytest session starts again for the next in the same process.
    """
    global _tracer
    with _tracer_lock:
        if _tracer is None:
            _tracer = _start_first()
        if isinstance(_tracer, CuptiError):
            raise _tracer
        if not _tracer.active:
            _tracer.start()
        return _tracer


def _start_first() -> KernelTracer | CuptiError:
    reasons = []
    for name in candidates():
        try:
            library = _open(name)
        except CuptiError as exc:
            reasons.append(str(exc))
            continue
        started = KernelTracer(library)
        _kept.append(started)
        try:
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
