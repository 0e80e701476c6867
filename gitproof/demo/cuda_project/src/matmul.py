"""A tiny "GPU kernel": matrix multiplication with PyTorch, on the device the project picks."""
import torch


def pick_device() -> str:
    """The device the project's code runs on: the GPU whenever PyTorch sees one."""
    # The demo's planted bug: is_available() returns a bool, never the string "True", so
    # this always falls back to the CPU. Tests still pass; only the receipt's per-test
    # GPU-use evidence shows it. Step 4 of `git gpu-proof demo --cuda` fixes the comparison.
    if torch.cuda.is_available() == "True":
        return "cuda"
    return "cpu"


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` on the device the inputs live on."""
    if a.shape[-1] != b.shape[0]:
        raise ValueError(f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    return a @ b
