"""A stand-in for PyTorch with only what gitproof's GPU-use probe reads.

Importable only where a test puts ``tests/fakes`` on the path. Its CUDA
state lives in :mod:`torch.cuda` and is driven by the test code
(``torch.cuda._fake_allocate`` and friends); nothing here touches a GPU.
"""
from torch import cuda

__version__ = "0.0+gitproof.fake"

__all__ = ["cuda"]
