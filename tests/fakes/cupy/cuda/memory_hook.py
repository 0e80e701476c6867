"""``cupy.cuda.memory_hook`` as CuPy defines it: named hooks, registered per
thread by ``with hook:``, a second hook of the same name refused."""
from __future__ import annotations

import collections
import threading

_local = threading.local()


def get_memory_hooks() -> collections.OrderedDict:
    hooks = getattr(_local, "hooks", None)
    if hooks is None:
        hooks = _local.hooks = collections.OrderedDict()
    return hooks


class MemoryHook:
    name = "MemoryHook"

    def __enter__(self) -> "MemoryHook":
        hooks = get_memory_hooks()
        if self.name in hooks:
            raise KeyError(f"memory hook {self.name} already exists")
        hooks[self.name] = self
        return self

    def __exit__(self, *_: object) -> None:
        del get_memory_hooks()[self.name]

    def alloc_preprocess(self, **kwargs) -> None:
        pass

    def alloc_postprocess(self, **kwargs) -> None:
        pass

    def malloc_preprocess(self, **kwargs) -> None:
        pass

    def malloc_postprocess(self, **kwargs) -> None:
        pass

    def free_preprocess(self, **kwargs) -> None:
        pass

    def free_postprocess(self, **kwargs) -> None:
        pass
