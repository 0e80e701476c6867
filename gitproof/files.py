"""Policy and trust files on disk: read as regular files only, bounded; replaced atomically.

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
import tempfile
from pathlib import Path

from gitproof.errors import GitproofError

MAX_TRUST_FILE = 16 * 1024 * 1024  # far above any real policy or allowed_signers file


class UnreadableFile(GitproofError, ValueError):
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


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` (following a symlink to its target) by a file holding ``data``.

    The new content is written to a temporary file beside it and renamed over
    it, so an interruption leaves either the old file or the new one.
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    done = False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
        done = True
    finally:
        if not done:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
