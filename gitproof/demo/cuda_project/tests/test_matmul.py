"""The demo's GPU tests. The second runs wherever the project's pick_device() says; the
receipt's per-test GPU-use evidence shows whether its body allocated anything on the GPU."""
import pytest
import torch

from matmul import matmul, pick_device

RTOL, ATOL = 1e-4, 1e-3


def check_matmul(gpu_proof_check, device: str) -> None:
    """The project's matmul on ``device`` against PyTorch's on the CPU; recorded in the receipt."""
    torch.manual_seed(0)
    a = torch.randn(512, 256, device=device)
    b = torch.randn(256, 128, device=device)
    gpu_proof_check("matmul-512x256x128", lambda x, y: x.cpu() @ y.cpu(), matmul, args=(a, b),
                    compare=lambda want, got: got.device.type == device
                    and torch.allclose(got.cpu(), want, rtol=RTOL, atol=ATOL),
                    metadata={"device": device}, rtol=RTOL, atol=ATOL)


@pytest.mark.gpu_proof
def test_matmul_on_gpu(gpu_proof_check):
    check_matmul(gpu_proof_check, "cuda")


@pytest.mark.gpu_proof
def test_matmul_cpu_fallback(gpu_proof_check):
    # On the device the project's own code picks, as the application would run.
    check_matmul(gpu_proof_check, pick_device())
