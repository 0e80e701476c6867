"""The GPU-use probes: cheap looks at the process while one test body runs.

A receipt that lists GPU tests proves little if the tests quietly ran on the
CPU (a ``device = "cuda" if available else "cpu"`` fallback, a mocked
kernel). So while each test runs, a few cheap probes watch the process:

* ``torch``: ``torch.cuda.memory_stats`` allocation counters of the
  initialised devices;
* ``cupy``: a CuPy memory hook counting memory-pool allocations;
* ``cuda-driver``: libcuda itself (see :mod:`gitproof.gpu.driver`): never
  loaded, never initialised, or a context appearing during the test;
* ``kernels`` (opt-in, ``--gpu-proof-kernels``): CUPTI's activity records
  (see :mod:`gitproof.gpu.cupti`): the kernels the test body launched and the
  copies and memsets meanwhile, with their devices and GPU time. Only this probe
  sees work itself rather than memory or contexts, so only it tells a test
  that computed on the GPU from one that merely put data there.

A probe only looks at a framework the tests already imported, and never
initialises CUDA, so watching costs microseconds and changes nothing the test
does. Each probe gives a :class:`~gitproof.gpu.findings.Finding`; how they
combine is :mod:`gitproof.gpu.findings`'s business, and running them around
each test is :mod:`gitproof.gpu.monitor`'s.
"""
from __future__ import annotations

import importlib
import itertools
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gitproof.gpu.driver import DriverHandle
from gitproof.gpu.findings import Finding
from gitproof.gpu.records import (METHOD_CONTEXT, METHOD_CUPY, METHOD_KERNELS, METHOD_NOT_INITIALIZED,
                                  METHOD_NOT_LOADED, METHOD_TORCH, KernelTotals, canonical_bus_id, milliseconds)

TORCH_COUNTER = "allocation.all.allocated"
_TORCH_PCI_KEYS = ("pci_domain_id", "pci_bus_id", "pci_device_id")
_MAX_ERROR = 200
_hook_ids = itertools.count(1)


def short_error(exc: BaseException) -> str:
    """An exception's repr, cut to fit a receipt's evidence sentence."""
    text = repr(exc)
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 3] + "..."


def _allocations_text(counts: Mapping[int, int], what: str) -> str:
    """``{0: 3, 1: 1}`` -> ``"3 torch allocations on cuda:0, 1 on cuda:1"``."""
    (first, n), *rest = sorted(counts.items())
    parts = [f"{n} {what} allocation{'' if n == 1 else 's'} on cuda:{first}"]
    return ", ".join(parts + [f"{m} on cuda:{i}" for i, m in rest])


class Probe(Protocol):
    name: str
    framework: bool  # a framework's allocation counter (True), or the driver's contexts

    def begin(self) -> Any:
        """State at the start of a test (cheap; must not import or initialise anything)."""

    def end(self, state: Any) -> Finding | None:
        """What the test did, from ``state``; None when the probe does not apply."""


class Absent(Probe, Protocol):
    """A probe that can tell, cheaper than ``begin`` and ``end``, that what it watches is
    not in the process at all. While that holds, ``begin()`` gives ``absent_state`` and
    ``end(absent_state)`` gives ``absent_finding``, so the monitor need not ask it."""

    absent_state: Any
    absent_finding: Finding | None

    def absent(self) -> bool:
        """Nothing this probe watches is in the process now (never raises)."""


@dataclass(frozen=True)
class _TorchState:
    initialized: bool
    counts: dict[int, int | None] = field(default_factory=dict)


_TORCH_NOT_INITIALIZED = _TorchState(False)  # shared: the state of most tests, never changed


class TorchProbe:
    """PyTorch's caching allocator counts every allocation request per device.

    ``allocation.all.allocated`` grows with each tensor made on a GPU, cached
    block or not, so a test that made one is seen. Only devices already
    initialised are read: reading never starts CUDA. Limit: a test that only
    runs in-place kernels on tensors made before it allocates nothing.
    """

    name = "torch"
    framework = True
    absent_state, absent_finding = _TORCH_NOT_INITIALIZED, None

    def __init__(self, driver: DriverHandle) -> None:
        self.driver = driver

    def absent(self) -> bool:
        return "torch" not in sys.modules

    @staticmethod
    def _cuda() -> Any:
        torch = sys.modules.get("torch")
        return None if torch is None else torch.cuda

    @staticmethod
    def _counts(cuda: Any) -> dict[int, int | None]:
        nested = getattr(cuda, "memory_stats_as_nested_dict", None)
        if nested is None:  # an older torch
            return {i: cuda.memory_stats(i).get(TORCH_COUNTER) for i in range(cuda.device_count())}
        # The nested form skips memory_stats' flattening of ~100 keys: 170 us a test on an H200.
        return {i: nested(i).get("allocation", {}).get("all", {}).get("allocated")
                for i in range(cuda.device_count())}

    def begin(self) -> _TorchState | None:
        cuda = self._cuda()
        if cuda is None or not cuda.is_initialized():
            return _TORCH_NOT_INITIALIZED
        return _TorchState(True, self._counts(cuda))

    def end(self, state: _TorchState) -> Finding | None:
        cuda = self._cuda()
        if cuda is None:
            return None
        if not cuda.is_initialized():
            return Finding(False, METHOD_TORCH, "torch never initialised CUDA")
        counts = self._counts(cuda)
        known = {i: n for i, n in counts.items() if n is not None}
        if len(known) < len(counts):
            return Finding(None, None, f"torch.cuda.memory_stats has no {TORCH_COUNTER} counter")
        grown = {i: n - (state.counts.get(i) or 0) for i, n in known.items()
                 if n > (state.counts.get(i) or 0)}
        if grown:
            devices = tuple(p for i in sorted(grown) if (p := self._pci(cuda, i)))
            return Finding(True, METHOD_TORCH, _allocations_text(grown, "torch"), devices)
        if not state.initialized:  # e.g. get_device_properties() before a CPU fallback
            return Finding(None, None, "torch initialised CUDA during the test but allocated "
                                       "nothing on the GPU")
        return Finding(False, METHOD_TORCH, "no torch CUDA allocation during the test")

    def _pci(self, cuda: Any, index: int) -> str | None:
        """PCI bus id of torch's ``cuda:index``: from its properties, else through its UUID.

        Only when the driver confirms CUDA runs in this process: a mocked
        ``is_initialized`` must never lead us to start CUDA ourselves.
        """
        driver = self.driver.get()
        if driver is None or not driver.initialized():
            return None
        props = cuda.get_device_properties(index)
        if all(hasattr(props, key) for key in _TORCH_PCI_KEYS):
            domain, bus, device = (int(getattr(props, key)) for key in _TORCH_PCI_KEYS)
            return canonical_bus_id(f"{domain:x}:{bus:x}:{device:x}.0")
        uuid = getattr(props, "uuid", None)
        return self.driver.pci_of_uuid(str(uuid)) if uuid is not None else None


def _hook_class(base: type) -> type:
    """A CuPy ``MemoryHook`` subclass counting pool allocation requests per device."""

    class CountingHook(base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.name = f"gitproof-gpu-use-{next(_hook_ids)}"  # unique: CuPy refuses duplicates
            self.counts: Counter[int] = Counter()

        def malloc_preprocess(self, **kwargs: Any) -> None:
            self.counts[int(kwargs.get("device_id", 0))] += 1

    return CountingHook


class CupyProbe:
    """CuPy calls registered memory hooks on every memory-pool request.

    The hook is registered for the calling thread only (CuPy keeps hooks per
    thread), which is the thread pytest runs the test in. Limit: allocations
    in other threads, or with the pool bypassed (``set_allocator(None)``),
    are not counted.
    """

    name = "cupy"
    framework = True
    absent_state, absent_finding = None, None

    def __init__(self, driver: DriverHandle) -> None:
        self.driver = driver
        self._classes: dict[type, type] = {}

    def absent(self) -> bool:
        return "cupy" not in sys.modules

    def begin(self) -> Any:
        if "cupy" not in sys.modules:
            return None
        base = importlib.import_module("cupy.cuda.memory_hook").MemoryHook
        if base not in self._classes:
            self._classes[base] = _hook_class(base)
        hook = self._classes[base]()
        hook.__enter__()
        return hook

    def end(self, hook: Any) -> Finding | None:
        if hook is None:
            if "cupy" in sys.modules:  # its work went uncounted: torch's counter must not decide
                return Finding(None, None, "CuPy was imported during the test, after counting began",
                               uncounted=True)
            return None
        hook.__exit__(None, None, None)
        if not hook.counts:
            return Finding(False, METHOD_CUPY, "no CuPy memory-pool allocation during the test")
        devices = self.driver.pci_ids(sorted(hook.counts))
        return Finding(True, METHOD_CUPY, _allocations_text(hook.counts, "CuPy memory-pool"), devices)


@dataclass(frozen=True)
class _DriverState:
    loaded: bool
    initialized: bool = False
    active: frozenset[int] = frozenset()  # ordinals whose primary context is active
    current: bool = False                 # the test thread has a current context


# Made once: most tests of a session end in one of these, and each test asks twice.
_NOT_LOADED, _NOT_INITIALIZED = _DriverState(False), _DriverState(True)
_NEVER_LOADED = Finding(False, METHOD_NOT_LOADED, "libcuda was never loaded by the test process")
_NEVER_INITIALIZED = Finding(False, METHOD_NOT_INITIALIZED,
                             "libcuda is loaded but CUDA was never initialised (no cuInit)")


class DriverProbe:
    """libcuda itself: the last word for any framework, or none.

    Not loaded at the end of a test: nothing in this process can have used a
    GPU through CUDA. Loaded but never initialised: the same. A primary
    context (torch, CuPy, Numba use those) or a current context appearing
    during the test: it used the GPU. A context already there before: the
    driver cannot say whether this test used it (no decision).
    """

    name = "cuda-driver"
    framework = False
    absent_state, absent_finding = _NOT_LOADED, _NEVER_LOADED

    def __init__(self, driver: DriverHandle) -> None:
        self.driver = driver

    def absent(self) -> bool:
        return self.driver.absent()

    def begin(self) -> _DriverState:
        return self._state()

    def _state(self) -> _DriverState:
        driver = self.driver.get()
        if driver is None:
            return _NOT_LOADED
        if not driver.initialized():
            return _NOT_INITIALIZED
        active = frozenset(o for o in range(driver.device_count()) if driver.primary_context_active(o))
        return _DriverState(True, True, active, driver.has_current_context())

    def end(self, before: _DriverState) -> Finding:
        after = self._state()
        if not after.loaded:
            return _NEVER_LOADED
        if not after.initialized:
            return _NEVER_INITIALIZED
        new = sorted(after.active - before.active)
        if new:
            where = ", ".join(f"cuda:{o}" for o in new)
            return Finding(True, METHOD_CONTEXT, f"a CUDA primary context became active on {where} "
                           "during the test", self.driver.pci_ids(new))
        if after.current and not before.current:
            return self._current_appeared()
        if before.active or before.current:
            return Finding(None, None, "a CUDA context existed before the test, so the driver "
                                       "cannot tell whether the test used it")
        return Finding(None, None, "CUDA is initialised but no context was active at the end "
                                   "of the test")

    def _current_appeared(self) -> Finding:
        driver = self.driver.get()
        device = driver.current_device() if driver is not None else None
        devices = self.driver.pci_ids([device]) if device is not None else ()
        where = f" on cuda:{device}" if device is not None else ""
        return Finding(True, METHOD_CONTEXT, f"a CUDA context became current{where} during the test",
                       devices)


class KernelProbe:
    """CUPTI's activity records: the kernels the test body gave the GPU.

    The tracer starts when the probe is made (the session's start), so the
    test that first initialises CUDA is traced too. Kernels launched in the
    body decide ``used``; their absence never does, since a kernel still
    running when the body returns is not seen. When CUPTI cannot trace here,
    every test's record says why (``kernels.error``).
    """

    name = "kernels"
    framework = False

    def __init__(self, driver: DriverHandle,
                 start: Callable[[], Any] | None = None) -> None:
        # Imported here, not above: CUPTI is opt-in, and its module binds libc when imported.
        from gitproof.gpu.cupti import CuptiError, tracer

        self.driver = driver
        self.tracer: Any = None
        self.error: str | None = None
        try:
            self.tracer = (start or tracer)()
        except CuptiError as exc:
            self.error = str(exc)

    def begin(self) -> int | str:
        """The window's start, or why there is none (kept for the test's record)."""
        if self.tracer is None:
            return self.error or "the kernel tracer did not start"
        try:
            started: int | str = self.tracer.begin()
            return started
        except Exception as exc:
            return f"the kernel tracer failed at the start of the test: {short_error(exc)}"

    def end(self, started: int | str) -> Finding:
        stats = None if isinstance(started, str) else self._stats(started)
        if isinstance(stats, str) or stats is None:
            reason = started if isinstance(started, str) else stats
            return Finding(None, None, f"kernels were not traced: {reason}",
                           kernels=KernelTotals.untraced(reason))
        devices = self._devices(stats.devices)
        kernels = KernelTotals(stats.tracer, None, stats.launches, stats.gpu_time_ns, list(devices),
                               list(stats.top), stats.memcpy, stats.memset, stats.dropped,
                               stats.incomplete, stats.untimed)
        where = ", ".join(f"cuda:{o}" for o in stats.devices)
        if stats.launches:
            plural = "" if stats.launches == 1 else "es"
            return Finding(True, METHOD_KERNELS, f"{stats.launches} kernel launch{plural} on {where} "
                           f"({milliseconds(stats.gpu_time_ns)} ms of GPU time)",
                           tuple(d for d in devices if not d.startswith("cuda:")), kernels=kernels)
        seen = (f"only {stats.memcpy.count} copies and {stats.memset.count} memsets on {where}"
                if stats.any_activity else "no copy or memset either")
        blind = (f"; {stats.blind_spots} kernel record(s) were lost, cut short or untimed"
                 if stats.blind_spots else "")
        return Finding(None, None, f"no kernel was launched while the test body ran ({seen}){blind}; "
                                   "work still running when the body returned is not seen",
                       kernels=kernels)

    def _stats(self, started: int) -> Any:
        try:
            return self.tracer.end(started)
        except Exception as exc:
            return f"the kernel tracer failed at the end of the test: {short_error(exc)}"

    def _devices(self, ordinals: Sequence[int]) -> tuple[str, ...]:
        """PCI bus ids of the ordinals CUPTI named; ``cuda:N`` for one the driver cannot map."""
        return tuple((self.driver.pci_ids([o]) or (f"cuda:{o}",))[0] for o in ordinals)

    def close(self) -> None:
        if self.tracer is not None and self.tracer.active:
            self.tracer.stop()


# Libraries that launch CUDA work with no allocation counter a probe could read.
UNCOUNTED_LIBRARIES = ("numba.cuda", "pycuda.driver", "jax", "tensorflow")


class UncountedProbe:
    """Says when a library that drives CUDA behind the counters' backs is loaded.

    Numba allocates and launches through the driver directly, so torch's or
    CuPy's empty counters say nothing about a Numba test; only a context
    appearing or a kernel trace can see its work. This probe decides
    nothing: it stops those empty counters from deciding "not used".
    """

    name = "uncounted"
    framework = False
    absent_state, absent_finding = None, None

    def absent(self) -> bool:
        return sys.modules.keys().isdisjoint(UNCOUNTED_LIBRARIES)

    def begin(self) -> None:
        return None

    def end(self, state: None) -> Finding | None:
        loaded = [name for name in UNCOUNTED_LIBRARIES if name in sys.modules]
        if not loaded:
            return None
        return Finding(None, None, f"{', '.join(loaded)} loaded: GPU work done through it shows only "
                                   "as a new CUDA context or in a kernel trace (--gpu-proof-kernels)",
                       uncounted=True)


def default_probes(driver: DriverHandle | None = None, kernels: bool = False) -> list[Probe]:
    """Kernels (when asked), torch, CuPy, then the driver: the kernel tracer first, it
    sees work itself; then frameworks, which name devices more precisely than the driver."""
    driver = driver or DriverHandle()
    first: list[Probe] = [KernelProbe(driver)] if kernels else []
    return first + [TorchProbe(driver), CupyProbe(driver), DriverProbe(driver), UncountedProbe()]
