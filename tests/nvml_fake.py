"""Driving the fake NVML bindings (``tests/fakes/pynvml.py``) from tests.

The state builders write the JSON the fake reads at ``nvmlInit``. ``install``
makes ``import pynvml`` find the fake for one test; ``block`` makes it fail as
on a machine without nvidia-ml-py, whatever the developer has installed. Both
go through ``monkeypatch``, so the original ``sys.modules`` entry comes back
afterwards; call ``gitproof.gpu.nvml.reset()`` after the test too, as the adapter
caches its ``nvmlInit``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gitproof.gpu import nvml

FAKES = Path(__file__).parent / "fakes"
MIB = 1024 * 1024
H100_UUID = "GPU-11111111-2222-3333-4444-555555555555"


def device(name: str = "NVIDIA H100 80GB HBM3", uuid: str = H100_UUID,
           bus_id: str = "00000000:18:00.0", memory_mib: int = 81559,
           capability: tuple[int, int] = (9, 0), **extra: Any) -> dict[str, Any]:
    """One GPU; ``extra`` adds fake keys such as ``mig_mode``, ``processes``, ``errors``."""
    return {"name": name, "uuid": uuid, "pci_bus_id": bus_id,
            "memory_total": memory_mib * MIB, "compute_capability": list(capability),
            "mig_mode": [0, 0], **extra}


def machine(*devices: dict[str, Any], **system: Any) -> dict[str, Any]:
    """A machine with a 550 driver, CUDA 12.4 and confidential computing in production."""
    return {"driver_version": "550.54.15", "cuda_driver_version": 12040,
            "conf_compute": {"environment": 2, "ccFeature": 1, "devToolsMode": 0},
            "devices": list(devices), **system}


def write(path: Path, state: dict[str, Any]) -> Path:
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


def _drop_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take pynvml out of sys.modules; setitem first so that undo restores the original."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    del sys.modules["pynvml"]


def block(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import pynvml`` raises ImportError for this test (None in sys.modules does that)."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.delenv(nvml.ENV_SWITCH, raising=False)
    nvml.reset()


def install(monkeypatch: pytest.MonkeyPatch, path: Path, state: dict[str, Any] | None) -> None:
    """The fake answers ``import pynvml`` with ``state`` (None: no driver) for this test."""
    monkeypatch.syspath_prepend(str(FAKES))
    _drop_module(monkeypatch)
    monkeypatch.delenv(nvml.ENV_SWITCH, raising=False)
    if state is None:
        monkeypatch.delenv("GITPROOF_FAKE_NVML", raising=False)
    else:
        monkeypatch.setenv("GITPROOF_FAKE_NVML", str(write(path, state)))
    nvml.reset()


def module() -> ModuleType:
    """The fake as this process imported it, to read its ``calls``."""
    return sys.modules["pynvml"]


def child_env(state_path: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child Python that should import the fake with this state."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKES), env.get("PYTHONPATH")]))
    env["GITPROOF_FAKE_NVML"] = str(state_path)
    env.pop(nvml.ENV_SWITCH, None)
    return env
