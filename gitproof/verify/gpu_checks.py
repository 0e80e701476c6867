"""The checks of a receipt's GPU evidence: ``require_gpu_use`` and ``require_gpu_kernels``."""
from __future__ import annotations

from typing import Any

from gitproof.receipt import SignedReceipt
from gitproof.text import printable
from gitproof.verify.checks import ReceiptCheck
from gitproof.verify.codes import Code
from gitproof.verify.verdicts import Failure


class GpuUsed(ReceiptCheck):
    """``require_gpu_use``: every test that passed shows evidence that it used a GPU.

    The evidence is what the test process observed about itself (framework
    allocation counters, CUDA contexts), signed by the runner: it shows that a
    test touched the GPU, not that its assertions were computed there.
    Unknown evidence does not count as use.
    """

    SHOWN = 5

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        uses = {use["test"]: use for use in receipt.gpu_use}
        if not uses:
            return Failure(Code.GPU_NOT_USED, "receipt records no per-test GPU use (made by a gitproof "
                                              "without GPU-use evidence); the policy requires it")
        if not any(gpu.get("visible") is not False for gpu in receipt.gpus):
            return Failure(Code.GPU_NOT_USED, "the receipt lists no GPU visible to the tests, so no "
                                              "test can have used one")
        missing = [(t.nodeid, uses.get(t.nodeid)) for t in receipt.tests
                   if t.outcome in ("passed", "xpassed") and (uses.get(t.nodeid) or {}).get("used") is not True]
        if not missing:
            return None
        shown = "; ".join(_why_not_used(nodeid, use) for nodeid, use in missing[:self.SHOWN])
        more = f" (+{len(missing) - self.SHOWN} more)" if len(missing) > self.SHOWN else ""
        return Failure(Code.GPU_NOT_USED, f"{len(missing)} passing test(s) show no GPU use: {shown}{more}")


class GpuKernelsRan(ReceiptCheck):
    """``require_gpu_kernels``: every test that passed launched a GPU kernel in its body.

    Stronger than :class:`GpuUsed`: putting data on a GPU and computing on
    the CPU passes that one, not this one. The evidence is CUPTI's record of
    the kernels the GPU ran, as the test process read it (a receipt made
    with ``--gpu-proof-kernels``), signed by the runner: it shows that the
    GPU ran kernels during the test, not which results they produced.
    """

    SHOWN = 5

    def failure(self, signed: SignedReceipt) -> Failure | None:
        receipt = signed.receipt
        if not any(gpu.get("visible") is not False for gpu in receipt.gpus):
            return Failure(Code.GPU_NO_KERNELS, "the receipt lists no GPU visible to the tests, so no "
                                                "test can have launched a kernel")
        uses = {use["test"]: use for use in receipt.gpu_use}
        missing = [(t.nodeid, uses.get(t.nodeid)) for t in receipt.tests
                   if t.outcome in ("passed", "xpassed") and _launches(uses.get(t.nodeid)) < 1]
        if not missing:
            return None
        shown = "; ".join(_why_no_kernels(nodeid, use) for nodeid, use in missing[:self.SHOWN])
        more = f" (+{len(missing) - self.SHOWN} more)" if len(missing) > self.SHOWN else ""
        return Failure(Code.GPU_NO_KERNELS, f"{len(missing)} passing test(s) launched no GPU kernel: "
                                            f"{shown}{more}")


def _launches(use: dict[str, Any] | None) -> int:
    """Kernel launches a record vouches for: none unless traced and consistent (used: true)."""
    record = use or {}
    kernels = record.get("kernels")
    if not isinstance(kernels, dict) or not isinstance(kernels.get("tracer"), str) or record.get("used") is not True:
        return 0
    launches = kernels.get("launches")
    return launches if isinstance(launches, int) and not isinstance(launches, bool) else 0


def _why_no_kernels(nodeid: str, use: dict[str, Any] | None) -> str:
    record = use or {}
    kernels = record.get("kernels")
    if not isinstance(kernels, dict):
        return f"{printable(nodeid)} (kernels not traced: record with --gpu-proof-kernels)"
    if kernels.get("tracer") is None:
        error = kernels.get("error")
        detail = f": {printable(error)}" if isinstance(error, str) and error else ""
        return f"{printable(nodeid)} (kernels not traced{detail})"
    if kernels.get("launches") and record.get("used") is not True:
        return f"{printable(nodeid)} (kernels recorded, but the record says used: {record.get('used')})"
    copies = (kernels.get("memcpy") or {}).get("count") or 0
    extra = f", {copies} copies" if copies else ""
    return f"{printable(nodeid)} (0 kernels{extra})"


def _why_not_used(nodeid: str, use: dict[str, Any] | None) -> str:
    if use is None:
        return f"{printable(nodeid)} (no gpu-use record)"
    state = "unknown" if use.get("used") is None else "not used"
    evidence = use.get("evidence")
    detail = f": {printable(evidence)}" if isinstance(evidence, str) and evidence else ""
    return f"{printable(nodeid)} ({state}{detail})"
