"""Revocation lists (git's ``gpg.ssh.revocationFile``).

Plain public keys, one a line, are handled natively. A binary KRL (``SSHKRL\\n``)
is recognised but not read: the whole decision is then handed to ssh-keygen
(`gitproof.trust.sources.verify_signed_payload`).
"""
from __future__ import annotations

import atexit
import base64
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gitproof.files import UnreadableFile, read_regular
from gitproof.trust.allowed_signers import AllowedSignersError
from gitproof.trust.keys import WireReader, ca_key_blob, fingerprint_of, plain_key_blob, read_key
from gitproof.trust.sshsig import SshSignature

KRL_MAGIC = b"SSHKRL\n"


class RevokedKeys:
    """A revocation list of plain public keys.

    A binary KRL is recognised but not read: `is_krl` is set, `revocation_reason`
    raises, and `verify_signed_payload` lets ssh-keygen make the whole decision instead.
    """

    def __init__(self, keys: Iterable[bytes] = (), source: str = "<revoked keys>",
                 path: Path | None = None, is_krl: bool = False) -> None:
        self.keys = list(keys)
        self.source = source
        self.path = path
        self.is_krl = is_krl
        self._plain = {plain_key_blob(k) for k in self.keys}

    @classmethod
    def from_text(cls, text: str, source: str = "<revoked keys>") -> RevokedKeys:
        keys = []
        for number, line in enumerate(text.split("\n"), start=1):
            content = line.lstrip(" \t")  # as OpenSSH skips: a line of a lone CR is not blank
            if not content or content.startswith("#"):
                continue
            key = read_key(content.rstrip(" \t\r"))
            if key is None:
                raise AllowedSignersError("not a public key (revocation lists hold one key per line)",
                                          source, number)
            keys.append(key[0])
        return cls(keys, source)

    @classmethod
    def from_file(cls, path: Path | str) -> RevokedKeys:
        path = Path(path)
        if not path.is_file():
            raise AllowedSignersError(
                f"revocation file {path} (configured in gpg.ssh.revocationFile) does not exist")
        try:
            data = read_regular(path, "revocation file")
        except UnreadableFile as exc:
            raise AllowedSignersError(str(exc)) from None
        if data.startswith(KRL_MAGIC):
            return cls(source=str(path), path=path, is_krl=True)
        revoked = cls.from_text(data.decode("utf-8", "surrogateescape"), str(path))
        revoked.path = path
        return revoked

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> RevokedKeys:
        """A list read from a git object. A binary KRL is handed to ssh-keygen as a file, so
        it is written to a private temporary file that lives as long as the process."""
        if not data.startswith(KRL_MAGIC):
            return cls.from_text(data.decode("utf-8", "surrogateescape"), source)
        directory = Path(tempfile.mkdtemp(prefix="gitproof-krl-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = directory / "revoked.krl"
        path.write_bytes(data)
        return cls(source=source, path=path, is_krl=True)

    def revocation_reason(self, sig: SshSignature) -> str | None:
        """Why `sig`'s key counts as revoked (the signing key, or the CA of a signing
        certificate, is listed), or None."""
        if self.is_krl:
            raise AllowedSignersError("binary KRL files are not supported natively; "
                                      "verify_signed_payload uses ssh-keygen for them", self.source)
        if plain_key_blob(sig.public_key) in self._plain:
            return f"key revoked ({sig.fingerprint} is listed in {self.source})"
        if sig.is_certificate:
            ca = ca_key_blob(sig.public_key)
            if plain_key_blob(ca) in self._plain:
                return (f"key revoked (its certificate's CA key {fingerprint_of(ca)} "
                        f"is listed in {self.source})")
        return None

    def text(self) -> str:
        return "".join(f"{WireReader(k).text('key type')} {base64.b64encode(k).decode()}\n"
                       for k in self.keys)
