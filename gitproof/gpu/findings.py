"""What each GPU-use probe concluded about a test, and how that becomes one record.

Each probe (:mod:`gitproof.gpu.probes`) gives a :class:`Finding`;
:func:`combine` turns them into one :class:`~gitproof.gpu.records.GpuUse`:
any probe that saw use wins, else any that would have seen use and saw
none, else unknown, with one guard against false positives: a context
appearing does not count while a framework that held CUDA allocated
nothing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gitproof.gpu.records import (METHOD_CONTEXT, METHOD_CUPY, METHOD_KERNELS, METHOD_NOT_INITIALIZED,
                                  METHOD_NOT_LOADED, METHOD_TORCH, GpuUse, KernelTotals)

FRAMEWORK_METHODS = (METHOD_TORCH, METHOD_CUPY)  # allocation counters: evidence of work itself


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
    kernels: KernelTotals | None = None
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
