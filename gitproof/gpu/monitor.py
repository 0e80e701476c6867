"""Watching each test for GPU use: the probes around the body, one record after.

The plugin watches the call phase only (the test function's body): work done
while fixtures are set up, a session-wide warm-up say, belongs to no test.
A probe (:mod:`gitproof.gpu.probes`) that raises is recorded as "no decision"
with its error, never as a failure of the user's test.

When use is seen, NVML is asked whether it lists this process on the GPU
(``nvml``); that corroborates, it never decides. Known limit: work done by
subprocesses of the test, or by CuPy in other threads, is not seen.

This module loads ctypes (through the driver probe), so the plugin imports
it only when recording.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from gitproof.gpu.findings import Finding, combine
from gitproof.gpu.probes import Absent, Probe, default_probes, short_error
from gitproof.gpu.records import GpuUse

# What the plugin uses; default_probes is re-exported so that it needs this module alone.
__all__ = ["GpuUseMonitor", "default_probes", "nvml_corroboration", "summarize"]

# -- NVML corroboration --------------------------------------------------------------------


def nvml_corroboration(devices: Sequence[str]) -> str:
    """Does NVML list this process with a compute context on the devices used?

    "pid-namespace": not listed, but this process lives in a PID namespace (a
    container), where NVML reports host pids that never match ours.
    """
    try:
        from gitproof.gpu.nvml import in_pid_namespace, process_devices
        listed = process_devices({os.getpid()})
    except (ImportError, AttributeError):  # NVML support not installed in this version
        return "unavailable"
    if listed is None:
        return "unavailable"
    relevant = [listed[d] for d in devices if d in listed] or list(listed.values())
    if any(relevant):
        return "listed"
    return "pid-namespace" if in_pid_namespace() else "not-listed"


# -- the monitor --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failed:
    error: str


_NOTHING_WATCHED = ()  # what start() keeps for a test that began with nothing to watch (else a list)


def _all_absent_capable(probes: Sequence[Probe]) -> list[Absent] | None:
    """The probes as :class:`Absent` ones, or None when one of them cannot tell."""
    if all(hasattr(probe, "absent") for probe in probes):
        return cast("list[Absent]", list(probes))
    return None


class GpuUseMonitor:
    """Watches one test at a time in this process (the controller, or an xdist worker).

    A process with nothing to watch (no framework imported, no driver loaded:
    every probe :class:`~gitproof.gpu.probes.Absent`) gets the same record for
    every test, so while that holds from a test's start to its end the
    probes are not asked, and the record is made once. Most sessions of
    CPU-only tests never ask them.
    """

    def __init__(self, probes: Sequence[Probe] | None = None,
                 corroborate: Callable[[Sequence[str]], str] = nvml_corroboration) -> None:
        self.probes = list(probes) if probes is not None else default_probes()
        self._corroborate = corroborate
        self._started: dict[str, Sequence[tuple[Probe, Any]]] = {}
        self._absent: list[Absent] | None = _all_absent_capable(self.probes)
        self._unwatched: GpuUse | None = None  # the record of a test with nothing to watch

    def start(self, nodeid: str) -> None:
        """Snapshot every probe before the test's setup runs."""
        if nodeid in self._started:  # started again without a stop: release its hooks
            self.stop(nodeid)
        self._started[nodeid] = (_NOTHING_WATCHED if self._nothing_to_watch()
                                 else [(probe, self._begin(probe)) for probe in self.probes])

    def stop(self, nodeid: str) -> GpuUse:
        """What the test did, after its teardown; never raises."""
        started = self._started.pop(nodeid, None)
        if started is None:
            return GpuUse(nodeid, None, None, "GPU use was not watched: the test never started")
        if started is _NOTHING_WATCHED:
            if self._nothing_to_watch():
                return self._unwatched_use(nodeid)
            started = [(probe, probe.absent_state) for probe in self._absent or ()]
        findings = [f for probe, state in started if (f := self._end(probe, state)) is not None]
        use = combine(nodeid, findings)
        if use.used:
            use = replace(use, nvml=self._nvml(use.devices))
        return use

    def _nothing_to_watch(self) -> bool:
        if self._absent is None:
            return False
        try:
            return all(probe.absent() for probe in self._absent)
        except Exception:  # then the probes are asked, and say what failed
            return False

    def _unwatched_use(self, nodeid: str) -> GpuUse:
        """What the probes' ``end`` would say of a test with nothing to watch (made once)."""
        if self._unwatched is None:
            assert self._absent is not None
            self._unwatched = combine(nodeid, [f for probe in self._absent if (f := probe.absent_finding)])
        known = self._unwatched
        return GpuUse(nodeid, known.used, known.method, known.evidence, list(known.devices), known.nvml,
                      known.kernels)

    @staticmethod
    def _begin(probe: Probe) -> Any:
        try:
            return probe.begin()
        except Exception as exc:  # a probe must never break the user's test
            return _Failed(short_error(exc))

    @staticmethod
    def _end(probe: Probe, state: Any) -> Finding | None:
        if isinstance(state, _Failed):
            return Finding(None, None, f"{probe.name} probe failed at the start: {state.error}",
                           framework=getattr(probe, "framework", False))
        try:
            finding = probe.end(state)
        except Exception as exc:
            finding = Finding(None, None, f"{probe.name} probe failed: {short_error(exc)}")
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


_GROUPS: dict[object, str] = {True: "used", False: "not used"}


def summarize(records: Iterable[Mapping[str, Any]], limit: int = 5) -> str:
    """``"GPU use: 5 used, 1 not used (tests/x.py::test_cpu), 0 unknown"``."""
    groups: dict[str, list[str]] = {"used": [], "not used": [], "unknown": []}
    for record in records:
        key = _GROUPS.get(record.get("used"), "unknown")
        groups[key].append(str(record.get("test")))
    parts = []
    for key, tests in groups.items():
        named = "" if key == "used" or not tests else f" ({_names(tests, limit)})"
        parts.append(f"{len(tests)} {key}{named}")
    return "GPU use: " + ", ".join(parts)


def _names(tests: list[str], limit: int) -> str:
    shown = ", ".join(tests[:limit])
    return shown if len(tests) <= limit else f"{shown}, and {len(tests) - limit} more"
