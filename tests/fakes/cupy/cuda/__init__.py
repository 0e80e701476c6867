"""``cupy.cuda``: the memory-hook part only."""
from cupy.cuda import memory_hook
from cupy.cuda.memory_hook import MemoryHook

__all__ = ["MemoryHook", "memory_hook"]
