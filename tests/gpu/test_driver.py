"""gitproof.gpu.driver against a real shared library: the fake libcuda in
tests/fakes/libcuda_fake.c, compiled here with the system C compiler and
loaded through the dynamic linker as the real driver would be."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys

import pytest

from gitproof.gpu.driver import (CUDA_ERROR_NOT_INITIALIZED, DEFAULT_LIBRARY, ENV_LIBRARY, CudaDevice,
                                 CudaDriver, CudaError, DriverHandle, format_uuid)
from tests.libcuda_fake import FAKE_SOURCE, PCI_0, PCI_1, UUID_0, UUID_1, loaded, retain_primary

CUDA_ERROR_DEINITIALIZED = 4


def test_attach_finds_nothing_when_the_process_has_not_loaded_the_driver(libcuda_path):
    assert CudaDriver.attach() is None
    assert not loaded(libcuda_path), "attach must never load the driver itself"


def test_attach_finds_the_driver_once_the_process_loaded_it(libcuda_path):
    assert CudaDriver.attach() is None
    ctypes.CDLL(str(libcuda_path), mode=os.RTLD_GLOBAL)
    driver = CudaDriver.attach()
    assert driver is not None and driver.name == str(libcuda_path)


SONAME_CHECK = """
import ctypes, os, sys
from gitproof.gpu.driver import CudaDriver
assert CudaDriver.attach() is None
ctypes.CDLL(sys.argv[1], mode=os.RTLD_GLOBAL)  # loaded by path, as a framework may
print(CudaDriver.attach().name, CudaDriver.attach().version())
"""


def test_by_default_the_driver_is_found_by_its_soname_wherever_it_was_loaded_from(tmp_path):
    """In a child process: a library with soname libcuda.so.1 stays loaded for good."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc) to build the fake libcuda")
    target = tmp_path / "vendor" / "libcuda.so.550.54.15"
    target.parent.mkdir()
    subprocess.run([compiler, "-shared", "-fPIC", f"-Wl,-soname,{DEFAULT_LIBRARY}", "-o", str(target),
                    str(FAKE_SOURCE)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != ENV_LIBRARY}
    run = subprocess.run([sys.executable, "-c", SONAME_CHECK, str(target)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["libcuda.so.1", "12.4"]


def test_a_loaded_library_that_is_not_a_cuda_driver_is_refused():
    assert CudaDriver.attach("libc.so.6") is None  # loaded in every process, no cu* symbols


def test_before_cuinit_nothing_is_initialised_and_nothing_initialises_it(libcuda):
    driver = CudaDriver.attach()
    assert driver.version() == "12.4"  # the one call CUDA allows before cuInit
    assert not driver.initialized()
    assert not driver.has_current_context() and driver.current_device() is None
    assert driver.device_count() == 0 and driver.devices() == []
    assert libcuda.gitproof_fake_init_calls() == 0


def test_devices_after_cuinit_carry_uuid_and_canonical_pci_bus_id(libcuda):
    assert libcuda.cuInit(0) == 0
    driver = CudaDriver.attach()
    assert driver.initialized()
    assert driver.devices() == [CudaDevice(0, UUID_0, PCI_0), CudaDevice(1, UUID_1, PCI_1)]
    assert libcuda.gitproof_fake_init_calls() == 1  # the test's own call only


def test_device_count_follows_the_driver(libcuda, monkeypatch):
    monkeypatch.setenv("GITPROOF_FAKE_CUDA_DEVICES", "3")
    libcuda.cuInit(0)
    assert [d.ordinal for d in CudaDriver.attach().devices()] == [0, 1, 2]


def test_primary_context_state_follows_retain_and_release(libcuda):
    libcuda.cuInit(0)
    driver = CudaDriver.attach()
    assert not driver.primary_context_active(1)
    retain_primary(libcuda, 1)
    assert driver.primary_context_active(1) and not driver.primary_context_active(0)
    assert not driver.has_current_context()  # retaining does not make it current
    assert libcuda.cuDevicePrimaryCtxRelease(1) == 0
    assert not driver.primary_context_active(1)


def test_current_context_names_its_device(libcuda):
    libcuda.cuInit(0)
    driver = CudaDriver.attach()
    retain_primary(libcuda, 1, make_current=True)
    assert driver.has_current_context() and driver.current_device() == 1


def test_a_bad_ordinal_is_an_error_not_an_answer(libcuda):
    libcuda.cuInit(0)
    with pytest.raises(CudaError, match="cuDeviceGet returned CUDA error 101"):
        CudaDriver.attach().primary_context_active(7)


def test_an_unexpected_error_is_raised_not_read_as_not_initialised(libcuda):
    libcuda.cuInit(0)
    libcuda.gitproof_fake_force_error(CUDA_ERROR_DEINITIALIZED)
    with pytest.raises(CudaError) as raised:
        CudaDriver.attach().initialized()
    assert raised.value.code == CUDA_ERROR_DEINITIALIZED != CUDA_ERROR_NOT_INITIALIZED


def test_uuid_bytes_are_spelled_as_nvml_does():
    raw = bytes.fromhex("5f3a9c0e12ab4cd0ef0123456789abcd")
    assert format_uuid(raw) == "GPU-5f3a9c0e-12ab-4cd0-ef01-23456789abcd"


# -- DriverHandle: a miss is asked again only once the dynamic linker loaded something ------------

class Linker:
    """A stand-in for the dynamic linker's load count, and the attempts to attach."""

    def __init__(self, count: int | None = 7) -> None:
        self.count = count
        self.attempts = 0

    def objects_loaded(self) -> int | None:
        return self.count

    def attach(self) -> None:
        self.attempts += 1


def test_a_miss_is_not_asked_again_while_nothing_was_loaded():
    linker = Linker()
    handle = DriverHandle(linker.attach, linker.objects_loaded)
    assert [handle.get() for _ in range(3)] == [None, None, None]
    assert linker.attempts == 1
    linker.count += 1  # a test loaded some library
    assert handle.get() is None and linker.attempts == 2


def test_known_absent_only_after_a_miss_with_nothing_loaded_since():
    linker = Linker()
    handle = DriverHandle(linker.attach, linker.objects_loaded)
    assert not handle.absent()  # never looked
    handle.get()
    assert handle.absent() and linker.attempts == 1  # telling costs no look
    linker.count += 1
    assert not handle.absent()


def test_without_a_load_count_every_look_asks_the_linker():
    linker = Linker(count=None)  # no dl_iterate_phdr here
    handle = DriverHandle(linker.attach, linker.objects_loaded)
    handle.get(), handle.get()
    assert linker.attempts == 2 and not handle.absent()


def test_a_driver_loaded_after_a_miss_is_found(libcuda_path):
    handle = DriverHandle()
    assert handle.get() is None and handle.get() is None
    ctypes.CDLL(str(libcuda_path), mode=os.RTLD_GLOBAL)
    driver = handle.get()
    assert driver is not None and driver.name == str(libcuda_path)
    assert handle.get() is driver  # kept once found
