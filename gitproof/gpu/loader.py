"""How many shared objects the dynamic linker has loaded into this process so far.

The driver probe must see libcuda as soon as a test loads it, but asking the
linker for it by name (``dlopen`` with ``RTLD_NOLOAD``) walks the library
search path on every miss: tens of microseconds, twice a test, in every
session that never touches CUDA. Whatever loads libcuda (ctypes, torch's
lazy ``cuInit``, an extension module) goes through the dynamic linker, and
glibc and musl count every object it adds to the process: ``dlpi_adds`` of
``dl_iterate_phdr``. While that count stands still, nothing was loaded, so a
library missing at the last look is still missing.

Reading the count is a ``dl_iterate_phdr`` call stopped at the first object,
about a microsecond. Its callback runs while the linker holds its lock, so
it must not run Python bytecode: the interpreter may switch threads there,
and a thread that imports an extension module (``dlopen`` with the GIL held)
would then wait for the lock while we wait for the GIL; and a Ctrl-C handled
there would be lost in the callback. So the callback is libc's ``memmove``
itself, bound with :class:`ctypes.PyDLL` (the GIL stays held throughout):
it copies the ``dl_phdr_info`` record into a buffer we read afterwards.
Called as ``memmove(buffer, info, size, data)``, the fourth argument is
ignored by the C calling convention, and its return value, the buffer's
address read as an ``int``, is non-zero, which stops the iteration after the
first object (were it zero, the walk would go on to the same answer: every
record carries the same count).
"""
from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

_ROOM = 1024  # bytes for one dl_phdr_info record: 64 in glibc 2.36, checked before use


class _PhdrInfo(ctypes.Structure):
    """The head of ``struct dl_phdr_info``, up to the load counters (glibc >= 2.4, musl)."""

    _fields_ = [("addr", ctypes.c_void_p), ("name", ctypes.c_void_p), ("phdr", ctypes.c_void_p),
                ("phnum", ctypes.c_uint16), ("adds", ctypes.c_ulonglong), ("subs", ctypes.c_ulonglong)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


class LoadCounter:
    """``counter()``: objects loaded so far, or None where the linker does not say."""

    def __init__(self) -> None:
        self._record = (ctypes.c_char * _ROOM)()
        self._info = _PhdrInfo.from_buffer(self._record)
        self._iterate: Callable[..., int] | None = None
        self._callback: object = None  # kept alive: the C side holds only its address
        try:
            libc = ctypes.PyDLL(None)
            iterate, memmove = libc.dl_iterate_phdr, libc.memmove
        except (OSError, TypeError, AttributeError):  # no dl_iterate_phdr (macOS, Windows)
            return
        iterate.argtypes, iterate.restype = [_Callback, ctypes.c_void_p], ctypes.c_int
        memmove.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        memmove.restype = ctypes.c_void_p
        if _record_size(iterate) in range(ctypes.sizeof(_PhdrInfo), _ROOM + 1):
            self._iterate = iterate
            self._callback = _Callback(functools.partial(memmove, ctypes.addressof(self._record)))

    def __call__(self) -> int | None:
        if self._iterate is None:
            return None
        self._iterate(self._callback, None)
        return int(self._info.adds)


def _record_size(iterate: Callable[..., int]) -> int:
    """The size of the linker's ``dl_phdr_info``, asked once by a Python callback (0: no answer).

    Once, when the session starts: that one call is not worth the care of the fast path."""
    sizes: list[int] = []

    def note(info: int, size: int, data: int | None) -> int:
        sizes.append(size)
        return 1

    iterate(_Callback(note), None)
    return sizes[0] if sizes else 0


@functools.cache
def load_counter() -> LoadCounter:
    """The process's one counter (bound once)."""
    return LoadCounter()


def objects_loaded() -> int | None:
    """Shared objects the dynamic linker has added to this process so far; None: unknown here."""
    return load_counter()()
