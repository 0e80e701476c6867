"""gitproof.gpu.loader: the dynamic linker's count of loaded objects, which tells the
driver probe when asking for libcuda again could find it."""
from __future__ import annotations

import ctypes
import os
import sys

import pytest

from gitproof.gpu import loader
from gitproof.gpu.loader import LoadCounter, objects_loaded
from tests.libcuda_fake import fresh_copy

needs_linker_count = pytest.mark.skipif(objects_loaded() is None, reason="no dl_iterate_phdr here")


@needs_linker_count
def test_the_count_stands_still_while_nothing_is_loaded():
    first = objects_loaded()
    sum(range(1000))
    assert objects_loaded() == first


@needs_linker_count
def test_loading_a_library_moves_the_count(built_libcuda, tmp_path):
    before = objects_loaded()
    ctypes.CDLL(str(fresh_copy(built_libcuda, tmp_path)), mode=os.RTLD_LOCAL)
    assert objects_loaded() > before


@needs_linker_count
def test_no_python_code_runs_while_the_linker_holds_its_lock():
    """The callback is libc's memmove, not a Python function: a thread switch or a signal
    handler there could deadlock with a thread importing an extension module."""
    counter = LoadCounter()
    entered: list[str] = []
    sys.setprofile(lambda frame, event, arg: entered.append(frame.f_code.co_name) if event == "call" else None)
    try:
        counter()
    finally:
        sys.setprofile(None)
    assert entered == ["__call__"]


def test_no_count_without_dl_iterate_phdr(monkeypatch):
    def no_libc(name):
        raise OSError("no such library")

    monkeypatch.setattr(ctypes, "PyDLL", no_libc)
    assert LoadCounter()() is None


def test_no_count_when_the_linker_record_is_not_the_expected_size(monkeypatch):
    monkeypatch.setattr(loader, "_record_size", lambda iterate: 10 * loader._ROOM)
    assert LoadCounter()() is None
