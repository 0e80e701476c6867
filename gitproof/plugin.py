"""The pytest plugin (entry point ``pytest11``), active in every pytest run.

Always: the markers ``gpu_proof`` / ``gpu_equivalence`` / ``gpu_required``
and the ``gpu_proof_check`` fixture. With ``--gpu-proof``: only the marked
tests run, and the session becomes a signed receipt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from gitproof import gpu, record
from gitproof.equivalence import run_check
from gitproof.policy import PolicyError, load_policy
from gitproof.receipt import TestResult
from gitproof.signing import SigningError

PLUGIN_NAME = "gitproof-recorder"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpu-proof", "signed GPU-test receipts (gitproof)")
    group.addoption("--gpu-proof", action="store_true", default=False,
                    help="run only GPU-marked tests and record a signed receipt as a git note")
    group.addoption("--gpu-proof-key", default=None, metavar="KEY",
                    help="signing key (path, .pub with agent, or key::literal); default user.signingKey")
    group.addoption("--gpu-proof-principal", default=None, metavar="PRINCIPAL",
                    help="signer principal recorded in the receipt; default user.email")
    group.addoption("--gpu-proof-mode", default="local", choices=record.MODES,
                    help="how the run happened: local (a developer's machine) or ci-gpu")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu_proof: a GPU test that a gitproof receipt covers")
    config.addinivalue_line("markers", "gpu_equivalence: alias of gpu_proof")
    config.addinivalue_line("markers", "gpu_required: skip unless a GPU is visible")
    if config.getoption("gpu_proof") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Recorder(config), PLUGIN_NAME)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("gpu_proof"):
        return
    markers = _markers(config)
    selected = [i for i in items if any(i.get_closest_marker(m) for m in markers)]
    deselected = [i for i in items if i not in selected]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
    if not selected and not hasattr(config, "workerinput"):
        names = " or ".join(f"@pytest.mark.{m}" for m in markers)
        raise pytest.UsageError(f"gpu-proof: no test marked {names} was collected; "
                                "mark your GPU tests, or check the test paths. Nothing recorded.")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu_required") and not gpu.gpu_visible():
        pytest.skip("gpu_required: no GPU visible")


@pytest.fixture
def gpu_proof_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``gpu_proof_check(name, reference, candidate, ...)``: compare, record, fail on mismatch."""
    recorder: Recorder | None = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    checks = request.node.stash.setdefault(_CHECKS_KEY, [])

    def check(name: str, reference: Callable[..., Any], candidate: Callable[..., Any],
              args: tuple = (), kwargs: dict[str, Any] | None = None,
              compare: Callable[[Any, Any], bool] | None = None,
              metadata: dict[str, Any] | None = None,
              rtol: float = 1e-5, atol: float = 1e-8):
        result = run_check(name, reference, candidate, args, kwargs, compare, metadata, rtol, atol)
        entry = result.to_record(request.node.nodeid, rtol, atol)
        checks.append(entry)
        if recorder is not None:
            recorder.checks.append(entry)
        if not result.ok:
            pytest.fail(f"gpu_proof_check {name!r} mismatch: {result.detail}", pytrace=False)
        return result

    return check


_CHECKS_KEY = pytest.StashKey[list]()


def _markers(config: pytest.Config) -> tuple[str, ...]:
    recorder: Recorder | None = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if recorder is not None and recorder.recording is not None:
        return recorder.recording.policy.markers
    try:  # an xdist worker: no recorder here, read the policy itself
        return load_policy(record.open_repository(Path(config.invocation_params.dir))).markers
    except (record.RecordError, PolicyError):
        return ("gpu_proof", "gpu_equivalence")


def outcome_of(reports: dict[str, pytest.TestReport]) -> str:
    """One outcome per test; setup or teardown failures count as errors."""
    setup, call, teardown = reports.get("setup"), reports.get("call"), reports.get("teardown")
    outcome = "error"
    if setup is not None and setup.failed:
        outcome = "error"
    elif setup is not None and setup.skipped:
        outcome = "xfailed" if hasattr(setup, "wasxfail") else "skipped"
    elif call is not None:
        if call.failed:
            outcome = "failed"
        elif call.skipped:
            outcome = "xfailed" if hasattr(call, "wasxfail") else "skipped"
        else:
            outcome = "xpassed" if hasattr(call, "wasxfail") else "passed"
    if teardown is not None and teardown.failed:
        outcome = "error"
    return outcome


class Recorder:
    """Collects per-test reports and turns the session into a receipt."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.recording: record.Recording | None = None
        self.reports: dict[str, dict[str, pytest.TestReport]] = {}
        self.checks: list[dict[str, Any]] = []
        self.outcome: record.RecordOutcome | None = None
        self.error: str | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        options = record.RecordOptions(
            key=self.config.getoption("gpu_proof_key"),
            principal=self.config.getoption("gpu_proof_principal"),
            mode=self.config.getoption("gpu_proof_mode"),
        )
        try:
            self.recording = record.prepare(Path(self.config.invocation_params.dir), options)
        except (record.RecordError, SigningError, PolicyError) as exc:
            raise pytest.UsageError(f"gpu-proof: {exc}. Nothing recorded.") from exc

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, {})[report.when] = report

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
        try:
            self.outcome = record.finish(self.recording, tests, int(exitstatus),
                                         list(self.config.invocation_params.args), self.checks)
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

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.error:
            terminalreporter.write_line(f"gpu-proof: {self.error}", red=True, bold=True)
        elif self.outcome:
            terminalreporter.write_line(describe_outcome(self.outcome),
                                        green=self.outcome.signed.receipt.verdict == "passed")


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
    return f"gpu-proof: receipt {receipt.verdict} ({counts}) signed by {receipt.signer} -> {where}"
