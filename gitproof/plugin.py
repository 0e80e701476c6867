"""The pytest plugin (entry point ``pytest11``), active in every pytest run.

Always: the markers ``gpu_proof`` / ``gpu_equivalence`` / ``gpu_required``
and the ``gpu_proof_check`` fixture. With ``--gpu-proof``: only the marked
tests run (only a shard's, with ``--gpu-proof-shard``), and the session
becomes a signed receipt.

Under pytest-xdist the receipt is made on the controller only: it sees every
test's reports, and the check records of ``gpu_proof_check`` travel inside
them (``user_properties``), so workers never need the recorder. The
per-test GPU-use records (:mod:`gitproof.gpu_use`) travel the same way: the
watcher runs wherever tests run (the controller without xdist, each worker
with it) and appends its record to the test's ``user_properties``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator

import pytest

from gitproof import compat, gpu, record
from gitproof.equivalence import ERROR, FAILED, CheckResult, run_check
from gitproof.policy import Policy, PolicyError, Shard, load_policy
from gitproof.receipt import TestResult
from gitproof.signing import SigningError

if TYPE_CHECKING:  # imported when recording only: every other pytest run skips ctypes
    from gitproof.gpu_use import GpuUseMonitor

PLUGIN_NAME = "gitproof-recorder"
GUARD_NAME = "gitproof-skip-guard"
WATCHER_NAME = "gitproof-gpu-use"
CHECK_PROPERTY = "gpu_proof_check"  # user_properties key of a gpu_proof_check record
GPU_USE_PROPERTY = "gpu_proof_gpu_use"  # user_properties key of a test's GPU-use record


def pytest_addoption(parser: pytest.Parser) -> None:
    try:
        _add_options(parser.getgroup("gpu-proof", "signed GPU-test receipts (gitproof)"))
    except ValueError as exc:  # argparse: another plugin took one of these names
        raise pytest.UsageError(
            f"gpu-proof: {exc}: another pytest plugin defines gitproof's options. pytest-gpu-proof "
            "and git-gpu-proof cannot be installed together; gitproof reads its tests, options and "
            "settings, so remove it: `python -m pip uninstall pytest-gpu-proof`") from None


def _add_options(group: Any) -> None:
    group.addoption("--gpu-proof", "--gpu-proof-enable", action="store_true", default=False,
                    dest="gpu_proof",
                    help="run only the GPU tests and record a signed receipt as a git note "
                         "(--gpu-proof-enable: pytest-gpu-proof's name)")
    group.addoption("--gpu-proof-key", default=None, metavar="KEY",
                    help="signing key (path, .pub with agent, or key::literal); default user.signingKey")
    group.addoption("--gpu-proof-key-env", default=None, metavar="VAR",
                    help="sign with the OpenSSH private key held in environment variable VAR "
                         "(a CI secret); it is written only to a private temporary file while "
                         "signing, and VAR is hidden from the tests")
    group.addoption("--gpu-proof-principal", "--gpu-proof-github-user", default=None, metavar="PRINCIPAL",
                    dest="gpu_proof_principal",
                    help="signer principal recorded in the receipt; default user.email "
                         "(--gpu-proof-github-user: pytest-gpu-proof's name)")
    group.addoption("--gpu-proof-mode", default=None, choices=record.MODES,
                    help="how the run happened: local (a developer's machine, the default) or ci-gpu")
    group.addoption("--gpu-proof-shard", default=None, metavar="NAME",
                    help="run and record one shard of [tool.gpu_proof.shards]: its tests only, "
                         "fingerprinting its paths")
    group.addoption("--gpu-proof-unsigned", action="store_true", default=False,
                    help="dry run: record an UNSIGNED receipt (no key needed); verify rejects it "
                         "unless --allow-unsigned")
    group.addoption("--gpu-proof-signing-backend", default=None, choices=("ed25519", "none"),
                    help="pytest-gpu-proof's option: none is --gpu-proof-unsigned; ed25519 changes "
                         "nothing (ssh-keygen signs with any key type)")
    group.addoption("--gpu-proof-kernels", action="store_true", default=False,
                    help="record per test the GPU kernels the test body launched, and the copies "
                         "and memsets meanwhile, as CUPTI traced them (needs libcupti); also "
                         "[tool.gpu_proof] record_kernels")
    group.addoption("--gpu-proof-fail-on-skip", action="store_true", default=False,
                    help="a skipped GPU test fails the session (with --gpu-proof: any selected "
                         "test; always: any gpu_required test); also [tool.gpu_proof] fail_on_skip")
    group.addoption("--gpu-proof-required-marker", default=None, metavar="NAME",
                    help="the marker of GPU tests for this run; also [tool.gpu_proof] required_marker")
    group.addoption("--gpu-proof-fingerprint-paths", default=None, metavar="PATHS",
                    help="comma-separated fingerprint paths for this run (. is the whole "
                         "repository); verify still checks the policy's fingerprint_paths")
    group.addoption("--gpu-proof-no-gpu-uuid", action="store_true", default=False,
                    help="leave each GPU's UUID out of the receipt; also [tool.gpu_proof] "
                         "include_gpu_uuid = false")
    group.addoption("--gpu-proof-require-gpu", action="store_true", default=False,
                    help="refuse to run unless a GPU is visible; verify's require_gpu checks receipts")
    compat.add_replaced_options(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu_proof: a GPU test that a gitproof receipt covers")
    config.addinivalue_line("markers", "gpu_equivalence: alias of gpu_proof")
    config.addinivalue_line("markers", "gpu_required: skip unless a GPU is visible")
    recording = config.getoption("gpu_proof")
    if recording:  # wherever tests run: here without xdist, in each worker with it
        from gitproof.gpu_use import GpuUseMonitor, default_probes

        probes = default_probes(kernels=_runs_tests_here(config) and _kernels_requested(config))
        config.pluginmanager.register(GpuUseWatcher(GpuUseMonitor(probes)), WATCHER_NAME)
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller records, from the reports workers send it
    if recording or config.getoption("gpu_proof_fail_on_skip"):
        guard = SkipGuard(every_test=recording, enabled=config.getoption("gpu_proof_fail_on_skip"))
        config.pluginmanager.register(guard, GUARD_NAME)
        if recording:
            config.pluginmanager.register(Recorder(config, guard), PLUGIN_NAME)
            from gitproof.collect_errors import NAME, CollectErrors

            config.pluginmanager.register(CollectErrors(), NAME)


def _runs_tests_here(config: pytest.Config) -> bool:
    """False on a pytest-xdist controller, whose workers run every test."""
    if hasattr(config, "workerinput"):
        return True
    try:
        return not config.getoption("numprocesses")
    except ValueError:  # xdist not installed, or switched off
        return True


def _kernels_requested(config: pytest.Config) -> bool:
    """``--gpu-proof-kernels``, or ``record_kernels = true`` in the policy."""
    if config.getoption("gpu_proof_kernels"):
        return True
    try:
        return load_policy(record.open_repository(Path(config.invocation_params.dir))).record_kernels
    except (record.RecordError, PolicyError):
        return False  # the recorder refuses the run, saying why


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("gpu_proof"):
        return
    policy, shard = _selection(config)
    selected = [i for i in items if is_gpu_test(i, policy)
                and (shard is None or record.selects(shard.tests, i.nodeid))]
    chosen = {id(i) for i in selected}
    deselected = [i for i in items if id(i) not in chosen]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
    if not selected and not hasattr(config, "workerinput"):
        names = " or ".join(f"@pytest.mark.{m}" for m in policy.markers)
        names += ", using gpu_proof_check" + (", or under gpu_tests" if policy.gpu_tests else "")
        where = f" in shard {shard.name!r} ({_selectors(shard)})" if shard else ""
        raise pytest.UsageError(f"gpu-proof: no test marked {names}{where} was collected; "
                                "mark your GPU tests, or check the test paths. Nothing recorded.")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu_required") and not gpu.gpu_visible():
        pytest.skip("gpu_required: no GPU visible")


@pytest.fixture
def gpu_proof_check(request: pytest.FixtureRequest) -> Callable[..., CheckResult]:
    """``gpu_proof_check(name, reference, candidate, ...)``: compare, record, fail unless passed.

    The record goes into the test's ``user_properties``, which every report of
    the test carries (to the xdist controller too); the recorder reads it there.
    docs/comparator.md is the contract.
    """

    def check(name: str, reference: Callable[..., Any], candidate: Callable[..., Any],
              args: tuple = (), kwargs: dict[str, Any] | None = None,
              compare: Callable[[Any, Any], Any] | None = None,
              metadata: dict[str, Any] | None = None,
              rtol: float = 1e-5, atol: float = 1e-8) -> CheckResult:
        __tracebackhide__ = True
        result = run_check(name, reference, candidate, args, kwargs, compare, metadata, rtol, atol)
        entry = result.to_record(request.node.nodeid, rtol, atol)
        request.node.user_properties.append((CHECK_PROPERTY, entry))
        if result.outcome == FAILED:
            pytest.fail(f"gpu_proof_check {name!r} mismatch: {result.message}", pytrace=False)
        if result.outcome == ERROR:  # the user's own traceback follows, as the cause
            raise pytest.fail.Exception(f"gpu_proof_check {name!r} error: {result.message}") \
                from result.exception
        return result

    return check


_CHECKS_SEEN = pytest.StashKey[int]()  # how many of the item's check records earlier reports saw


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    """A check that did not pass fails its test even when the test caught the failure.

    Outermost, so it sees the report as xfail handling left it. Only the checks
    made in this phase count: a phase that failed already was failed by them.
    """
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    records = [value for key, value in getattr(item, "user_properties", ()) if key == CHECK_PROPERTY]
    new = records[item.stash.get(_CHECKS_SEEN, 0):]
    item.stash[_CHECKS_SEEN] = len(records)
    unpassed = [r for r in new if r.get("outcome") in (FAILED, ERROR)]
    expected_failure = report.skipped and hasattr(report, "wasxfail")
    if unpassed and not report.failed and not expected_failure:
        _fail_for_checks(report, unpassed)


def _fail_for_checks(report: pytest.TestReport, unpassed: list[dict[str, Any]]) -> None:
    report.outcome = "failed"
    if hasattr(report, "wasxfail"):  # an xpass: the check failed, so it did not pass
        del report.wasxfail
    lines = [f"gpu_proof_check {r.get('name')!r} {r.get('outcome')}: {r.get('message', '')}" for r in unpassed]
    report.longrepr = "\n".join(lines + ["(a check that did not pass fails its test, even when the test "
                                         "catches the exception and goes on)"])


def is_gpu_test(item: pytest.Item, policy: Policy) -> bool:
    """Marked, using ``gpu_proof_check`` (as pytest-gpu-proof selects), or under ``gpu_tests``."""
    return (any(item.get_closest_marker(m) for m in policy.markers)
            or "gpu_proof_check" in getattr(item, "fixturenames", ())
            or policy.is_gpu_test(item.nodeid))


def _selection(config: pytest.Config) -> tuple[Policy, Shard | None]:
    """The policy that says what a GPU test is, and the shard whose tests alone run
    (None: all GPU tests)."""
    recorder: Recorder | None = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if recorder is not None and recorder.recording is not None:
        return recorder.recording.policy, recorder.recording.shard
    options = record_options(config)
    try:  # an xdist worker: no recorder here, read the policy itself
        policy = load_policy(record.open_repository(Path(config.invocation_params.dir)))
        policy = policy.overridden(options.overrides(), "command line")
    except (record.RecordError, PolicyError) as exc:
        if options.shard is not None:  # the controller refused already; never run more than the shard
            raise pytest.UsageError(f"gpu-proof: {exc}. Nothing recorded.") from exc
        return Policy(), None
    name = options.shard
    if name is not None and name not in policy.shards:
        raise pytest.UsageError(f"gpu-proof: unknown shard {name!r}. Nothing recorded.")
    return policy, policy.shards.get(name) if name is not None else None


def _selectors(shard: Shard) -> str:
    return "tests " + ", ".join(shard.tests) if shard.tests else "all marked tests"


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
    )


class Recorder:
    """Collects per-test reports and turns the session into a receipt."""

    def __init__(self, config: pytest.Config, guard: "SkipGuard | None" = None) -> None:
        self.config = config
        self.guard = guard
        self.recording: record.Recording | None = None
        self.reports: dict[str, dict[str, pytest.TestReport]] = {}
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
        if key_env and key_env in os.environ:  # the key is in memory now: hide it from the
            self._hidden = (key_env, os.environ.pop(key_env))  # tests and xdist workers
        if self.guard is not None:
            self.guard.shard = self.recording.shard
            self.guard.enabled = self.guard.enabled or self.recording.policy.fail_on_skip

    def pytest_unconfigure(self) -> None:
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
        policy_notes = list(self.recording.policy.notes) if self.recording else []
        return policy_notes + compat.replaced_option_notes(self.config.getoption)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reports.setdefault(report.nodeid, {})[report.when] = report

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
        records = []
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

    def pytest_terminal_summary(self, terminalreporter) -> None:
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
            from gitproof.gpu_use import summarize

            terminalreporter.write_line(f"gpu-proof: {summarize(self.gpu_uses())}")


UNSIGNED_NOTE = ("gpu-proof: NOTE: UNSIGNED dry run -- this receipt carries no signature and "
                 "vouches for nothing; `git gpu-proof verify` rejects it unless --allow-unsigned "
                 "(or allow_unsigned = true). Run again without --unsigned to make a real receipt.")


class GpuUseWatcher:
    """Watches each test's call phase (its own body) for GPU use.

    Only the call phase: a fixture shared by several tests (a session warm-up
    that allocates, say) would otherwise count for whichever test set it up
    first. The record is put into ``user_properties`` after the teardown, as
    the only GPU-use record of the test, so it reaches the recorder in the
    teardown report (from an xdist worker too); a rerun of the test (e.g.
    pytest-rerunfailures) replaces the earlier attempt's record.
    """

    def __init__(self, monitor: GpuUseMonitor) -> None:
        self.monitor = monitor
        self.made: dict[str, dict[str, Any]] = {}

    def pytest_unconfigure(self) -> None:
        self.monitor.close()  # CUPTI must stop calling back before the interpreter goes

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, None]:
        self.made.pop(item.nodeid, None)  # a new run of the test starts
        yield

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        self.monitor.start(item.nodeid)
        yield
        self.made[item.nodeid] = self.monitor.stop(item.nodeid).to_dict()

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, Any, None]:
        yield
        record = self.made.pop(item.nodeid, None) or _body_never_ran(item.nodeid)
        item.user_properties[:] = [(k, v) for k, v in item.user_properties if k != GPU_USE_PROPERTY]
        item.user_properties.append((GPU_USE_PROPERTY, record))


def _body_never_ran(nodeid: str) -> dict[str, Any]:
    from gitproof.gpu_use import GpuUse

    return GpuUse(nodeid, None, None, "the test body did not run (skipped or failed in setup)").to_dict()


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

    def pytest_terminal_summary(self, terminalreporter) -> None:
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
    scope = f" for shard {receipt.shard}" if receipt.shard else ""
    who = (f"UNSIGNED (principal {receipt.signer})" if outcome.signed.unsigned
           else f"signed by {receipt.signer}")
    return f"gpu-proof: receipt {receipt.verdict} ({counts}){scope} {who} -> {where}"
