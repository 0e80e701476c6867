"""Making an SSHSIG signature with ``ssh-keygen -Y sign``, and the probe signature made before a run."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


from gitproof.trust.sshsig import NAMESPACE, is_armored

from gitproof.signing.keys import (SigningError, SigningKey, private_key_file, program_error, public_key_of,
                                   write_private)





def _sign_command(key: SigningKey, workdir: Path, payload_file: Path, namespace: str,
                  key_file: Path | None = None) -> list[str]:
    if key.literal:
        key_file = workdir / "signing_key.pub"
        write_private(key_file, key.spec.encode("ascii") + b"\n")
    elif key_file is None:
        key_file = Path(key.spec)
    command = [key.program, "-Y", "sign", "-n", namespace, "-f", str(key_file)]
    if key.literal:
        command.append("-U")  # the private half must come from ssh-agent
    return command + [str(payload_file)]


def _run_signer(command: list[str], program: str, detached: bool = False) -> None:
    """Run ``ssh-keygen -Y sign``. ``detached``: away from the terminal and from askpass
    programs, so that it never asks for anything (it signs, or fails at once)."""
    env = {**os.environ, "SSH_ASKPASS_REQUIRE": "never"} if detached else None
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            start_new_session=detached, env=env,
        )
    except OSError as exc:
        raise program_error(program, exc) from exc
    if result.returncode == 0:
        return
    stderr = result.stderr.strip() or result.stdout.strip()
    message = f"`{program} -Y sign` failed (exit {result.returncode}): {stderr}"
    if "usage:" in stderr:
        message += "\nssh-keygen -Y sign needs OpenSSH 8.2p1 or newer (see gpg.ssh.program)"
    raise SigningError(message)


def _read_signature(sig_file: Path, program: str) -> str:
    try:
        text = sig_file.read_text(encoding="ascii").replace("\r", "")
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningError(f"`{program} -Y sign` wrote no readable signature: {exc}") from exc
    text = text.strip() + "\n"
    if not is_armored(text):
        raise SigningError(f"`{program} -Y sign` produced something that is not an SSH signature")
    return text


def sign(payload: bytes, key: SigningKey, namespace: str = NAMESPACE, detached: bool = False) -> str:
    """Sign ``payload`` like git does; returns the armored SSH signature text.

    ``detached``: never prompt (see ``_run_signer``)."""
    workdir = Path(tempfile.mkdtemp(prefix="gitproof-sign-"))  # mode 0700
    try:
        payload_file = workdir / "payload"
        write_private(payload_file, payload)
        if key.secret is None:
            _run_signer(_sign_command(key, workdir, payload_file, namespace), key.program, detached)
        else:
            public = public_key_of(key)
            with private_key_file(key, workdir) as key_file:
                # ssh-keygen -Y sign reads the public half from <key>.pub for PEM-format keys
                write_private(Path(f"{key_file}.pub"), public.encode("ascii") + b"\n")
                _run_signer(_sign_command(key, workdir, payload_file, namespace, key_file), key.program,
                            detached)
        return _read_signature(Path(f"{payload_file}.sig"), key.program)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- before a run: can this key sign without anyone at the keyboard? ------------


PROBE_PAYLOAD = b"gitproof: a probe signature before the tests run; never stored\n"


def probe(key: SigningKey) -> str:
    """Sign a probe message now, never prompting; SigningError says why not.

    ``git gpu-proof run`` calls it before the tests, so a key that cannot sign
    (missing, not in ssh-agent, protected by a passphrase) stops the run at
    once rather than after it. The signature is only ever looked at, never stored.
    """
    return sign(PROBE_PAYLOAD, key, detached=True)
