"""Reading policy and trust files from disk: regular files only, and bounded.

A pull request controls the working tree, so ``pyproject.toml``, an
allowed_signers file or a manifest there may be a symlink to ``/dev/zero``,
a FIFO, or a file of gigabytes: reading it plainly would hang or exhaust
memory. Links are followed (a runner's configured file may be one), but what
they lead to must be a regular file no larger than the bound; the file is
opened without blocking, checked with ``fstat`` on that same descriptor, and
read to the bound only.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_TRUST_FILE = 16 * 1024 * 1024  # far above any real policy or allowed_signers file


class UnreadableFile(ValueError):
    """Not a regular file, too large, or unreadable; the message names the file and why."""


def read_regular(path: Path | str, what: str, limit: int = MAX_TRUST_FILE) -> bytes:
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"{what} {path} is not a regular file; refusing to read it")
        if info.st_size > limit:
            raise UnreadableFile(f"{what} {path} is {info.st_size} bytes, over the {limit}-byte limit")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise UnreadableFile(f"{what} {path} grew past the {limit}-byte limit while being read")
    return data
