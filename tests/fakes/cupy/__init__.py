"""A stand-in for CuPy with only what gitproof's GPU-use probe uses.

``cupy._fake_malloc`` plays a memory-pool allocation: it calls the memory
hooks registered in the calling thread the way CuPy's pool does.
"""
from cupy import cuda
from cupy.cuda import memory_hook

__version__ = "0.0+gitproof.fake"

_next_pointer = 0x7F0000000000


def _fake_malloc(size: int, device: int = 0) -> int:
    """Take ``size`` bytes from the pool on ``device``; returns the fake pointer."""
    global _next_pointer
    rounded = (size + 511) // 512 * 512
    hooks = list(memory_hook.get_memory_hooks().values())
    for hook in hooks:
        hook.malloc_preprocess(device_id=device, size=size, mem_size=rounded)
    pointer, _next_pointer = _next_pointer, _next_pointer + rounded
    for hook in hooks:
        hook.malloc_postprocess(device_id=device, size=size, mem_size=rounded,
                                mem_ptr=pointer, pmem_id=id(hook))
    return pointer


__all__ = ["cuda"]
