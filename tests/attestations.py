"""DSSE envelopes for receipts in tests: made as `run --attest` makes them, with real keys."""
from __future__ import annotations

from pathlib import Path

import pygit2

from gitproof import signing
from gitproof.attestation_notes import append_envelope
from gitproof.receipt import SignedReceipt
from gitproof.signing.attest import attest_signer, attestation
from tests.helpers import Key


def signer_of(key: Key):
    return attest_signer(signing.SigningKey(str(key.private), False, "test"))


def envelope(signed: SignedReceipt, key: Key, commits: list[str]) -> bytes:
    """The envelope line `run --attest` writes for ``signed``, signed with ``key``."""
    return attestation(signed, signer_of(key), commits)


def attest(root: Path | pygit2.Repository, key: Key, signed: SignedReceipt, rev: str = "HEAD") -> bytes:
    """Attach the envelope of ``signed`` to ``rev``'s attestation note; the line written."""
    repo = root if isinstance(root, pygit2.Repository) else pygit2.Repository(str(root))
    commit = str(repo.revparse_single(rev).peel(pygit2.Commit).id)
    line = envelope(signed, key, [commit])
    append_envelope(repo, commit, line)
    return line
