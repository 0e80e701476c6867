"""Running a command on a real pseudo-terminal: prompts, Ctrl-C and colours as a person sees them."""
from __future__ import annotations

import os
import pty
import select
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Session:
    output: bytes
    status: int
    prompts: int

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")


def in_terminal(argv: list[str], cwd: Path, env: dict[str, str], answer: str | None = None,
                ctrl_c_when: Callable[[], bool] | None = None, timeout: float = 120) -> Session:
    """Run ``argv`` as the session leader of a new pseudo-terminal (its controlling terminal).

    ``answer`` is typed (with Enter) at every prompt ending in "passphrase: "; when
    ``ctrl_c_when()`` turns true, Ctrl-C is typed, as a person would (the terminal
    sends SIGINT to its foreground process group).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec, or leave at once without running the test process's cleanup
        try:
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    output, prompts, interrupted, answered = b"", 0, False, 0
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if ctrl_c_when is not None and not interrupted and ctrl_c_when():
                os.write(fd, b"\x03")
                interrupted = True
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: the command has ended
                break
            if not chunk:
                break
            output += chunk
            if answer is not None and output[answered:].rstrip().lower().endswith(b"passphrase:"):
                os.write(fd, answer.encode() + b"\n")
                prompts += 1
                answered = len(output)
    finally:
        if time.time() >= deadline:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return Session(output, os.waitstatus_to_exitcode(status), prompts)
