"""What watching each test for GPU use costs: ``GpuUseMonitor.start`` + ``stop``.

While ``--gpu-proof`` records, the plugin calls ``start`` before each test's
setup and ``stop`` after its teardown (gitproof/gpu/monitor.py). Timed here, per
test, median of interleaved samples (see _common.py):

* no probes: the monitor's own bookkeeping;
* default probes, CUDA never loaded: what a CPU-only test session pays (the
  driver probe retries a failing ``dlopen(RTLD_NOLOAD)`` at every test);
* default probes, CUDA loaded and initialised, 2 or 8 devices, a primary
  context active on each: what a CUDA test session pays for the driver probe.
  The driver is the fake libcuda of the test suite
  (tests/fakes/libcuda_fake.c, built here with ``cc``), so this times
  gitproof's ctypes calls, not NVIDIA's driver, whose calls are of the same
  kind (in-process reads of driver state).

NVML corroboration is switched off (it only runs for tests that used a GPU,
and needs a real GPU to time); the torch and CuPy probes do nothing here
because neither is imported. Their per-test cost on real hardware is left
for a GPU machine.

Run:

    python benchmarks/bench_gpu_use.py [--repeat 51]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Case, fmt_time, measure, print_machine, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitproof.gpu.driver import ENV_LIBRARY, DriverHandle  # noqa: E402
from gitproof.gpu.monitor import GpuUseMonitor, default_probes  # noqa: E402

FAKE_SOURCE = ROOT / "tests" / "fakes" / "libcuda_fake.c"


def watch_once(monitor: GpuUseMonitor) -> None:
    monitor.start("tests/test_k.py::test_a")
    monitor.stop("tests/test_k.py::test_a")


def build_fake_driver(directory: Path, devices: int) -> ctypes.CDLL:
    """A fresh copy of the fake libcuda, loaded, initialised, one primary context per device."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("needs a C compiler (cc) to build the fake libcuda")
    target = directory / f"libcuda-{devices}.so.1"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(target), str(FAKE_SOURCE)], check=True)
    os.environ["GITPROOF_FAKE_CUDA_DEVICES"] = str(devices)
    lib = ctypes.CDLL(str(target), mode=os.RTLD_GLOBAL)
    assert lib.cuInit(0) == 0
    context = ctypes.c_void_p()
    for ordinal in range(devices):
        assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), ordinal) == 0
    assert lib.cuCtxSetCurrent(context) == 0
    return lib


def monitor_for(library: str | None) -> GpuUseMonitor:
    if library is not None:
        os.environ[ENV_LIBRARY] = library
    else:
        os.environ.pop(ENV_LIBRARY, None)
    handle = DriverHandle()
    handle.get()  # attach now, with the library named above
    os.environ.pop(ENV_LIBRARY, None)
    return GpuUseMonitor(default_probes(handle), corroborate=lambda devices: "unavailable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=51)
    args = parser.parse_args()
    print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-use-") as tmp:
        no_cuda = monitor_for(None)
        watch_once(no_cuda)
        cases = [
            Case("no probes (bookkeeping only)", lambda m=GpuUseMonitor([]): watch_once(m)),
            Case("default probes, CUDA never loaded", lambda m=no_cuda: watch_once(m)),
        ]
        for devices in (2, 8):
            lib = build_fake_driver(Path(tmp), devices)
            monitor = monitor_for(lib._name)
            monitor.start("check")
            use = monitor.stop("check")
            if use.used is not None:
                print(f"unexpected: {use}", file=sys.stderr)
                return 1
            cases.append(Case(f"default probes, CUDA initialised, {devices} devices with contexts",
                              lambda m=monitor: watch_once(m)))
        print(f"\nmeasuring, {args.repeat} interleaved rounds ...", flush=True)
        measure(cases, args.repeat, target_s=0.01, progress=False)
    base = cases[1].median
    rows = [[c.name, fmt_time(c.median), f"{c.median / base:.2f}x",
             f"{fmt_time(c.spread[0])} .. {fmt_time(c.spread[1])}",
             fmt_time(c.median * 1000)] for c in cases]
    print()
    print(table(rows, ["per test: start + stop", "median", "vs no CUDA", "min .. max", "per 1,000 tests"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
