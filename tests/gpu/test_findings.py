"""How the probes' findings become one GPU-use record (gitproof.gpu.findings.combine)."""
from __future__ import annotations

from gitproof.gpu.findings import Finding, combine
from gitproof.gpu.records import METHOD_CONTEXT, METHOD_CUPY, METHOD_NOT_LOADED, METHOD_TORCH
from tests.gpu.watching import TEST
from tests.libcuda_fake import PCI_0, PCI_1

SEEN = Finding(True, METHOD_TORCH, "3 torch allocations on cuda:0", (PCI_0,))


SEEN_BY_DRIVER = Finding(True, METHOD_CONTEXT, "a CUDA primary context became active", (PCI_1,))


NOT_SEEN = Finding(False, METHOD_NOT_LOADED, "libcuda was never loaded by the test process")


UNDECIDED = Finding(None, None, "a CUDA context existed before the test")



def test_a_counted_allocation_wins_and_names_method_and_devices():
    use = combine(TEST, [UNDECIDED, SEEN, SEEN_BY_DRIVER])
    assert (use.used, use.method, use.evidence, use.devices) == (True, METHOD_TORCH, SEEN.evidence, [PCI_0])


def test_a_count_without_any_cuda_in_the_process_is_unknown():
    use = combine(TEST, [SEEN, NOT_SEEN])  # a mocked torch: it counts, but CUDA never ran
    assert (use.used, use.method) == (None, None)
    assert use.evidence == f"{SEEN.evidence}; {NOT_SEEN.evidence}"


def test_devices_come_from_the_first_probe_that_knows_them():
    seen_without_devices = Finding(True, METHOD_TORCH, "1 torch allocation on cuda:0")
    assert combine(TEST, [seen_without_devices, SEEN_BY_DRIVER]).devices == [PCI_1]


def test_no_use_beats_no_decision_and_keeps_every_reason():
    use = combine(TEST, [UNDECIDED, NOT_SEEN])
    assert (use.used, use.method) == (False, METHOD_NOT_LOADED)
    assert use.evidence == f"{UNDECIDED.evidence}; {NOT_SEEN.evidence}"


def test_only_undecided_probes_make_unknown():
    use = combine(TEST, [UNDECIDED])
    assert (use.used, use.method, use.evidence) == (None, None, UNDECIDED.evidence)
    assert combine(TEST, []).evidence == "no probe applied"



HELD_BUT_IDLE = Finding(False, METHOD_TORCH, "no torch CUDA allocation during the test")


TORCH_WITHOUT_CUDA = Finding(False, METHOD_TORCH, "torch never initialised CUDA")



def test_a_new_context_is_not_use_while_torch_held_cuda_and_allocated_nothing():
    use = combine(TEST, [HELD_BUT_IDLE, SEEN_BY_DRIVER])
    assert (use.used, use.method) == (None, None)
    assert use.evidence == f"{HELD_BUT_IDLE.evidence}; {SEEN_BY_DRIVER.evidence}"


def test_a_new_context_is_use_only_when_no_framework_is_in_the_process():
    use = combine(TEST, [SEEN_BY_DRIVER])  # Numba or a raw extension, say
    assert (use.used, use.method, use.devices) == (True, METHOD_CONTEXT, [PCI_1])
    assert combine(TEST, [TORCH_WITHOUT_CUDA, SEEN_BY_DRIVER]).used is None
    cupy_idle = Finding(False, METHOD_CUPY, "no CuPy memory-pool allocation during the test")
    assert combine(TEST, [cupy_idle, SEEN_BY_DRIVER]).used is None
    imported_late = Finding(None, None, "CuPy was imported during the test", framework=True)
    assert combine(TEST, [imported_late, SEEN_BY_DRIVER]).used is None
