"""Kernel-level evidence: the CUPTI tracer (gitproof.gpu.cupti) and its activity records
(gitproof.gpu.activity), against a fake libcupti (tests/fakes/libcupti_fake.c) loaded
through the dynamic linker.

Only the library is fake: the tracer's callbacks, its record walking and its
windows are the real code. The kernels probe is tested in test_probes.py, whole
sessions in test_sessions.py, and a real CUPTI by tests/gpu/test_real_gpu.py
when a GPU is present.
"""
from __future__ import annotations

import pytest

from gitproof.gpu import TopKernel, Transfers, cupti
from gitproof.gpu.activity import KernelStats
from tests.libcuda_fake import FAKES

GEMM = b"_Z4gemmPfS_S_i"


FILL = b"fill_kernel"


def window(tracer: cupti.KernelTracer, body) -> KernelStats:
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
    assert stats.top == [TopKernel(GEMM.decode(), 3, 6_000), TopKernel(FILL.decode(), 1, 500)]
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
    assert stats.launches == 1 and stats.top[0].name == FILL.decode()


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
    assert stats.top[0].name == FILL.decode()


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
    assert (stats.memcpy, stats.memset) == (Transfers(2, 4196), Transfers(1, 64))


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
