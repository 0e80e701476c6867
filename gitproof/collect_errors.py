"""Test modules that fail to collect stop a recording run, saying which and why.

Without this, a GPU test module that cannot be imported (``import torch`` in
an environment without torch) simply contributes no test, and the run ends
with the misleading "no test marked gpu_proof was collected". Registered by
the plugin on the controller of a ``--gpu-proof`` run; it runs before the
marker selection and interrupts the session (exit status 2, as plain pytest
does for collection errors) naming each module and its error. Under
pytest-xdist, whose workers collect and whose controller would otherwise run
the rest (recording a failed receipt), the controller stops as soon as a
worker reports such an error. With ``--continue-on-collection-errors`` the
run goes on, as asked.
"""
from __future__ import annotations

import re
from typing import Any

import pytest

NAME = "gitproof-collect-errors"
_SHOWN = 5
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?::\s|$)")  # "pkg.SomeError: ..."


class CollectErrors:
    """Remembers failed collection reports; interrupts the session before selection."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}  # node id -> the error in one line
        self.config: pytest.Config | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.failed.setdefault(report.nodeid or ".", error_line(report))

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config) -> None:
        if self._stops(config):
            raise session.Interrupted(self.message())

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """On an xdist controller: stop, the way xdist stops for -x, before tests are sent out."""
        if self.config is None:
            return
        dsession = self.config.pluginmanager.getplugin("dsession")
        if dsession is not None and self._stops(self.config) and not dsession.shouldstop:
            dsession.shouldstop = self.message()

    def _stops(self, config: pytest.Config) -> bool:
        return bool(self.failed) and not config.getoption("continue_on_collection_errors", False)

    def message(self) -> str:
        names = list(self.failed.items())
        shown = "; ".join(f"{nodeid}: {error}" for nodeid, error in names[:_SHOWN])
        more = f"; and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
        return (f"gpu-proof: {len(names)} test module(s) failed to collect, so their tests cannot be "
                f"run or recorded: {shown}{more}. Fix them (or install what they import in this "
                "environment) and run again. Nothing recorded.")


def error_line(report: pytest.CollectReport) -> str:
    """The exception of a collection error in one line.

    For example "ModuleNotFoundError: No module named 'torch'": the last line of
    the error that names an exception, not pytest's "ImportError while importing".
    """
    text = str(report.longrepr or "").strip()
    marked = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    exceptions = [line for line in marked if _EXCEPTION_LINE.match(line)]
    if exceptions:
        return exceptions[-1]
    lines = marked or [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "collection error"
