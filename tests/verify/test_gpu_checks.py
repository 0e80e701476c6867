"""The checks of the GPU evidence (gitproof.verify.gpu_checks) and RunConditions' GPU rule, on
receipts built in memory: what each says, read through the typed GPU records."""
from __future__ import annotations

from gitproof.receipt import Receipt, SignedReceipt, TestResult
from gitproof.verify.checks import RunConditions
from gitproof.verify.codes import Code
from gitproof.verify.gpu_checks import GpuKernelsRan, GpuUsed
from tests.factories import make_receipt

A, B = "tests/test_k.py::test_a", "tests/test_k.py::test_b[x]"
TRACER = "cupti 130001 (libcupti.so.13)"


def signed(**overrides) -> SignedReceipt:
    receipt: Receipt = make_receipt(**overrides)
    return SignedReceipt(receipt, b"", "")


def use(test: str, used: bool | None, **extra) -> dict:
    return {"test": test, "used": used, "method": None, "evidence": "", "devices": [], "nvml": None, **extra}


def traced(launches: int, copies: int = 0) -> dict:
    return {"tracer": TRACER, "launches": launches, "gpu_time_ns": 0, "devices": [], "top": [],
            "memcpy": {"count": copies, "bytes": 0}, "memset": {"count": 0, "bytes": 0},
            "dropped": 0, "incomplete": 0, "untimed": 0}


def test_gpu_used_needs_records_and_a_visible_device():
    assert GpuUsed().failure(signed()).message.startswith("receipt records no per-test GPU use")
    hidden = signed(gpus=[{"index": 0, "name": "H100", "visible": False}], gpu_use=[use(A, True), use(B, True)])
    failure = GpuUsed().failure(hidden)
    assert failure.code == Code.GPU_NOT_USED and "no GPU visible to the tests" in failure.message


def test_gpu_used_says_what_each_passing_test_lacks():
    receipt = signed(gpu_use=[use(A, None, evidence="no probe could tell")])
    assert GpuUsed().failure(receipt).message == (
        f"2 passing test(s) show no GPU use: {A} (unknown: no probe could tell); {B} (no gpu-use record)")
    assert GpuUsed().failure(signed(gpu_use=[use(A, False), use(B, True)])).message == (
        f"1 passing test(s) show no GPU use: {A} (not used)")
    assert GpuUsed().failure(signed(gpu_use=[use(A, True), use(B, True)])) is None


def test_a_device_of_unknown_or_hostile_visibility_counts_as_visible():
    for visible in (None, "no", 0):
        receipt = signed(gpus=[{"index": 0, "name": "H100", "visible": visible}],
                         gpu_use=[use(A, True), use(B, True)])
        assert GpuUsed().failure(receipt) is None
        assert RunConditions(None, True, False).failure(receipt) is None


def test_gpu_kernels_ran_says_why_each_test_does_not_count():
    receipt = signed(tests=[TestResult(f"t::{n}", "passed", 0) for n in "abcdef"], gpu_use=[
        use("t::a", True),
        use("t::b", True, kernels={"tracer": None, "error": "CUPTI is in use by another tool"}),
        use("t::c", False, kernels=traced(3)),
        use("t::d", True, kernels=traced(0, copies=2)),
        use("t::e", True, kernels=traced(2)),
        use("t::f", True, kernels={**traced(0), "launches": True}),  # not a count: no launches
    ])
    failure = GpuKernelsRan().failure(receipt)
    assert failure.code == Code.GPU_NO_KERNELS
    assert failure.message == (
        "5 passing test(s) launched no GPU kernel: t::a (kernels not traced: record with --gpu-proof-kernels); "
        "t::b (kernels not traced: CUPTI is in use by another tool); "
        "t::c (kernels recorded, but the record says used: False); t::d (0 kernels, 2 copies); t::f (0 kernels)")


def test_gpu_kernels_ran_needs_a_visible_device():
    receipt = signed(gpus=[{"name": "H100", "visible": False}], gpu_use=[use(A, True, kernels=traced(1))])
    assert "no GPU visible to the tests" in GpuKernelsRan().failure(receipt).message


def test_require_gpu_names_the_visibility_setting_when_every_device_was_hidden():
    gpus = [{"index": 0, "name": "H100", "visible": False}, {"index": 1, "name": "H100", "visible": False}]
    facts = {"source": "nvml", "cuda_visible_devices": "", "confidential_computing": None, "notes": []}
    failure = RunConditions(None, True, False).failure(signed(gpus=gpus, gpu_facts=facts))
    assert failure.code == Code.NO_GPU and "(CUDA_VISIBLE_DEVICES='')" in failure.message
    older = RunConditions(None, True, False).failure(signed(gpus=gpus))  # no gpu-facts line
    assert "(CUDA_VISIBLE_DEVICES=unset)" in older.message
    assert RunConditions(None, True, False).failure(signed(gpus=[])).message.startswith("receipt lists no GPU")
