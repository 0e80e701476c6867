"""SSHSIG signatures made the way git makes them (``ssh-keygen -Y sign``).

Key selection mirrors git's ``sign_buffer_ssh``: an explicit ``--key`` wins, then
``user.signingKey``, then the first line printed by ``gpg.ssh.defaultKeyCommand``.
A key is either a literal public key (``key::ssh-ed25519 AAAA...`` or, legacy, a
value starting with ``ssh-``), signed through ssh-agent with ``-U``, or a path to a
private key or to a ``.pub`` whose private half is in the agent.

For CI, ``key_from_env`` takes the private key's text from an environment
variable (a CI secret). It stays in memory; ``ssh-keygen`` gets it only as a
0600 file in a private (0700) temporary directory that exists while one
signature is made and is removed afterwards, whatever happens.
"""
from __future__ import annotations

from gitproof.signing.keys import (DEFAULT_PROGRAM, SigningError, SigningKey, default_principal, key_fingerprint,
                                   key_from_env, private_key_file, public_key_of, resolve_signing_key)
from gitproof.signing.passphrase import needs_passphrase, unlock
from gitproof.signing.sign import PROBE_PAYLOAD, probe, sign
from gitproof.trust.sshsig import NAMESPACE

__all__ = ["DEFAULT_PROGRAM", "NAMESPACE", "PROBE_PAYLOAD", "SigningError", "SigningKey", "default_principal",
           "key_fingerprint", "key_from_env", "needs_passphrase", "private_key_file", "probe",
           "public_key_of", "resolve_signing_key", "sign", "unlock"]
