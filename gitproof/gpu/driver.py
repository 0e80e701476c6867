"""The CUDA driver API (libcuda), read through ctypes without ever starting it.

Why it never loads or initialises libcuda itself: ``cuInit`` in the pytest
process would leave every test that forks with a child that cannot use CUDA
(the driver does not survive ``fork``), and loading the driver costs time and
memory the user's run did not ask for. So :meth:`CudaDriver.attach` only
finds the copy the process has already loaded (``dlopen`` with
``RTLD_NOLOAD``), and the queries report "not initialised" instead of calling
``cuInit``: they tell what the tests did, never change it.

``$GITPROOF_LIBCUDA`` names another library to attach to (a fake, in tests).
The driver's own ``cuInit`` is never bound here, so it cannot be called by
mistake. :class:`DriverHandle` is how the GPU-use probes share one attached
driver.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from gitproof.errors import GitproofError
from gitproof.gpu import loader
from gitproof.gpu.records import canonical_bus_id

ENV_LIBRARY = "GITPROOF_LIBCUDA"
DEFAULT_LIBRARY = "libcuda.so.1"

CUDA_SUCCESS = 0
CUDA_ERROR_NOT_INITIALIZED = 3  # nobody in this process has called cuInit
_PCI_BUS_ID_SIZE = 64  # CUDA needs 13 bytes for "0000:18:00.0"; room for wider domains

_CUdevice = ctypes.c_int
_CUcontext = ctypes.c_void_p


class _CUuuid(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_ubyte * 16)]


class CudaError(GitproofError, RuntimeError):
    """A driver call failed with a code this module has no meaning for."""

    def __init__(self, call: str, code: int) -> None:
        super().__init__(f"{call} returned CUDA error {code}")
        self.call, self.code = call, code


@dataclass(frozen=True)
class CudaDevice:
    """A device as this process's CUDA sees it: ``ordinal`` is a CUDA ordinal
    (after ``CUDA_VISIBLE_DEVICES``), not an NVML index; the PCI bus id is what
    ties it to NVML's devices."""

    ordinal: int
    uuid: str | None        # "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    pci_bus_id: str | None  # canonical "00000000:18:00.0"


def format_uuid(raw: bytes) -> str:
    """16 UUID bytes in NVML's spelling, ``GPU-`` and lower-case 8-4-4-4-12 hex."""
    text = raw.hex()
    return f"GPU-{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"


def _library_name() -> str:
    return os.environ.get(ENV_LIBRARY) or DEFAULT_LIBRARY


class CudaDriver:
    """The driver this process already loaded; every query is read-only."""

    def __init__(self, lib: ctypes.CDLL, name: str) -> None:
        self.name = name
        self._version = self._bind(lib, "cuDriverGetVersion", ctypes.POINTER(ctypes.c_int))
        self._ctx_current = self._bind(lib, "cuCtxGetCurrent", ctypes.POINTER(_CUcontext))
        self._ctx_device = self._bind(lib, "cuCtxGetDevice", ctypes.POINTER(_CUdevice))
        self._count = self._bind(lib, "cuDeviceGetCount", ctypes.POINTER(ctypes.c_int))
        self._device = self._bind(lib, "cuDeviceGet", ctypes.POINTER(_CUdevice), ctypes.c_int)
        uuid_name = "cuDeviceGetUuid_v2" if hasattr(lib, "cuDeviceGetUuid_v2") else "cuDeviceGetUuid"
        self._uuid = self._bind(lib, uuid_name, ctypes.POINTER(_CUuuid), _CUdevice)
        self._pci = self._bind(lib, "cuDeviceGetPCIBusId", ctypes.c_char_p, ctypes.c_int, _CUdevice)
        self._primary = self._bind(lib, "cuDevicePrimaryCtxGetState", _CUdevice,
                                   ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_int))

    @staticmethod
    def _bind(lib: ctypes.CDLL, name: str, *argtypes: type) -> Callable[..., int]:
        function = getattr(lib, name)  # AttributeError: not a CUDA driver
        function.restype = ctypes.c_int
        function.argtypes = list(argtypes)
        return cast("Callable[..., int]", function)

    @classmethod
    def attach(cls, name: str | None = None) -> CudaDriver | None:
        """The already loaded driver, or None: not loaded, not a driver, or no RTLD_NOLOAD here."""
        name = name or _library_name()
        noload = getattr(os, "RTLD_NOLOAD", None)
        if noload is None:  # a platform without it (Windows): never risk loading the driver
            return None
        try:
            lib = ctypes.CDLL(name, mode=noload | os.RTLD_LOCAL)
        except OSError:  # not loaded by this process
            return None
        try:
            return cls(lib, name)
        except AttributeError:
            return None

    def version(self) -> str | None:
        """The driver's CUDA version, ``"12.4"``; the one query allowed before cuInit."""
        value = ctypes.c_int()
        if self._version(ctypes.byref(value)) != CUDA_SUCCESS:
            return None
        return f"{value.value // 1000}.{value.value % 1000 // 10}"

    def _current(self) -> int | None:
        """The calling thread's context handle (0: none); None when CUDA is not initialised."""
        context = _CUcontext()
        code = self._ctx_current(ctypes.byref(context))
        if code == CUDA_ERROR_NOT_INITIALIZED:
            return None
        if code != CUDA_SUCCESS:
            raise CudaError("cuCtxGetCurrent", code)
        return context.value or 0

    def initialized(self) -> bool:
        """Whether someone in this process called ``cuInit``; until then no GPU work can exist."""
        return self._current() is not None

    def has_current_context(self) -> bool:
        """Whether the calling thread has a current context (torch and CuPy leave one)."""
        return bool(self._current())

    def current_device(self) -> int | None:
        """The ordinal of the calling thread's current context's device, or None."""
        if not self.has_current_context():
            return None
        device = _CUdevice()
        if self._ctx_device(ctypes.byref(device)) != CUDA_SUCCESS:
            return None
        return device.value

    def device_count(self) -> int:
        """Devices CUDA shows this process; 0 before cuInit (never calls it)."""
        count = ctypes.c_int()
        code = self._count(ctypes.byref(count))
        if code == CUDA_ERROR_NOT_INITIALIZED:
            return 0
        if code != CUDA_SUCCESS:
            raise CudaError("cuDeviceGetCount", code)
        return count.value

    def _handle(self, ordinal: int) -> int:
        device = _CUdevice()
        code = self._device(ctypes.byref(device), ordinal)
        if code != CUDA_SUCCESS:
            raise CudaError("cuDeviceGet", code)
        return device.value

    def _device_uuid(self, handle: int) -> str | None:
        uuid = _CUuuid()
        if self._uuid(ctypes.byref(uuid), handle) != CUDA_SUCCESS:
            return None
        return format_uuid(bytes(uuid.bytes))

    def _device_pci(self, handle: int) -> str | None:
        buffer = ctypes.create_string_buffer(_PCI_BUS_ID_SIZE)
        if self._pci(buffer, _PCI_BUS_ID_SIZE, handle) != CUDA_SUCCESS:
            return None
        return canonical_bus_id(buffer.value.decode("ascii", "replace"))

    def devices(self) -> list[CudaDevice]:
        """Every device by CUDA ordinal, with its UUID and PCI bus id; [] before cuInit."""
        found = []
        for ordinal in range(self.device_count()):
            handle = self._handle(ordinal)
            found.append(CudaDevice(ordinal, self._device_uuid(handle), self._device_pci(handle)))
        return found

    def primary_context_active(self, ordinal: int) -> bool:
        """Whether the device's primary context (the one torch and CuPy use) is active."""
        flags, active = ctypes.c_uint(), ctypes.c_int()
        code = self._primary(self._handle(ordinal), ctypes.byref(flags), ctypes.byref(active))
        if code != CUDA_SUCCESS:
            raise CudaError("cuDevicePrimaryCtxGetState", code)
        return bool(active.value)


class DriverHandle:
    """The process's libcuda, attached lazily and kept once found.

    Probes share it to turn CUDA ordinals and UUIDs into PCI bus ids, and ask
    it at the start and end of every test: a test may load the driver at any
    time. A miss is remembered with the dynamic linker's count of loaded
    objects (:mod:`gitproof.gpu.loader`), and the ``dlopen(RTLD_NOLOAD)`` is
    tried again only once that count moved: nothing can appear in the process
    without it moving. (So ``$GITPROOF_LIBCUDA`` is read at those tries: a
    test names its fake before loading it.)
    """

    def __init__(self, attach: Callable[[], CudaDriver | None] = CudaDriver.attach,
                 objects_loaded: Callable[[], int | None] | None = None) -> None:
        self._attach = attach
        self._objects_loaded = objects_loaded or loader.load_counter()
        self._driver: CudaDriver | None = None
        self._missed: int | None = None  # the load count at the last miss

    def get(self) -> CudaDriver | None:
        if self._driver is None:
            count = self._objects_loaded()  # read before the attempt: a load after it is seen next time
            if count is None or count != self._missed:
                self._driver = self._attach()
                self._missed = count if self._driver is None else None
        return self._driver

    def absent(self) -> bool:
        """Known not loaded: the last look missed, and nothing was loaded since."""
        return self._driver is None and self._missed is not None and self._missed == self._objects_loaded()

    def pci_ids(self, ordinals: Iterable[int]) -> tuple[str, ...]:
        """PCI bus ids of these CUDA ordinals, the unknown ones left out."""
        driver = self.get()
        if driver is None or not driver.initialized():
            return ()
        by_ordinal = {d.ordinal: d.pci_bus_id for d in driver.devices()}
        return tuple(pci for o in ordinals if (pci := by_ordinal.get(o)))

    def pci_of_uuid(self, uuid: str) -> str | None:
        driver = self.get()
        if driver is None or not driver.initialized():
            return None
        wanted = _bare_uuid(uuid)
        return next((d.pci_bus_id for d in driver.devices()
                     if d.uuid and _bare_uuid(d.uuid) == wanted), None)


def _bare_uuid(uuid: str) -> str:
    return uuid.lower().removeprefix("gpu-")
