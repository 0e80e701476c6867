"""The checks of a receipt's GPU evidence: ``require_gpu_use`` and ``require_gpu_kernels``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gitproof.receipt import Receipt, SignedReceipt
from gitproof.text import printable
from gitproof.verify.checks import ReceiptCheck
from gitproof.verify.codes import Code
from gitproof.verify.verdicts import Failure

if TYPE_CHECKING:  # the records come from Receipt's typed accessors, which import them when read
    from gitproof.gpu.records import GpuUse


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
        uses = _uses_by_test(receipt)
        if not uses:
            return Failure(Code.GPU_NOT_USED, "receipt records no per-test GPU use (made by a gitproof "
                                              "without GPU-use evidence); the policy requires it")
        if not _any_visible(receipt):
            return Failure(Code.GPU_NOT_USED, "the receipt lists no GPU visible to the tests, so no "
                                              "test can have used one")
        missing = [(t.nodeid, uses.get(t.nodeid)) for t in receipt.tests
                   if t.outcome in ("passed", "xpassed") and not _used(uses.get(t.nodeid))]
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
        if not _any_visible(receipt):
            return Failure(Code.GPU_NO_KERNELS, "the receipt lists no GPU visible to the tests, so no "
                                                "test can have launched a kernel")
        uses = _uses_by_test(receipt)
        missing = [(t.nodeid, uses.get(t.nodeid)) for t in receipt.tests
                   if t.outcome in ("passed", "xpassed") and _launches(uses.get(t.nodeid)) < 1]
        if not missing:
            return None
        shown = "; ".join(_why_no_kernels(nodeid, use) for nodeid, use in missing[:self.SHOWN])
        more = f" (+{len(missing) - self.SHOWN} more)" if len(missing) > self.SHOWN else ""
        return Failure(Code.GPU_NO_KERNELS, f"{len(missing)} passing test(s) launched no GPU kernel: "
                                            f"{shown}{more}")


def _uses_by_test(receipt: Receipt) -> dict[str, GpuUse]:
    return {use.test: use for use in receipt.use_records}


def _any_visible(receipt: Receipt) -> bool:
    """A device the tests could see, or one whose visibility the receipt does not say."""
    return any(device.visible is not False for device in receipt.device_records)


def _used(use: GpuUse | None) -> bool:
    return use is not None and use.used is True


def _launches(use: GpuUse | None) -> int:
    """Kernel launches a record vouches for: none unless traced and consistent (used: true)."""
    if use is None or use.kernels is None or not use.kernels.traced or use.used is not True:
        return 0
    return use.kernels.launches


def _why_no_kernels(nodeid: str, use: GpuUse | None) -> str:
    kernels = use.kernels if use is not None else None
    if use is None or kernels is None:
        return f"{printable(nodeid)} (kernels not traced: record with --gpu-proof-kernels)"
    if not kernels.traced:
        detail = f": {printable(kernels.error)}" if kernels.error else ""
        return f"{printable(nodeid)} (kernels not traced{detail})"
    if kernels.launches and use.used is not True:
        return f"{printable(nodeid)} (kernels recorded, but the record says used: {use.used})"
    copies = kernels.memcpy.count
    extra = f", {copies} copies" if copies else ""
    return f"{printable(nodeid)} (0 kernels{extra})"


def _why_not_used(nodeid: str, use: GpuUse | None) -> str:
    if use is None:
        return f"{printable(nodeid)} (no gpu-use record)"
    state = "unknown" if use.used is None else "not used"
    detail = f": {printable(use.evidence)}" if use.evidence else ""
    return f"{printable(nodeid)} ({state}{detail})"
