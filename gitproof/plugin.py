"""The pytest plugin (entry point ``pytest11``), active in every pytest run.

Always: the markers ``gpu_proof`` / ``gpu_equivalence`` / ``gpu_required``
and the ``gpu_proof_check`` fixture. With ``--gpu-proof``: only the marked
tests run (only a shard's, with ``--gpu-proof-shard``), and the session
becomes a signed receipt.

Under pytest-xdist the receipt is made on the controller only: it sees every
test's reports, and the check records of ``gpu_proof_check`` travel inside
them (``user_properties``), so workers never need the recorder. The
per-test GPU-use records (:mod:`gitproof.gpu.monitor`) travel the same way: the
watcher runs wherever tests run (the controller without xdist, each worker
with it) and appends its record to the test's ``user_properties``.
"""
from __future__ import annotations

import importlib.util

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator

import pytest

from gitproof import compat, gpu, record
from gitproof.equivalence import ERROR, FAILED, CheckResult, run_check
from gitproof.policy import Policy, PolicyError, Shard, load_policy, selects
from gitproof.receipt import MODES
from gitproof.recorder import CHECK_PROPERTY, GPU_USE_PROPERTY, Recorder, record_options
from gitproof.skips import SkipGuard

if TYPE_CHECKING:  # imported when recording only: every other pytest run skips ctypes
    from gitproof.gpu.monitor import GpuUseMonitor

PLUGIN_NAME = "gitproof-recorder"
GUARD_NAME = "gitproof-skip-guard"
WATCHER_NAME = "gitproof-gpu-use"


def pytest_addoption(parser: pytest.Parser) -> None:
    if importlib.util.find_spec("pytest_gpu_proof") is not None:  # whichever plugin loads first
        raise pytest.UsageError(_BOTH_PLUGINS)
    try:
        _add_options(parser.getgroup("gpu-proof", "signed GPU-test receipts (gitproof)"))
    except ValueError as exc:  # argparse: another plugin took one of these names
        raise pytest.UsageError(f"gpu-proof: {exc}: another pytest plugin defines gitproof's options. "
                                + _BOTH_PLUGINS) from None


_BOTH_PLUGINS = ("pytest-gpu-proof and git-gpu-proof cannot be installed together: both define the "
                 "gpu_proof_check fixture and the --gpu-proof-* options. gitproof reads pytest-gpu-proof's "
                 "tests, options and settings, so remove it: `python -m pip uninstall pytest-gpu-proof`")


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
    group.addoption("--gpu-proof-mode", default=None, choices=MODES,
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
    group.addoption("--gpu-proof-attest", action="store_const", const=True, default=None,
                    dest="gpu_proof_attest",
                    help="also sign a DSSE envelope over the receipt's in-toto statement with the same "
                         "key (its private key must be loadable here, not only in ssh-agent) and store "
                         "it in refs/notes/gpu-proof-attestations; also [tool.gpu_proof] attest")
    group.addoption("--gpu-proof-no-attest", action="store_const", const=False, dest="gpu_proof_attest",
                    help="no DSSE envelope for this run, whatever [tool.gpu_proof] attest says")
    compat.add_replaced_options(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu_proof: a GPU test that a gitproof receipt covers")
    config.addinivalue_line("markers", "gpu_equivalence: alias of gpu_proof")
    config.addinivalue_line("markers", "gpu_required: skip unless a GPU is visible")
    recording = config.getoption("gpu_proof")
    if recording:  # wherever tests run: here without xdist, in each worker with it
        from gitproof.gpu.monitor import GpuUseMonitor, default_probes

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
                and (shard is None or selects(shard.tests, i.nodeid))]
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A new attempt of the test (pytest-rerunfailures) starts with no check records: only the
    attempt pytest reports counts, as its GPU-use record does."""
    item.user_properties[:] = [(k, v) for k, v in item.user_properties if k != CHECK_PROPERTY]
    item.stash[_CHECKS_SEEN] = 0
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
              args: tuple[Any, ...] | None = (), kwargs: dict[str, Any] | None = None,
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
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
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


class GpuUseWatcher:
    """Watches each test's call phase (its own body) for GPU use.

    Only the call phase: a fixture shared by several tests (a session warm-up
    that allocates, say) would otherwise count for whichever test set it up
    first. The record is put into ``user_properties`` after the teardown, as
    the only GPU-use record of the test, so it reaches the recorder in the
    teardown report (from an xdist worker too); a rerun of the test (e.g.
    pytest-rerunfailures) replaces the earlier attempt's record. The teardown
    always runs after the body, so it takes the body's record out of
    ``made``, and a rerun starts with none.
    """

    def __init__(self, monitor: GpuUseMonitor) -> None:
        self.monitor = monitor
        self.made: dict[str, dict[str, Any]] = {}

    def pytest_unconfigure(self) -> None:
        self.monitor.close()  # CUPTI must stop calling back before the interpreter goes

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
    from gitproof.gpu import GpuUse

    return GpuUse(nodeid, None, None, "the test body did not run (skipped or failed in setup)").to_dict()


