import pytest

from vecadd import backend, reference_vecadd, vecadd


@pytest.mark.gpu_proof
def test_vecadd_matches_reference(gpu_proof_check):
    a = [float(i) for i in range(1024)]
    b = [float(2 * i) for i in range(1024)]
    gpu_proof_check("vecadd-1024", reference_vecadd, vecadd, args=(a, b),
                    metadata={"backend": backend()})


@pytest.mark.gpu_proof
def test_vecadd_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        vecadd([1.0], [1.0, 2.0])


def test_not_a_gpu_test():
    assert backend() in ("cuda", "python")
