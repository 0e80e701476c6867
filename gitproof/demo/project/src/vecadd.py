"""A tiny "GPU kernel": vector addition on CUDA when PyTorch sees a GPU, else on the CPU."""


def backend() -> str:
    try:
        import torch
    except ImportError:
        return "python"
    return "cuda" if torch.cuda.is_available() else "python"


def vecadd(a: list[float], b: list[float]) -> list[float]:
    if len(a) != len(b):
        raise ValueError("vectors differ in length")
    if backend() == "cuda":
        import torch

        return (torch.tensor(a, device="cuda") + torch.tensor(b, device="cuda")).cpu().tolist()
    return [x + y for x, y in zip(a, b)]


def reference_vecadd(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b)]
