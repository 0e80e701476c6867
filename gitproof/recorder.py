"""The recording side of the plugin: one pytest session becomes one signed receipt.

``Recorder`` lives on the process that sees every report (the controller under
pytest-xdist). It fixes everything before the first test (``record.prepare``),
collects the reports and the records tests carry in ``user_properties``, and
at the end hands them to ``record.finish``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from gitproof import compat, record
from gitproof.policy import PolicyError
from gitproof.receipt import TestResult
from gitproof.signing import SigningError
from gitproof.skips import SkipGuard

CHECK_PROPERTY = "gpu_proof_check"  # user_properties key of a gpu_proof_check record
GPU_USE_PROPERTY = "gpu_proof_gpu_use"  # user_properties key of a test's GPU-use record


class Phase(NamedTuple):
    """What the receipt reads of one phase's report.

    The recorder keeps one for every phase of every test; whole reports
    (keywords, captured output) held for a 5,000-test session cost it a
    tenth of a second more in garbage collections and at exit. A tuple of
    plain values, as most are, is one the collector stops tracking.
    """

    outcome: str
    duration: float
    xfail: bool  # the report has ``wasxfail``
    user_properties: Sequence[tuple[str, Any]]  # (): none, most setup and call reports

    @classmethod
    def of(cls, report: pytest.TestReport) -> Phase:
        return cls(report.outcome, report.duration, hasattr(report, "wasxfail"), report.user_properties or ())

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"

    @property
    def skipped(self) -> bool:
        return self.outcome == "skipped"


def outcome_of(reports: Mapping[str, Phase]) -> str:
    """One outcome per test; setup or teardown failures count as errors."""
    setup, call, teardown = reports.get("setup"), reports.get("call"), reports.get("teardown")
    outcome = "error"
    if setup is not None and setup.failed:
        outcome = "error"
    elif setup is not None and setup.skipped:
        outcome = "xfailed" if setup.xfail else "skipped"
    elif call is not None:
        if call.failed:
            outcome = "failed"
        elif call.skipped:
            outcome = "xfailed" if call.xfail else "skipped"
        else:
            outcome = "xpassed" if call.xfail else "passed"
    if teardown is not None and teardown.failed:
        outcome = "error"
    return outcome


def unsigned_requested(config: pytest.Config) -> bool:
    return bool(config.getoption("gpu_proof_unsigned")) or config.getoption("gpu_proof_signing_backend") == "none"


def record_options(config: pytest.Config) -> record.RecordOptions:
    paths = config.getoption("gpu_proof_fingerprint_paths")
    return record.RecordOptions(
        key=config.getoption("gpu_proof_key"),
        principal=config.getoption("gpu_proof_principal"),
        mode=config.getoption("gpu_proof_mode"),
        key_env=config.getoption("gpu_proof_key_env"),
        unsigned=unsigned_requested(config),
        shard=config.getoption("gpu_proof_shard"),
        fingerprint_paths=compat.split_paths(paths) if paths is not None else None,
        required_marker=config.getoption("gpu_proof_required_marker"),
        include_gpu_uuid=False if config.getoption("gpu_proof_no_gpu_uuid") else None,
        require_gpu=config.getoption("gpu_proof_require_gpu"),
        attest=config.getoption("gpu_proof_attest"),
    )


def _refuse_foreign_rootdir(rootpath: Path, workdir: str | None) -> None:
    """Node ids are relative to pytest's rootdir; one outside the repository would give the
    receipt node ids no policy (required_tests, expected_skips, gpu_tests) can match."""
    if workdir is None or rootpath.resolve().is_relative_to(Path(workdir).resolve()):
        return
    raise pytest.UsageError(
        f"gpu-proof: pytest chose {rootpath} as its rootdir, outside the repository {workdir}, so node "
        "ids would not match the repository's paths. A path given as an option's value after a space "
        "(`--gpu-proof-key PATH`) counts as a test path for pytest: write `--gpu-proof-key=PATH`, or pass "
        "`--rootdir=.` from the repository root. Nothing recorded.")


class Recorder:
    """Collects per-test reports and turns the session into a receipt."""

    def __init__(self, config: pytest.Config, guard: "SkipGuard | None" = None) -> None:
        self.config = config
        self.guard = guard
        self.recording: record.Recording | None = None
        self.reports: dict[str, dict[str, Phase]] = {}
        self.outcome: record.RecordOutcome | None = None
        self.error: str | None = None
        self._hidden: tuple[str, str] | None = None  # the key variable, kept from the tests

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        key_env = self.config.getoption("gpu_proof_key_env")
        options = record_options(self.config)
        try:
            self.recording = record.prepare(Path(self.config.invocation_params.dir), options)
        except (record.RecordError, SigningError, PolicyError) as exc:
            raise pytest.UsageError(f"gpu-proof: {exc}. Nothing recorded.") from exc
        _refuse_foreign_rootdir(self.config.rootpath, self.recording.repo.workdir)
        if key_env and key_env in os.environ:  # the key is in memory now: hide it from the
            self._hidden = (key_env, os.environ.pop(key_env))  # tests and xdist workers
        if self.guard is not None:
            self.guard.shard = self.recording.shard
            self.guard.enabled = self.guard.enabled or self.recording.policy.fail_on_skip

    def pytest_unconfigure(self) -> None:
        self.reports.clear()  # now, not while the interpreter shuts down: its collections would walk them
        if self._hidden is not None:
            name, value = self._hidden
            os.environ[name] = value
            self._hidden = None

    def pytest_report_header(self) -> list[str]:
        if unsigned_requested(self.config):
            return [UNSIGNED_NOTE]
        return []

    def notes(self) -> list[str]:
        """Warnings about pytest-gpu-proof settings and options this run ignores."""
        recorded = [*self.recording.policy.notes, *self.recording.notes] if self.recording else []
        return recorded + compat.replaced_option_notes(self.config.getoption)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, {})[report.when] = Phase.of(report)

    def _records(self, property_key: str) -> list[Any]:
        """The records under ``property_key``, in test order, from each test's last report.

        Every report carries all records made so far, so the last one has
        them all, and nothing is counted twice.
        """
        records = []
        for phases in self.reports.values():
            last = phases.get("teardown") or phases.get("call") or phases.get("setup")
            if last is not None:
                records += [value for key, value in last.user_properties if key == property_key]
        return records

    def checks(self) -> list[dict[str, Any]]:
        """The gpu_proof_check records, in test order."""
        return self._records(CHECK_PROPERTY)

    def gpu_uses(self) -> list[dict[str, Any]]:
        """The GPU-use records (``GpuUse.to_dict()``), one per test that ran, in test order:
        the last record of each test (the watcher leaves exactly one)."""
        records: list[Any] = []
        for phases in self.reports.values():
            teardown = phases.get("teardown")  # the watcher's record is final only there
            if teardown is not None:
                records += [value for key, value in teardown.user_properties if key == GPU_USE_PROPERTY][-1:]
        return records

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.recording is None:
            return
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            self.error = "run interrupted; no receipt recorded"
            return
        tests = [TestResult(nodeid, outcome_of(phases), round(sum(r.duration for r in phases.values()), 3))
                 for nodeid, phases in self.reports.items()]
        if not tests:
            self.error = "no GPU-marked test ran; no receipt recorded"
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        if self.guard is not None:
            self.guard.enforce(session)  # a skip fails the session, so the receipt says failed
        try:
            self.outcome = record.finish(self.recording, tests, int(session.exitstatus),
                                         list(self.config.invocation_params.args), self.checks(),
                                         gpu_uses=self.gpu_uses())
        except (record.RecordError, SigningError) as exc:
            self.error = f"{exc}"
            if session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        except KeyboardInterrupt:
            self.error = "interrupted while signing; no receipt recorded, notes untouched"
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        except Exception as exc:  # a bug must not cost the user their test output
            self.error = f"internal error while recording ({exc!r}); no receipt recorded"
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for note in self.notes():
            terminalreporter.write_line(f"gpu-proof: warning: {note}", yellow=True)
        if self.error:
            terminalreporter.write_line(f"gpu-proof: {self.error}", red=True, bold=True)
        elif self.outcome:
            terminalreporter.write_line(describe_outcome(self.outcome),
                                        green=self.outcome.signed.receipt.verdict == "passed")
            if self.outcome.signed.unsigned:
                terminalreporter.write_line(UNSIGNED_NOTE, yellow=True, bold=True)
        if self.recording is not None and self.reports:
            from gitproof.gpu.monitor import summarize

            terminalreporter.write_line(f"gpu-proof: {summarize(self.gpu_uses())}")


UNSIGNED_NOTE = ("gpu-proof: NOTE: UNSIGNED dry run -- this receipt carries no signature and "
                 "vouches for nothing; `git gpu-proof verify` rejects it unless --allow-unsigned "
                 "(or allow_unsigned = true). Run again without --unsigned to make a real receipt.")


def describe_outcome(outcome: record.RecordOutcome) -> str:
    receipt = outcome.signed.receipt
    counts = ", ".join(f"{n} {k}" for k, n in receipt.counts.items() if n)
    if outcome.stored_as == "note":
        where = (f"note on {outcome.location[:10]} (refs/notes/gpu-proof)" if outcome.added
                 else f"identical receipt already on {outcome.location[:10]}")
    else:
        where = (f"pending receipt {outcome.location.rsplit('/', 1)[-1][:10]}: the working tree "
                 "differs from HEAD under the fingerprint paths; it will attach to the commit "
                 "that records this content (see `git gpu-proof status`)")
    if outcome.attestation:
        where += (f"; in-toto attestation -> {outcome.attestation}" if outcome.stored_as == "note"
                  else "; its in-toto attestation waits with it")
    scope = f" for shard {receipt.shard}" if receipt.shard else ""
    who = (f"UNSIGNED (principal {receipt.signer})" if outcome.signed.unsigned
           else f"signed by {receipt.signer}")
    return f"gpu-proof: receipt {receipt.verdict} ({counts}){scope} {who} -> {where}"
