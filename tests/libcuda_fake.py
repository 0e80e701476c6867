"""The fake CUDA driver (tests/fakes/libcuda_fake.c): built with the system C
compiler and loaded through the dynamic linker, as the real libcuda would be.

The fixtures ``built_libcuda``, ``libcuda_path`` and ``libcuda`` are in conftest.py.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest


FAKE_SOURCE = Path(__file__).parent / "fakes" / "libcuda_fake.c"
UUID_0 = "GPU-00102030-4050-6070-8090-a0b0c0d0e0f0"
UUID_1 = "GPU-01112131-4151-6171-8191-a1b1c1d1e1f1"
PCI_0, PCI_1 = "00000000:18:00.0", "00000000:3B:00.0"


def compile_fake_libcuda(directory: Path) -> Path:
    """Build the fake driver once; skip (saying why) where no C compiler exists."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the fake libcuda")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "libcuda_fake.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(target), str(FAKE_SOURCE)],
                   check=True, capture_output=True)
    return target


def fresh_copy(built: Path, directory: Path) -> Path:
    """A copy under a new path: the dynamic linker loads it as a new library, fresh state."""
    copy = directory / "libcuda.so.1"
    shutil.copyfile(built, copy)
    return copy


def loaded(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def retain_primary(lib: ctypes.CDLL, ordinal: int, make_current: bool = False) -> None:
    context = ctypes.c_void_p()
    assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), ordinal) == 0
    if make_current:
        assert lib.cuCtxSetCurrent(context) == 0
