"""Running a body as one watched test, for the GPU-use tests."""
from __future__ import annotations

from collections.abc import Callable

from gitproof.gpu import GpuUse
from gitproof.gpu.monitor import GpuUseMonitor

TEST = "tests/test_k.py::test_k"
UNUSED_NVML = "unavailable"


def watch(body: Callable[[], object], monitor: GpuUseMonitor | None = None, nodeid: str = TEST) -> GpuUse:
    """Run ``body`` as one watched test."""
    monitor = monitor or GpuUseMonitor(corroborate=lambda devices: UNUSED_NVML)
    monitor.start(nodeid)
    body()
    return monitor.stop(nodeid)


def nothing() -> None:
    pass
