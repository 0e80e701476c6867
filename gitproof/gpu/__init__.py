"""The GPU side of gitproof: which GPUs the machine has, and what each test did with them.

The public API is what this package exports:

- the receipt's GPU records, typed (:mod:`~gitproof.gpu.records`): :class:`GpuDevice`,
  :class:`GpuFacts`, :class:`GpuUse` and its :class:`KernelTotals`;
- device facts: :func:`detect_facts`, :func:`summary`, :func:`gpu_visible`,
  :func:`redact_uuids`, :func:`canonical_bus_id`.

Device facts come from :mod:`~gitproof.gpu.sources` (NVML in :mod:`~gitproof.gpu.nvml`,
nvidia-smi in :mod:`~gitproof.gpu.smi`, torch), put together by
:mod:`~gitproof.gpu.facts` with :mod:`~gitproof.gpu.visibility` (``CUDA_VISIBLE_DEVICES``).

Per-test GPU use is watched by :class:`gitproof.gpu.monitor.GpuUseMonitor`
running the probes of :mod:`~gitproof.gpu.probes`, whose findings
:mod:`~gitproof.gpu.findings` combines. The probes read libcuda
(:mod:`~gitproof.gpu.driver`) and CUPTI (:mod:`~gitproof.gpu.cupti`, records in
:mod:`~gitproof.gpu.activity`) through ctypes, so that side is not imported
here: a pytest run that records nothing never loads it.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from gitproof.gpu.records import (GpuDevice, GpuFacts, GpuUse, KernelTotals, TopKernel, Transfers,
                                  canonical_bus_id, milliseconds)

if TYPE_CHECKING:
    from gitproof.gpu.facts import detect_facts, summary
    from gitproof.gpu.visibility import gpu_visible, redact_uuids

# Loaded on first use: the verifier reads the typed records (standard library only) on
# every pre-push, and must not pay for the device-facts side it never calls.
_LAZY = {"detect_facts": "facts", "summary": "facts", "gpu_visible": "visibility", "redact_uuids": "visibility"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"gitproof.gpu.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "GpuDevice", "GpuFacts", "GpuUse", "KernelTotals", "TopKernel", "Transfers",
    "canonical_bus_id", "detect_facts", "gpu_visible", "milliseconds", "redact_uuids", "summary",
]
