"""The machine's GPUs for a receipt: the first source that answers, with visibility.

:func:`detect_facts` asks the sources (:mod:`gitproof.gpu.sources`) in
order, marks each device visible or not under ``CUDA_VISIBLE_DEVICES``
(:mod:`gitproof.gpu.visibility`), and hides UUIDs when the repository opts
out of them.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from gitproof.gpu.records import GpuDevice, GpuFacts
from gitproof.gpu.sources import SOURCES, Answer
from gitproof.gpu.visibility import ENV_VISIBLE, redact_uuids, select


def _facts(answer: Answer, environ: Mapping[str, str], include_uuid: bool,
           notes: list[str]) -> GpuFacts:
    value = environ.get(ENV_VISIBLE)
    devices = answer.devices
    if answer.source != "torch":
        selection = select(value, answer, environ)
        devices = [replace(device, visible=selection.flag(device)) for device in devices]
    if not include_uuid:
        devices = [replace(device, uuid=None) for device in devices]
        value = redact_uuids(value)
    devices = sorted(devices, key=lambda device: device.index)
    return GpuFacts(answer.source, devices, answer.confidential_computing, value, notes)


def detect_facts(include_uuid: bool = True, environ: Mapping[str, str] | None = None,
                 import_torch: bool = True) -> GpuFacts:
    """The machine's GPUs from the first source that answers (NVML, nvidia-smi, torch).

    ``environ`` (default ``os.environ``) supplies ``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER`` and ``GITPROOF_NVIDIA_SMI`` as the tests saw them;
    ``GITPROOF_NVML`` is read from the process environment by :mod:`gitproof.gpu.nvml`.
    torch is imported only when ``import_torch`` or when it already is.
    """
    environ = os.environ if environ is None else environ
    notes: list[str] = []
    for source in SOURCES:
        answer = source(environ, import_torch)
        if isinstance(answer, str):
            notes.append(answer)
            continue
        return _facts(answer, environ, include_uuid, notes)
    visible = environ.get(ENV_VISIBLE)
    return GpuFacts("none", [], None, visible if include_uuid else redact_uuids(visible), notes)


def summary(devices: list[GpuDevice]) -> str:
    """``"NVIDIA H100 80GB HBM3"``, ``"2x NVIDIA A100-SXM4-80GB"``, mixed joined by ", "."""
    if not devices:
        return "none"
    counts = Counter(device.name for device in devices)
    return ", ".join(name if n == 1 else f"{n}x {name}" for name, n in counts.items())
