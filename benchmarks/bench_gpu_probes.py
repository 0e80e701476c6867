"""What each GPU-use probe costs per test on a real GPU, and what kernel tracing costs a run.

Needs an NVIDIA GPU with PyTorch (CuPy and CUPTI where installed). Two parts:

1. Per test, in-process: a "test body" of one small PyTorch kernel
   (``x.add_(1)`` on a 1,024-element CUDA tensor, then a synchronise) is
   watched by a :class:`GpuUseMonitor` holding one probe set at a time. The
   figure is the median time of start + body + stop, minus the median of the
   body alone, over interleaved rounds (see _common.py). The kernel tracer
   (CUPTI) runs last: once it is on, it stays on for the process, so it also
   reports what tracing adds to the body itself.
2. Per session: ``pytest`` on N such tests in child processes, plain, with
   ``--gpu-proof``, and with ``--gpu-proof --gpu-proof-kernels`` (unsigned dry
   runs, in a throwaway repository), interleaved, median wall time of each.

Run:

    python benchmarks/bench_gpu_probes.py [--repeat 15] [--tests 300] [--sessions 3]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Case, fmt_time, measure, print_machine, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitproof.gpu import cupti  # noqa: E402
from gitproof.gpu.driver import DriverHandle  # noqa: E402
from gitproof.gpu.monitor import GpuUseMonitor  # noqa: E402
from gitproof.gpu.probes import CupyProbe, DriverProbe, KernelProbe, TorchProbe, UncountedProbe  # noqa: E402

SESSION_TESTS = """
import pytest
import torch

X = None


@pytest.mark.gpu_proof
@pytest.mark.parametrize("i", range({n}))
def test_small_kernel(i):
    global X
    if X is None:
        X = torch.zeros(1024, device="cuda")
    X.add_(1)
    torch.cuda.synchronize()
"""


def per_test(repeat: int) -> list[list[str]]:
    import torch

    x = torch.zeros(1024, device="cuda")

    def body() -> None:
        x.add_(1)
        torch.cuda.synchronize()

    def watched(monitor: GpuUseMonitor):
        def run() -> None:
            monitor.start("t")
            body()
            monitor.stop("t")
        return run

    driver = DriverHandle()
    quiet = {"corroborate": lambda devices: "unavailable"}
    sets = {
        "torch": [TorchProbe(driver)],
        "cupy": [CupyProbe(driver)],
        "cuda-driver": [DriverProbe(driver)],
        "uncounted libraries": [UncountedProbe()],
        "all default probes": [TorchProbe(driver), CupyProbe(driver), DriverProbe(driver), UncountedProbe()],
    }
    body()
    cases = [Case("body alone", body)] + [Case(name, watched(GpuUseMonitor(p, **quiet))) for name, p in sets.items()]
    measure(cases, repeat, target_s=0.02, progress=False)
    base = cases[0].median
    rows = [[c.name, fmt_time(c.median), fmt_time(c.median - base) if c is not cases[0] else "-"]
            for c in cases]
    kernels = KernelProbe(driver)
    if kernels.tracer is None:
        rows.append(["kernels (CUPTI)", "-", f"unavailable: {kernels.error}"])
        return rows
    def counted() -> None:  # the default: does every window see its kernel?
        monitor.start("t")
        body()
        seen.append(monitor.stop("t").kernels["launches"])

    def unforced() -> None:  # the same probe, flushing only buffers with no record in flight
        kernels.tracer.flush_flag = cupti.FLUSH_UNFORCED
        try:
            counted()
        finally:
            kernels.tracer.flush_flag = cupti.FLUSH_FORCED

    monitor, seen = GpuUseMonitor([kernels], **quiet), []
    traced = [Case("body alone, CUPTI tracing on", body),
              Case("kernels (CUPTI) alone", counted),
              Case("kernels (CUPTI), unforced flush", unforced),
              Case("all default probes + kernels",
                   watched(GpuUseMonitor(list(sets["all default probes"]) + [kernels], **quiet)))]
    measure(traced, repeat, target_s=0.02, progress=False)
    print(f"kernel tracing: {sum(1 for n in seen if n >= 1)} of {len(seen)} windows saw their kernel")
    traced_base = traced[0].median
    rows.append([traced[0].name, fmt_time(traced_base), f"{fmt_time(traced_base - base)} (tracing itself)"])
    rows += [[c.name, fmt_time(c.median), fmt_time(c.median - traced_base)] for c in traced[1:]]
    kernels.close()
    return rows


def per_session(tests: int, sessions: int) -> list[list[str]]:
    with tempfile.TemporaryDirectory(prefix="bench-gpu-probes-") as tmp:
        root = Path(tmp)
        (root / "tests").mkdir()
        (root / "tests" / "test_small.py").write_text(SESSION_TESTS.replace("{n}", str(tests)))
        for args in (["init", "-q"], ["add", "-A"], ["-c", "user.email=bench@example.com", "-c", "user.name=bench",
                                                      "commit", "-q", "-m", "bench"]):
            subprocess.run(["git", *args], cwd=root, check=True)
        configs = {"plain pytest": [], "--gpu-proof": ["--gpu-proof", "--gpu-proof-unsigned"],
                   "--gpu-proof --gpu-proof-kernels": ["--gpu-proof", "--gpu-proof-unsigned", "--gpu-proof-kernels"]}
        times: dict[str, list[float]] = {name: [] for name in configs}
        for round_ in range(sessions):
            for name, extra in list(configs.items())[round_ % 3:] + list(configs.items())[:round_ % 3]:
                started = time.perf_counter()
                run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                                     cwd=root, capture_output=True, text=True)
                times[name].append(time.perf_counter() - started)
                if run.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    base = statistics.median(times["plain pytest"])
    return [[name, f"{statistics.median(t):.2f} s", f"{statistics.median(t) / base:.3f}x",
             f"{(statistics.median(t) - base) / tests * 1e3:.2f} ms"] for name, t in times.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    print_machine()
    print("\nper test, in-process (one small kernel + synchronise per test body)")
    print(table(per_test(args.repeat), ["probe set", "median per test", "added by watching"]))
    if args.sessions < 1:
        return 0
    print(f"\nper session: {args.tests} tests, {args.sessions} interleaved sessions each")
    print(table(per_session(args.tests, args.sessions), ["run", "median wall", "vs plain", "added per test"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
