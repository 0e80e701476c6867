"""``--gpu-proof-fail-on-skip`` / ``fail_on_skip``: a skipped GPU test fails the session."""
from __future__ import annotations

import pytest

from gitproof import record
from gitproof.policy import Shard


class SkipGuard:
    """``--gpu-proof-fail-on-skip`` / ``fail_on_skip``: a skipped test fails the session.

    Counts skips of every selected test when recording (``every_test``), and
    of ``gpu_required`` tests always; when recording, also modules skipped
    while being collected (``pytest.importorskip`` at module level), whose
    GPU tests would otherwise vanish from the receipt without a trace.
    Lives on the controller only: xdist forwards the reports it reads.
    """

    def __init__(self, every_test: bool, enabled: bool) -> None:
        self.every_test = every_test
        self.enabled = enabled
        self.shard: Shard | None = None
        self.skipped: dict[str, str] = {}  # node id -> reason
        self.enforced = False  # enforce() has run (the Recorder calls it before its receipt)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail") and (
                self.every_test or "gpu_required" in report.keywords):
            self.skipped.setdefault(report.nodeid, _skip_reason(report))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if not (report.skipped and self.every_test and report.nodeid):
            return
        if self.shard is None or record.may_hold(self.shard.tests, report.nodeid):
            self.skipped.setdefault(report.nodeid, "skipped while collecting: " + _skip_reason(report))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.enforce(session)

    def enforce(self, session: pytest.Session) -> None:
        """Turn a passing session with skips into a failing one (once)."""
        if self.enforced or not self.enabled or not self.skipped:
            return
        self.enforced = True
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not (self.enforced and self.skipped):
            return
        terminalreporter.write_line(
            f"gpu-proof: fail-on-skip: {len(self.skipped)} GPU test(s) skipped, so the session "
            "fails (a receipt records verdict failed):", red=True, bold=True)
        for nodeid, reason in self.skipped.items():
            terminalreporter.write_line(f"  {nodeid}: {reason}", red=True)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, (tuple, list)) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr) if longrepr else "skipped"
