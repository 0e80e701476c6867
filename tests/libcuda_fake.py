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


FAKES = Path(__file__).parent / "fakes"
FAKE_SOURCE = FAKES / "libcuda_fake.c"
UUID_0 = "GPU-00102030-4050-6070-8090-a0b0c0d0e0f0"
UUID_1 = "GPU-01112131-4151-6171-8191-a1b1c1d1e1f1"
PCI_0, PCI_1 = "00000000:18:00.0", "00000000:3B:00.0"


def compile_fake(source: Path, directory: Path, *defines: str) -> Path:
    """Build a fake library from C once; skip (saying why) where no C compiler exists."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip(f"no C compiler (cc) to build {source.name}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (source.stem + "".join(f"-{d}" for d in defines) + ".so")
    subprocess.run([compiler, "-shared", "-fPIC", "-pthread", "-O1", *(f"-D{d}" for d in defines),
                    "-o", str(target), str(source)],
                   check=True, capture_output=True)
    return target


def compile_fake_libcuda(directory: Path) -> Path:
    return compile_fake(FAKE_SOURCE, directory)


def fresh_copy(built: Path, directory: Path, name: str = "libcuda.so.1") -> Path:
    """A copy under a new path: the dynamic linker loads it as a new library, fresh state."""
    copy = directory / name
    shutil.copyfile(built, copy)
    return copy


def loaded(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def retain_primary(lib: ctypes.CDLL, ordinal: int, make_current: bool = False) -> None:
    context = ctypes.c_void_p()
    assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), ordinal) == 0
    if make_current:
        assert lib.cuCtxSetCurrent(context) == 0


def cupti_controls(lib: ctypes.CDLL) -> ctypes.CDLL:
    """The fake CUPTI's test controls (tests/fakes/libcupti_fake.c), typed."""
    u32, u64, text = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_char_p
    for name, args in {"fake_cupti_kernel": [u32, text, u64], "fake_cupti_kernel_at": [u32, text, u64, u64, u64],
                       "fake_cupti_in_flight": [], "fake_cupti_flush_in_thread": [], "fake_cupti_untimed": [u32],
                       "fake_cupti_memcpy": [u32, u64], "fake_cupti_memset": [u32, u64],
                       "fake_cupti_garbage": [], "fake_cupti_refuse": [ctypes.c_int],
                       "fake_cupti_drop": [ctypes.c_size_t], "fake_cupti_enabled": [ctypes.c_int],
                       "fake_cupti_flushes": []}.items():
        getattr(lib, name).argtypes = args
    lib.fake_cupti_flushes.restype = ctypes.c_size_t
    lib.fake_cupti_last_flag.restype = ctypes.c_uint32
    return lib
