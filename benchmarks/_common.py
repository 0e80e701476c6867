"""Shared helpers for the benchmark scripts: side-by-side timing, machine facts, signed receipts.

Not a benchmark itself. Every script in this folder imports it as ``_common``
(the script's own folder is first on ``sys.path`` when run as
``python benchmarks/<name>.py``).

Timing model: each case is measured ``repeat`` times, and the cases take turns
within every round (case A, B, C, then A, B, C again, with the starting case
rotating), so slow phases of a shared, noisy machine hit all of them alike.
A sample is the mean over ``number`` back-to-back calls, with ``number`` chosen
so one sample lasts at least ``target_s``; the figure reported is the median
of the samples.
"""
from __future__ import annotations

import gc
import os
import platform
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import pygit2

    from gitproof.receipt import SignedReceipt


@dataclass
class Case:
    name: str
    fn: Callable[[], object]
    setup: Callable[[], object] | None = None  # run before every call, not timed
    number: int | None = None  # calls per sample; None = calibrate
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.samples), max(self.samples)


def _one_sample(case: Case, number: int) -> float:
    total = 0.0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(number):
            if case.setup is not None:
                case.setup()
            start = time.perf_counter()
            case.fn()
            total += time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return total / number


def calibrate(case: Case, target_s: float) -> int:
    if case.number is not None:
        return case.number
    case.fn()  # warm-up call, also gives a first estimate
    once = _one_sample(case, 1)
    number = 1 if once >= target_s else max(1, int(target_s / max(once, 1e-9)))
    case.number = min(number, 100_000)
    return case.number


def measure(cases: list[Case], repeat: int, target_s: float = 0.05,
            progress: bool = True) -> list[Case]:
    """Fill ``case.samples`` with ``repeat`` interleaved samples per case."""
    for case in cases:
        calibrate(case, target_s)
    for round_no in range(repeat):
        shift = round_no % len(cases)
        for case in cases[shift:] + cases[:shift]:
            case.samples.append(_one_sample(case, case.number or 1))
        if progress:
            print(f"  round {round_no + 1}/{repeat} done", flush=True)
    return cases


def measure_and_show(cases: list[Case], repeat: int) -> None:
    """``measure`` the cases, then print each one's median, min and max."""
    print(f"timing {len(cases)} cases x {repeat} rounds ...")
    measure(cases, repeat, progress=False)
    rows = [[c.name, fmt_time(c.median), fmt_time(c.spread[0]), fmt_time(c.spread[1])] for c in cases]
    print("\n" + table(rows, ["case", "median", "min", "max"]))


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds:,.3f} s"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths, strict=False)))
    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _first_line(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, check=False)
    except OSError:
        return "not found"
    return (result.stdout + result.stderr).strip().splitlines()[0] if (result.stdout + result.stderr).strip() else "?"


def machine_info() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            match = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.M)
            cpu = match.group(1).strip() if match else "?"
    except OSError:
        pass
    ram = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kib = int(re.search(r"MemTotal:\s+(\d+)", fh.read()).group(1))
            ram = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    try:
        import pygit2
        pygit2_version = f"pygit2 {pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION})"
    except ImportError:
        pygit2_version = "pygit2 not installed"
    try:
        import cryptography
        crypto = f"cryptography {cryptography.__version__}"
    except ImportError:
        crypto = "cryptography not installed"
    return {
        "cores (nproc)": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity")
        else str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "git": _first_line(["git", "--version"]),
        "openssh": _first_line(["ssh", "-V"]),
        "libraries": f"{pygit2_version}; {crypto}",
        "os": platform.platform(),
    }


def print_machine() -> None:
    print("machine:")
    for key, value in machine_info().items():
        print(f"  {key:14} {value}")


def signed_receipt(repo: pygit2.Repository, rev: str, key: Path, principal: str, paths: list[str],
                   branch: str, tests: int = 50) -> SignedReceipt:
    """A fresh receipt of ``tests`` passing tests for ``rev``'s real trees at ``paths``, signed by
    the real ``ssh-keygen -Y sign -n gpu-proof`` with the private key ``key``."""
    from gitproof.fingerprint import commit_trees
    from gitproof.receipt import Receipt, SignedReceipt, TestResult, serialize_payload

    when = datetime.now(timezone.utc)  # fresh: receipts older than max_age_days do not count
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    receipt = Receipt(
        signer=principal, key_fingerprint=fingerprint, started=when,
        finished=when + timedelta(seconds=42), mode="local",
        trees=commit_trees(repo, repo[rev], paths), commit=rev, branch=branch,
        dirty_outside=False, pytest_args=["--gpu-proof"],
        environment={"os": "Linux", "python": "3.11.7", "pytest": "9.0", "gitproof": "0.1.0"},
        gpus=[], tests=[TestResult(f"tests/test_k{i // 10}.py::test_case[{i}]", "passed", 0.25)
                        for i in range(tests)])
    payload = serialize_payload(receipt)
    armored = subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", "gpu-proof"],
                             input=payload, capture_output=True, check=True).stdout.decode()
    return SignedReceipt(receipt, payload, armored)
