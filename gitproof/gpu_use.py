"""Per-test evidence of GPU use: did this test actually run work on a GPU?

A receipt that lists GPU tests proves little if the tests quietly ran on the
CPU (a ``device = "cuda" if available else "cpu"`` fallback, a mocked
kernel). So while each test runs, a few cheap probes watch the process:

* ``torch``: ``torch.cuda.memory_stats`` allocation counters of the
  initialised devices;
* ``cupy``: a CuPy memory hook counting memory-pool allocations;
* ``cuda-driver``: libcuda itself (see :mod:`gitproof.cuda_driver`): never
  loaded, never initialised, or a context appearing during the test;
* ``kernels`` (opt-in, ``--gpu-proof-kernels``): CUPTI's activity records
  (see :mod:`gitproof.cupti`): the kernels the test body launched and the
  copies and memsets meanwhile, with their devices and GPU time. Only this probe
  sees work itself rather than memory or contexts, so only it tells a test
  that computed on the GPU from one that merely put data there.

A probe only looks at a framework the tests already imported, and never
initialises CUDA, so watching costs microseconds and changes nothing the test
does. Each probe gives a :class:`Finding`; :func:`combine` turns them into
one :class:`GpuUse`: any probe that saw use wins, else any that would have
seen use and saw none, else unknown, with one guard against false positives:
a context appearing does not count while a framework that held CUDA
allocated nothing. A probe that raises is recorded as "no decision" with its
error, never as a failure of the user's test.

The plugin watches the call phase only (the test function's body): work done
while fixtures are set up, a session-wide warm-up say, belongs to no test.

When use is seen, NVML is asked whether it lists this process on the GPU
(``nvml``); that corroborates, it never decides. Known limit: work done by
subprocesses of the test, or by CuPy in other threads, is not seen.
"""
from __future__ import annotations

import importlib
import itertools
import os
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from gitproof.cuda_driver import CudaDriver
from gitproof.gpu import canonical_bus_id

METHOD_TORCH = "torch.cuda.memory_stats"
METHOD_CUPY = "cupy.memory_hook"
METHOD_CONTEXT = "cuda-driver.context"
METHOD_NOT_LOADED = "cuda-driver.not-loaded"
METHOD_NOT_INITIALIZED = "cuda-driver.not-initialized"
METHOD_KERNELS = "cupti.kernels"
METHODS = (METHOD_KERNELS, METHOD_TORCH, METHOD_CUPY, METHOD_CONTEXT, METHOD_NOT_LOADED,
           METHOD_NOT_INITIALIZED)
FRAMEWORK_METHODS = (METHOD_TORCH, METHOD_CUPY)  # allocation counters: evidence of work itself
NVML_ANSWERS = ("listed", "not-listed", "pid-namespace", "unavailable")

TORCH_COUNTER = "allocation.all.allocated"
_TORCH_PCI_KEYS = ("pci_domain_id", "pci_bus_id", "pci_device_id")
_MAX_ERROR = 200
_hook_ids = itertools.count(1)


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
    kernels: dict[str, Any] | None = None  # the kernels probe's totals; None: not traced

    def to_dict(self) -> dict[str, Any]:
        data = {"test": self.test, "used": self.used, "method": self.method,
                "evidence": self.evidence, "devices": list(self.devices), "nvml": self.nvml}
        if self.kernels is not None:  # absent, not null, when tracing was not asked for
            data["kernels"] = self.kernels
        return data


@dataclass(frozen=True)
class Finding:
    """What one probe concluded about one test.

    ``framework``: it comes from a framework's probe (torch, CuPy), whose
    counters see work itself; the driver probe only sees contexts, which a
    framework also makes when a test merely asks about the GPU.
    """

    used: bool | None
    method: str | None
    evidence: str
    devices: tuple[str, ...] = ()
    framework: bool = False
    kernels: dict[str, Any] | None = None
    uncounted: bool = False  # a library that drives CUDA with no counter of ours is loaded

    @property
    def from_framework(self) -> bool:
        return self.framework or self.method in FRAMEWORK_METHODS


def combine(test: str, findings: Sequence[Finding]) -> GpuUse:
    """One record from every probe's finding; a false "used" is the danger.

    - A kernel that CUPTI saw run, or an allocation counted by a framework,
      decides ``used``, unless the driver says CUDA was never loaded or
      started in this process (then the count cannot be right: a test that
      mocks torch, say) and the test is unknown. Kernels come first: they
      are the GPU's own work.
    - A CUDA context appearing decides ``used`` only when no framework probe
      applied: with torch or CuPy in the process, asking about the GPU makes
      contexts too, so a context their counters did not confirm is unknown.
    - Otherwise a probe that would have seen use and saw none decides ``not
      used``; but a framework's empty counter does not, while a library that
      drives CUDA without a counter of ours (Numba, say) is loaded: it
      could have done the work. Otherwise unknown. Evidence of every probe is kept unless use
      was seen, so a "not used" or "unknown" says why.

    The kernels probe's totals are kept whatever decided.
    """
    kernels = next((f.kernels for f in findings if f.kernels is not None), None)
    launched = [f for f in findings if f.used and f.method == METHOD_KERNELS]
    counted = launched + [f for f in findings if f.used and f.from_framework]
    contexts = [f for f in findings if f.used and f.method == METHOD_CONTEXT]
    no_cuda = any(f.method in (METHOD_NOT_LOADED, METHOD_NOT_INITIALIZED) for f in findings)
    framework_applied = any(f.from_framework for f in findings)
    decisive = counted if counted and not no_cuda else (
        contexts if contexts and not framework_applied else [])
    if decisive:
        devices = next((f.devices for f in decisive + contexts if f.devices), ())
        return GpuUse(test, True, decisive[0].method, decisive[0].evidence, list(devices),
                      kernels=kernels)
    evidence = "; ".join(f.evidence for f in findings) or "no probe applied"
    uncounted = any(f.uncounted for f in findings)
    unused = [f for f in findings if f.used is False and not (uncounted and f.from_framework)]
    if unused and not (counted or contexts):
        return GpuUse(test, False, unused[0].method, evidence, kernels=kernels)
    return GpuUse(test, None, None, evidence, kernels=kernels)


# -- the CUDA driver, shared by the probes ---------------------------------------------


class DriverHandle:
    """The process's libcuda, attached lazily and kept once found.

    Probes share it to turn CUDA ordinals and UUIDs into PCI bus ids.
    Attaching while the driver is absent is a failed ``dlopen(RTLD_NOLOAD)``,
    cheap enough to retry at every test: a test may load it at any time.
    """

    def __init__(self, attach: Callable[[], CudaDriver | None] = CudaDriver.attach) -> None:
        self._attach = attach
        self._driver: CudaDriver | None = None

    def get(self) -> CudaDriver | None:
        if self._driver is None:
            self._driver = self._attach()
        return self._driver

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


def _milliseconds(nanoseconds: int) -> str:
    """``20383`` -> ``"0.020"``, in whole numbers: a hostile count may be too big for a float."""
    return f"{nanoseconds // 1_000_000}.{nanoseconds // 1000 % 1000:03d}"


def _allocations_text(counts: Mapping[int, int], what: str) -> str:
    """``{0: 3, 1: 1}`` -> ``"3 torch allocations on cuda:0, 1 on cuda:1"``."""
    (first, n), *rest = sorted(counts.items())
    parts = [f"{n} {what} allocation{'' if n == 1 else 's'} on cuda:{first}"]
    return ", ".join(parts + [f"{m} on cuda:{i}" for i, m in rest])


# -- probes ------------------------------------------------------------------------------


class Probe(Protocol):
    name: str
    framework: bool  # a framework's allocation counter (True), or the driver's contexts

    def begin(self) -> Any:
        """State at the start of a test (cheap; must not import or initialise anything)."""

    def end(self, state: Any) -> Finding | None:
        """What the test did, from ``state``; None when the probe does not apply."""


@dataclass(frozen=True)
class _TorchState:
    initialized: bool
    counts: dict[int, int | None] = field(default_factory=dict)


class TorchProbe:
    """PyTorch's caching allocator counts every allocation request per device.

    ``allocation.all.allocated`` grows with each tensor made on a GPU, cached
    block or not, so a test that made one is seen. Only devices already
    initialised are read: reading never starts CUDA. Limit: a test that only
    runs in-place kernels on tensors made before it allocates nothing.
    """

    name = "torch"
    framework = True

    def __init__(self, driver: DriverHandle) -> None:
        self.driver = driver

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
            return _TorchState(False)
        return _TorchState(True, self._counts(cuda))

    def end(self, state: _TorchState) -> Finding | None:
        cuda = self._cuda()
        if cuda is None:
            return None
        if not cuda.is_initialized():
            return Finding(False, METHOD_TORCH, "torch never initialised CUDA")
        counts = self._counts(cuda)
        if any(n is None for n in counts.values()):
            return Finding(None, None, f"torch.cuda.memory_stats has no {TORCH_COUNTER} counter")
        grown = {i: n - (state.counts.get(i) or 0) for i, n in counts.items()
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

    class CountingHook(base):  # type: ignore[misc, valid-type]
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

    def __init__(self, driver: DriverHandle) -> None:
        self.driver = driver
        self._classes: dict[type, type] = {}

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

    def __init__(self, driver: DriverHandle) -> None:
        self.driver = driver

    def begin(self) -> _DriverState:
        return self._state()

    def _state(self) -> _DriverState:
        driver = self.driver.get()
        if driver is None:
            return _DriverState(False)
        if not driver.initialized():
            return _DriverState(True)
        active = frozenset(o for o in range(driver.device_count()) if driver.primary_context_active(o))
        return _DriverState(True, True, active, driver.has_current_context())

    def end(self, before: _DriverState) -> Finding:
        after = self._state()
        if not after.loaded:
            return Finding(False, METHOD_NOT_LOADED, "libcuda was never loaded by the test process")
        if not after.initialized:
            return Finding(False, METHOD_NOT_INITIALIZED,
                           "libcuda is loaded but CUDA was never initialised (no cuInit)")
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
        from gitproof import cupti

        self.driver = driver
        self.tracer: Any = None
        self.error: str | None = None
        try:
            self.tracer = (start or cupti.tracer)()
        except cupti.CuptiError as exc:
            self.error = str(exc)

    def begin(self) -> int | str:
        """The window's start, or why there is none (kept for the test's record)."""
        if self.tracer is None:
            return self.error or "the kernel tracer did not start"
        try:
            return self.tracer.begin()
        except Exception as exc:
            return f"the kernel tracer failed at the start of the test: {_short(exc)}"

    def end(self, started: int | str) -> Finding:
        stats = None if isinstance(started, str) else self._stats(started)
        if isinstance(stats, str) or stats is None:
            reason = started if isinstance(started, str) else stats
            return Finding(None, None, f"kernels were not traced: {reason}",
                           kernels={"tracer": None, "error": reason})
        devices = self._devices(stats.devices)
        kernels = {"tracer": stats.tracer, "launches": stats.launches, "gpu_time_ns": stats.gpu_time_ns,
                   "devices": list(devices), "top": stats.top, "memcpy": stats.memcpy,
                   "memset": stats.memset, "dropped": stats.dropped, "incomplete": stats.incomplete,
                   "untimed": stats.untimed}
        where = ", ".join(f"cuda:{o}" for o in stats.devices)
        if stats.launches:
            plural = "" if stats.launches == 1 else "es"
            return Finding(True, METHOD_KERNELS, f"{stats.launches} kernel launch{plural} on {where} "
                           f"({_milliseconds(stats.gpu_time_ns)} ms of GPU time)",
                           tuple(d for d in devices if not d.startswith("cuda:")), kernels=kernels)
        seen = (f"only {stats.memcpy['count']} copies and {stats.memset['count']} memsets on {where}"
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
            return f"the kernel tracer failed at the end of the test: {_short(exc)}"

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


# -- NVML corroboration --------------------------------------------------------------------


def nvml_corroboration(devices: Sequence[str]) -> str:
    """Does NVML list this process with a compute context on the devices used?

    "pid-namespace": not listed, but this process lives in a PID namespace (a
    container), where NVML reports host pids that never match ours.
    """
    try:
        from gitproof import nvml
        listed = nvml.process_devices({os.getpid()})
    except (ImportError, AttributeError):  # NVML support not installed in this version
        return "unavailable"
    if listed is None:
        return "unavailable"
    relevant = [listed[d] for d in devices if d in listed] or list(listed.values())
    if any(relevant):
        return "listed"
    return "pid-namespace" if nvml.in_pid_namespace() else "not-listed"


# -- the monitor --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failed:
    error: str


def _short(exc: BaseException) -> str:
    text = repr(exc)
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR - 3] + "..."


class GpuUseMonitor:
    """Watches one test at a time in this process (the controller, or an xdist worker)."""

    def __init__(self, probes: Sequence[Probe] | None = None,
                 corroborate: Callable[[Sequence[str]], str] = nvml_corroboration) -> None:
        self.probes = list(probes) if probes is not None else default_probes()
        self._corroborate = corroborate
        self._started: dict[str, list[tuple[Probe, Any]]] = {}

    def start(self, nodeid: str) -> None:
        """Snapshot every probe before the test's setup runs."""
        if nodeid in self._started:  # started again without a stop: release its hooks
            self.stop(nodeid)
        self._started[nodeid] = [(probe, self._begin(probe)) for probe in self.probes]

    def stop(self, nodeid: str) -> GpuUse:
        """What the test did, after its teardown; never raises."""
        started = self._started.pop(nodeid, None)
        if started is None:
            return GpuUse(nodeid, None, None, "GPU use was not watched: the test never started")
        findings = [f for probe, state in started if (f := self._end(probe, state)) is not None]
        use = combine(nodeid, findings)
        if use.used:
            use = replace(use, nvml=self._nvml(use.devices))
        return use

    @staticmethod
    def _begin(probe: Probe) -> Any:
        try:
            return probe.begin()
        except Exception as exc:  # a probe must never break the user's test
            return _Failed(_short(exc))

    @staticmethod
    def _end(probe: Probe, state: Any) -> Finding | None:
        if isinstance(state, _Failed):
            return Finding(None, None, f"{probe.name} probe failed at the start: {state.error}",
                           framework=getattr(probe, "framework", False))
        try:
            finding = probe.end(state)
        except Exception as exc:
            finding = Finding(None, None, f"{probe.name} probe failed: {_short(exc)}")
        if finding is not None and getattr(probe, "framework", False):
            finding = replace(finding, framework=True)
        return finding

    def close(self) -> None:
        """Release what the probes hold (the kernel tracer) at the end of the session."""
        for probe in self.probes:
            close = getattr(probe, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def _nvml(self, devices: Sequence[str]) -> str:
        try:
            return self._corroborate(devices)
        except Exception:
            return "unavailable"


def summarize(records: Iterable[Mapping[str, Any]], limit: int = 5) -> str:
    """``"GPU use: 5 used, 1 not used (tests/x.py::test_cpu), 0 unknown"``."""
    groups: dict[str, list[str]] = {"used": [], "not used": [], "unknown": []}
    for record in records:
        key = {True: "used", False: "not used"}.get(record.get("used"), "unknown")
        groups[key].append(str(record.get("test")))
    parts = []
    for key, tests in groups.items():
        named = "" if key == "used" or not tests else f" ({_names(tests, limit)})"
        parts.append(f"{len(tests)} {key}{named}")
    return "GPU use: " + ", ".join(parts)


def _names(tests: list[str], limit: int) -> str:
    shown = ", ".join(tests[:limit])
    return shown if len(tests) <= limit else f"{shown}, and {len(tests) - limit} more"
