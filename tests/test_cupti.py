"""Kernel-level evidence: the CUPTI tracer and the kernels probe, against a fake
libcupti (tests/fakes/libcupti_fake.c) loaded through the dynamic linker.

Only the library is fake: the tracer's callbacks, its record walking and its
windows are the real code. A real CUPTI is exercised by tests/test_real_gpu.py
when a GPU is present.
"""
from __future__ import annotations

import json

import pytest

from gitproof import cupti
from tests.libcuda_fake import FAKES
from gitproof.gpu_use import (METHOD_KERNELS, METHOD_TORCH, DriverHandle, Finding, GpuUseMonitor,
                              KernelProbe, combine)

GEMM = b"_Z4gemmPfS_S_i"
FILL = b"fill_kernel"
TEST = "tests/test_k.py::test_k"


def window(tracer: cupti.KernelTracer, body) -> cupti.KernelStats:
    started = tracer.begin()
    body()
    return tracer.end(started)


def test_kernels_run_in_the_window_are_counted_with_time_devices_and_names(libcupti):
    tracer = cupti.tracer()
    def body():
        for _ in range(3):
            libcupti.fake_cupti_kernel(0, GEMM, 2_000)
        libcupti.fake_cupti_kernel(1, FILL, 500)
    stats = window(tracer, body)
    assert (stats.launches, stats.gpu_time_ns, stats.devices) == (4, 6_500, [0, 1])
    assert stats.top == [{"name": GEMM.decode(), "launches": 3, "gpu_time_ns": 6_000},
                         {"name": FILL.decode(), "launches": 1, "gpu_time_ns": 500}]
    assert stats.tracer == "cupti 130500 (libcupti.so.13)"


def test_work_before_the_window_counts_for_nobody(libcupti):
    tracer = cupti.tracer()
    libcupti.fake_cupti_kernel(0, GEMM, 1_000)  # a fixture's, or an earlier test's
    assert window(tracer, lambda: None).launches == 0


def test_a_record_delivered_late_that_started_before_the_window_is_not_counted(libcupti):
    tracer = cupti.tracer()
    started = tracer.begin()
    libcupti.fake_cupti_kernel_at(0, GEMM, started - 10_000, started - 10_000, started - 5_000)
    libcupti.fake_cupti_kernel(0, FILL, 100)
    stats = tracer.end(started)
    assert stats.launches == 1 and stats.top[0]["name"] == FILL.decode()


def test_a_fixtures_kernel_that_runs_during_the_body_counts_for_nobody(libcupti):
    tracer = cupti.tracer()
    launched = tracer.now()  # queued by a fixture, still waiting on a busy stream
    started = tracer.begin()
    libcupti.fake_cupti_kernel_at(0, GEMM, launched, started + 50_000, started + 90_000)
    assert tracer.end(started).launches == 0


def test_a_kernel_launched_in_the_body_counts_even_if_it_ran_after_the_body(libcupti):
    tracer = cupti.tracer()
    started = tracer.begin()
    launched = tracer.now()
    later = launched + 10**9  # ran a second after the body returned, delivered by the flush
    libcupti.fake_cupti_kernel_at(0, GEMM, launched, later, later + 10)
    assert tracer.end(started).launches == 1


def test_a_kernel_launched_by_the_previous_test_is_nobodys(libcupti):
    tracer = cupti.tracer()
    started = tracer.begin()
    launched = tracer.now()
    assert tracer.end(started).launches == 0  # still in flight: not delivered
    started = tracer.begin()
    libcupti.fake_cupti_kernel_at(0, GEMM, launched, started + 10, started + 20)
    assert tracer.end(started).launches == 0


def test_without_launch_times_kernels_are_kept_by_their_gpu_start(built_libcupti, tmp_path, monkeypatch):
    from tests.libcuda_fake import compile_fake, cupti_controls, fresh_copy

    old = compile_fake(FAKES / "libcupti_fake.c", tmp_path / "old", "NO_LATENCY_TIMESTAMPS")
    path = fresh_copy(old, tmp_path, "libcupti.so.12")
    monkeypatch.setenv(cupti.ENV_LIBRARY, str(path))
    cupti.reset()
    try:
        lib = cupti_controls(__import__("ctypes").CDLL(str(path)))
        tracer = cupti.tracer()
        assert not tracer.by_launch and tracer.description.endswith(", no launch times")
        launched = tracer.now()
        started = tracer.begin()
        lib.fake_cupti_kernel_at(0, GEMM, launched, started + 10, started + 20)
        assert tracer.end(started).launches == 1  # by its GPU start, the older rule
    finally:
        cupti.reset()


def test_a_record_in_flight_stops_the_buffer_and_is_counted_as_a_blind_spot(libcupti):
    tracer = cupti.tracer()
    stats = window(tracer, lambda: (libcupti.fake_cupti_kernel(0, GEMM, 5), libcupti.fake_cupti_in_flight(),
                                    libcupti.fake_cupti_kernel(0, FILL, 5)))
    assert (stats.launches, stats.incomplete, stats.blind_spots) == (1, 1, 1)


def test_a_kernel_still_running_at_the_flush_is_placed_by_its_launch_time(libcupti):
    tracer = cupti.tracer()
    fixture_launch = tracer.now()
    started = tracer.begin()
    libcupti.fake_cupti_kernel_at(0, GEMM, fixture_launch, 0, 0)  # a fixture's, no GPU times yet
    libcupti.fake_cupti_kernel_at(0, FILL, tracer.now(), 0, 0)    # the body's, no GPU times yet
    stats = tracer.end(started)
    assert (stats.launches, stats.gpu_time_ns, stats.untimed) == (1, 0, 0)
    assert stats.top[0]["name"] == FILL.decode()


def test_kernels_without_timestamps_are_counted_as_untimed(libcupti):
    tracer = cupti.tracer()
    stats = window(tracer, lambda: libcupti.fake_cupti_untimed(0))
    assert (stats.launches, stats.untimed) == (0, 1)


def test_records_delivered_from_another_thread_reach_the_window(libcupti):
    tracer = cupti.tracer()
    stats = window(tracer, lambda: (libcupti.fake_cupti_kernel(0, GEMM, 5), libcupti.fake_cupti_flush_in_thread()))
    assert stats.launches == 1


def test_copies_and_memsets_are_not_launches(libcupti):
    tracer = cupti.tracer()
    stats = window(tracer, lambda: (libcupti.fake_cupti_memcpy(0, 4096), libcupti.fake_cupti_memcpy(0, 100),
                                    libcupti.fake_cupti_memset(0, 64)))
    assert stats.launches == 0 and stats.any_activity
    assert (stats.memcpy, stats.memset) == ({"count": 2, "bytes": 4196}, {"count": 1, "bytes": 64})


def test_implausible_records_are_skipped_and_dropped_records_reported(libcupti):
    tracer = cupti.tracer()
    stats = window(tracer, lambda: (libcupti.fake_cupti_garbage(), libcupti.fake_cupti_drop(7),
                                    libcupti.fake_cupti_kernel(0, GEMM, 10)))
    assert (stats.launches, stats.dropped) == (1, 7)


def test_more_records_than_one_buffer_holds_are_all_delivered(libcupti, monkeypatch):
    monkeypatch.setattr(cupti, "BUFFER_BYTES", 256 * 10)  # ten of the fake's slots per buffer
    tracer = cupti.tracer()
    stats = window(tracer, lambda: [libcupti.fake_cupti_kernel(0, GEMM, 1) for _ in range(25)])
    assert stats.launches == 25  # three buffers, reused from the second window on
    assert window(tracer, lambda: [libcupti.fake_cupti_kernel(0, GEMM, 1) for _ in range(25)]).launches == 25


def test_a_window_costs_one_forced_flush_so_work_in_flight_does_not_hold_back_the_rest(libcupti):
    tracer = cupti.tracer()
    before = libcupti.fake_cupti_flushes()
    stats = window(tracer, lambda: (libcupti.fake_cupti_kernel(0, GEMM, 10), libcupti.fake_cupti_in_flight()))
    assert (libcupti.fake_cupti_flushes() - before, libcupti.fake_cupti_last_flag()) == (1, cupti.FLUSH_FORCED)
    assert stats.launches == 1  # an unforced flush would have delivered nothing
    tracer.flush_flag = cupti.FLUSH_UNFORCED
    stats = window(tracer, lambda: (libcupti.fake_cupti_kernel(0, GEMM, 10), libcupti.fake_cupti_in_flight()))
    assert stats.launches == 0


def test_a_stopped_tracer_starts_again_for_the_next_session_in_the_process(libcupti):
    tracer = cupti.tracer()
    tracer.stop()
    assert not any(libcupti.fake_cupti_enabled(kind) for kind in cupti.TRACED_KINDS)
    assert cupti.tracer() is tracer and tracer.active
    assert window(tracer, lambda: libcupti.fake_cupti_kernel(0, GEMM, 10)).launches == 1


def test_stopping_disables_every_traced_kind(libcupti):
    tracer = cupti.tracer()
    assert all(libcupti.fake_cupti_enabled(kind) for kind in cupti.TRACED_KINDS)
    cupti.reset()
    assert not tracer.active
    assert not any(libcupti.fake_cupti_enabled(kind) for kind in cupti.TRACED_KINDS)


def test_a_refusal_to_enable_is_an_error_naming_cuptis_reason_and_is_kept(libcupti):
    libcupti.fake_cupti_refuse(35)
    with pytest.raises(cupti.CuptiError, match="cuptiActivityEnable.*INSUFFICIENT_PRIVILEGES"):
        cupti.tracer()
    libcupti.fake_cupti_refuse(0)
    with pytest.raises(cupti.CuptiError, match="INSUFFICIENT_PRIVILEGES"):
        cupti.tracer()  # the process's answer stays the same
    assert not any(libcupti.fake_cupti_enabled(kind) for kind in cupti.TRACED_KINDS)


def test_a_missing_library_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv(cupti.ENV_LIBRARY, str(tmp_path / "absent.so"))
    cupti.reset()
    with pytest.raises(cupti.CuptiError, match="CUPTI not found: install nvidia-cuda-cupti"):
        cupti.tracer()
    cupti.reset()


def test_a_library_that_is_not_cupti_is_refused(libcuda_path, monkeypatch):
    monkeypatch.setenv(cupti.ENV_LIBRARY, str(libcuda_path))
    cupti.reset()
    with pytest.raises(cupti.CuptiError, match="is not CUPTI"):
        cupti.tracer()
    cupti.reset()


def test_candidates_look_in_the_wheels_and_the_toolkit(tmp_path, monkeypatch):
    wheel = tmp_path / "site" / "nvidia" / "cu13" / "lib"
    wheel.mkdir(parents=True)
    (wheel / "libcupti.so.13").write_bytes(b"")
    toolkit = tmp_path / "cuda" / "extras" / "CUPTI" / "lib64"
    toolkit.mkdir(parents=True)
    (toolkit / "libcupti.so.12").write_bytes(b"")
    monkeypatch.delenv(cupti.ENV_LIBRARY, raising=False)
    monkeypatch.setattr("sys.path", [str(tmp_path / "site")])
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    found = cupti.candidates()
    assert found.index(str(wheel / "libcupti.so.13")) < found.index(str(toolkit / "libcupti.so.12"))
    assert found[-len(cupti.SONAMES):] == list(cupti.SONAMES)


# -- the kernels probe -------------------------------------------------------------------------

def watch(probe: KernelProbe, body) -> Finding:
    state = probe.begin()
    body()
    return probe.end(state)


def test_a_launch_is_use_by_kernels_with_its_totals(libcupti):
    finding = watch(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_kernel(0, GEMM, 1_500_000))
    assert (finding.used, finding.method) == (True, METHOD_KERNELS)
    assert finding.evidence == "1 kernel launch on cuda:0 (1.500 ms of GPU time)"
    kernels = finding.kernels
    assert (kernels["launches"], kernels["gpu_time_ns"], kernels["devices"]) == (1, 1_500_000, ["cuda:0"])
    assert finding.devices == ()  # no driver here to turn cuda:0 into a PCI bus id


def test_copies_without_kernels_decide_nothing_but_are_recorded(libcupti):
    finding = watch(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_memcpy(0, 8))
    assert (finding.used, finding.method) == (None, None)
    assert finding.evidence == ("no kernel was launched while the test body ran (only 1 copies and 0 memsets "
                                "on cuda:0); work still running when the body returned is not seen")
    assert finding.kernels["launches"] == 0 and finding.kernels["memcpy"] == {"count": 1, "bytes": 8}


def test_no_kernel_at_all_still_decides_nothing(libcupti):
    finding = watch(KernelProbe(DriverHandle(lambda: None)), lambda: None)
    assert (finding.used, finding.method, finding.kernels["launches"]) == (None, None, 0)


def test_blind_spots_are_said_in_the_evidence(libcupti):
    finding = watch(KernelProbe(DriverHandle(lambda: None)), lambda: (libcupti.fake_cupti_in_flight(),
                                                                     libcupti.fake_cupti_drop(4)))
    assert finding.used is None and "; 5 kernel record(s) were lost, cut short or untimed;" in finding.evidence
    assert (finding.kernels["dropped"], finding.kernels["incomplete"]) == (4, 1)


def test_a_tracer_that_fails_mid_session_is_said_in_the_record(libcupti, monkeypatch):
    probe = KernelProbe(DriverHandle(lambda: None))
    def broken(started):
        raise cupti.CuptiError("cuptiActivityFlushAll failed: CUPTI_ERROR_UNKNOWN (999)")
    monkeypatch.setattr(probe.tracer, "end", broken)
    finding = watch(probe, lambda: None)
    assert finding.kernels["tracer"] is None and "failed at the end of the test" in finding.kernels["error"]
    monkeypatch.setattr(probe.tracer, "begin", lambda: 1 / 0)
    assert "failed at the start of the test: ZeroDivisionError" in watch(probe, lambda: None).kernels["error"]


def test_an_unavailable_tracer_says_why_in_every_record(tmp_path, monkeypatch):
    monkeypatch.setenv(cupti.ENV_LIBRARY, str(tmp_path / "absent.so"))
    cupti.reset()
    finding = watch(KernelProbe(DriverHandle(lambda: None)), lambda: None)
    cupti.reset()
    assert finding.used is None
    assert finding.kernels["tracer"] is None and "CUPTI not found" in finding.kernels["error"]


def test_kernels_decide_before_allocation_counters_and_travel_into_the_record(libcupti):
    kernel = watch(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_kernel(0, GEMM, 10))
    torch_none = Finding(False, METHOD_TORCH, "no torch CUDA allocation during the test")
    use = combine(TEST, [kernel, torch_none])
    assert (use.used, use.method) == (True, METHOD_KERNELS)
    assert use.to_dict()["kernels"]["launches"] == 1


def test_allocation_without_kernels_is_used_but_records_zero_launches(libcupti):
    copy_only = watch(KernelProbe(DriverHandle(lambda: None)), lambda: libcupti.fake_cupti_memcpy(0, 8))
    allocated = Finding(True, METHOD_TORCH, "1 torch allocation on cuda:0")
    use = combine(TEST, [copy_only, allocated])
    assert (use.used, use.method, use.kernels["launches"]) == (True, METHOD_TORCH, 0)


def test_records_without_kernel_tracing_have_no_kernels_key():
    assert "kernels" not in combine(TEST, [Finding(False, METHOD_TORCH, "none")]).to_dict()


def test_the_monitor_closes_the_tracer(libcupti):
    monitor = GpuUseMonitor([KernelProbe(DriverHandle(lambda: None))], corroborate=lambda d: "unavailable")
    monitor.start(TEST)
    libcupti.fake_cupti_kernel(0, GEMM, 10)
    assert monitor.stop(TEST).kernels["launches"] == 1
    monitor.close()
    assert not any(libcupti.fake_cupti_enabled(kind) for kind in cupti.TRACED_KINDS)


# -- real pytest sessions ----------------------------------------------------------------------

KERNEL_TESTS = """
import ctypes
import os

import json

import pytest

LIB = ctypes.CDLL(os.environ["FAKE_CUPTI_CONTROLS"])  # the fake CUPTI, as the GPU it plays
NAME = b"saxpy_kernel"
CUDA = ctypes.CDLL(os.environ["GITPROOF_LIBCUDA"], mode=os.RTLD_GLOBAL)
assert CUDA.cuInit(0) == 0  # a CUDA program: the driver is loaded and started


@pytest.fixture
def warm():
    LIB.fake_cupti_kernel(0, NAME, 1)  # set-up work: counts for no test


@pytest.mark.gpu_proof
def test_computes_on_gpu(warm):
    LIB.fake_cupti_kernel(0, NAME, ctypes.c_uint64(2_000))


@pytest.mark.gpu_proof
def test_copies_then_computes_on_cpu():
    LIB.fake_cupti_memcpy(0, ctypes.c_uint64(1 << 20))
"""


@pytest.fixture
def kernel_project(cli_project, built_libcupti, built_libcuda, tmp_path):
    from gitproof.cuda_driver import ENV_LIBRARY
    from tests.helpers import commit_all, write_files
    from tests.libcuda_fake import fresh_copy

    write_files(cli_project, {"tests/test_kernels.py": KERNEL_TESTS})
    commit_all(cli_project, "kernel tests")
    library = fresh_copy(built_libcupti, tmp_path, "libcupti.so.13")
    return cli_project, {cupti.ENV_LIBRARY: str(library), "FAKE_CUPTI_CONTROLS": str(library), ENV_LIBRARY: str(fresh_copy(built_libcuda, tmp_path))}


def test_a_session_with_kernels_records_them_per_test_and_verify_can_require_them(kernel_project):
    from tests.remotes import gp
    from tests.test_gpu_use import gpu_uses, run_session

    root, env = kernel_project
    run = run_session(root, "--gpu-proof-kernels", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    uses = gpu_uses(root)
    computed = uses["tests/test_kernels.py::test_computes_on_gpu"]
    assert (computed["used"], computed["method"]) == (True, METHOD_KERNELS)
    assert computed["kernels"]["launches"] == 1 and computed["kernels"]["gpu_time_ns"] == 2_000
    assert computed["kernels"]["top"] == [{"name": "saxpy_kernel", "launches": 1, "gpu_time_ns": 2_000}]
    copied = uses["tests/test_kernels.py::test_copies_then_computes_on_cpu"]
    assert copied["kernels"]["launches"] == 0 and copied["kernels"]["memcpy"] == {"count": 1, "bytes": 1 << 20}
    assert gp(root, "verify").returncode == 0
    refused = gp(root, "verify", "--require-gpu-kernels")
    assert refused.returncode == 1
    assert ("1 passing test(s) launched no GPU kernel: tests/test_kernels.py::test_copies_then_computes_on_cpu "
            "(0 kernels, 1 copies)") in refused.stdout
    reasons = json.loads(gp(root, "verify", "--require-gpu-kernels", "--json").stdout)["results"][0]["reasons"]
    assert [r["code"] for r in reasons] == ["gpu-no-kernels"]


def test_record_kernels_in_the_policy_turns_tracing_on(kernel_project):
    from tests.helpers import commit_all, write_files
    from tests.test_gpu_use import gpu_uses, run_session

    root, env = kernel_project
    policy = (root / "pyproject.toml").read_text() + "record_kernels = true\n"
    write_files(root, {"pyproject.toml": policy})
    commit_all(root, "trace kernels")
    run = run_session(root, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert gpu_uses(root)["tests/test_kernels.py::test_computes_on_gpu"]["kernels"]["launches"] == 1


def test_without_the_option_no_record_has_kernels(kernel_project):
    from tests.test_gpu_use import gpu_uses, run_session

    root, env = kernel_project
    run = run_session(root, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not any("kernels" in use for use in gpu_uses(root).values())


def test_a_receipt_without_kernel_evidence_fails_require_gpu_kernels_saying_how_to_get_it(kernel_project):
    from tests.remotes import gp
    from tests.test_gpu_use import run_session

    root, env = kernel_project
    assert run_session(root, env=env).returncode == 0
    refused = gp(root, "verify", "--require-gpu-kernels")
    assert refused.returncode == 1 and "kernels not traced: record with --gpu-proof-kernels" in refused.stdout


def test_kernels_unavailable_are_said_in_the_records_and_the_run_still_records(kernel_project, tmp_path):
    from tests.test_gpu_use import gpu_uses, run_session

    root, env = kernel_project
    env = {**env, cupti.ENV_LIBRARY: str(tmp_path / "absent.so")}
    run = run_session(root, "--gpu-proof-kernels", "-k", "copies", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    [use] = gpu_uses(root).values()
    assert use["kernels"]["tracer"] is None and "CUPTI not found" in use["kernels"]["error"]


def test_under_xdist_each_worker_traces_and_the_controller_does_not(kernel_project, tmp_path):
    from tests.test_gpu_use import gpu_uses, run_session

    root, env = kernel_project
    log = tmp_path / "traced-by.txt"
    run = run_session(root, "--gpu-proof-kernels", "-n", "2", env={**env, "FAKE_CUPTI_LOG": str(log)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert gpu_uses(root)["tests/test_kernels.py::test_computes_on_gpu"]["kernels"]["launches"] == 1
    assert len(set(log.read_text().split())) == 2  # the two workers, not the controller
