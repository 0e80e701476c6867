"""Fixtures of the GPU tests; none is autouse, so that the real-GPU tier sees the machine.

Device-facts tests (test_smi, test_facts, test_visibility) use
``no_cached_visibility``; GPU-use tests (test_probes, test_monitor,
test_sessions) use ``isolated_boundaries``; both through ``pytestmark``.
The fake CUDA driver and CUPTI fixtures are in tests/conftest.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gitproof import gpu
from gitproof.gpu import nvml
from gitproof.gpu.driver import ENV_LIBRARY
from tests import nvml_fake
from tests.libcuda_fake import FAKES

FAKE_MODULES = ("torch", "cupy", "pynvml")


@pytest.fixture
def no_cached_visibility(monkeypatch):
    """Each test starts with no NVML (whatever is installed here) and nothing cached."""
    nvml_fake.block(monkeypatch)
    gpu.gpu_visible.cache_clear()
    yield
    gpu.gpu_visible.cache_clear()
    nvml.reset()


@pytest.fixture
def fake_nvml(monkeypatch, tmp_path):
    """fake_nvml(state) puts the fake nvidia-ml-py bindings in place with that machine."""
    def install(state: dict | None) -> None:
        nvml_fake.install(monkeypatch, tmp_path / "nvml.json", state)
    return install


# -- GPU use: the framework, driver and NVML boundaries ------------------------------------

@pytest.fixture
def isolated_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No real driver, NVML off, and no fake module left behind for other tests."""
    monkeypatch.setenv(ENV_LIBRARY, str(tmp_path / "no-libcuda.so"))
    monkeypatch.setenv(nvml.ENV_SWITCH, "off")
    nvml.reset()
    yield
    nvml.reset()
    for name in [n for n in sys.modules if n.split(".")[0] in FAKE_MODULES]:
        if str(getattr(sys.modules[name], "__file__", "")).startswith(str(FAKES)):
            del sys.modules[name]


@pytest.fixture
def fakes_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(FAKES))
    return FAKES


@pytest.fixture
def torch(fakes_path, libcuda_path):
    """The fake torch; initialising its CUDA loads and starts the fake driver, as torch does."""
    import torch

    torch.cuda._fake_configure()
    return torch


@pytest.fixture
def cupy(fakes_path):
    import cupy

    return cupy
