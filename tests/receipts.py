"""Real signed receipts for a real repository, without running pytest each time."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2

from gitproof import signing
from gitproof.notes import NotesStore
from gitproof.policy import Policy
from gitproof.receipt import SignedReceipt, serialize_payload
from gitproof.trust import load_trust
from gitproof.verify import Verifier
from tests.factories import make_receipt
from tests.helpers import Key

PATHS = ("src", "tests")


def sign_receipt(repo: pygit2.Repository, key: Key, rev: str = "HEAD",
                 principal: str = "alice@example.com", **overrides) -> SignedReceipt:
    """A receipt for ``rev``'s code, signed by the real ssh-keygen with ``key``."""
    commit = repo.revparse_single(rev).peel(pygit2.Commit)
    signing_key = signing.SigningKey(str(key.private), False, "test")
    trees = {}
    for path in PATHS:
        try:
            trees[path] = str(commit.tree[path].id)
        except KeyError:
            trees[path] = None
    started = datetime.now(timezone.utc)
    fields = dict(signer=principal, key_fingerprint=signing.key_fingerprint(signing_key),
                  trees=trees, commit=str(commit.id), started=started,
                  finished=started + timedelta(seconds=1))
    fields.update(overrides)
    receipt = make_receipt(**fields)
    payload = serialize_payload(receipt)
    return SignedReceipt(receipt, payload, signing.sign(payload, signing_key))


def attach_receipt(root: Path, key: Key, rev: str = "HEAD", **overrides) -> SignedReceipt:
    repo = pygit2.Repository(str(root))
    signed = sign_receipt(repo, key, rev, **overrides)
    NotesStore(repo).add(str(repo.revparse_single(rev).peel(pygit2.Commit).id), signed)
    return signed


def trust(root: Path, key: Key, principal: str = "alice@example.com") -> None:
    """Write the key into the repository's allowed_signers and point the policy at it."""
    signers = root / ".gpu-proof" / "allowed_signers"
    signers.parent.mkdir(exist_ok=True)
    with signers.open("a") as f:
        f.write(f'{principal} namespaces="gpu-proof" {key.public_line}\n')
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        pyproject.write_text('[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n')


POLICY = Policy(allowed_signers=".gpu-proof/allowed_signers")


class Project:
    """A repository with a trusted key, and a way to attach real signed receipts."""

    def __init__(self, root: Path, key: Key, principal: str = "alice@example.com",
                 options: str = 'namespaces="gpu-proof" ') -> None:
        self.root, self.key, self.principal = root, key, principal
        self.repo = pygit2.Repository(str(root))
        self.trust_key(key, principal, options)

    def trust_key(self, key: Key, principal: str, options: str = 'namespaces="gpu-proof" ') -> None:
        path = self.root / ".gpu-proof" / "allowed_signers"
        path.parent.mkdir(exist_ok=True)
        with path.open("a") as f:
            f.write(f"{principal} {options}{key.public_line}\n")

    def signed(self, rev: str = "HEAD", key: Key | None = None, **overrides) -> SignedReceipt:
        return sign_receipt(self.repo, key or self.key, rev, self.principal, **overrides)

    def attach(self, rev: str = "HEAD", signed: SignedReceipt | None = None, **overrides) -> SignedReceipt:
        signed = signed or self.signed(rev, **overrides)
        commit = str(self.repo.revparse_single(rev).peel(pygit2.Commit).id)
        NotesStore(self.repo).add(commit, signed)
        return signed

    def verify(self, rev: str = "HEAD", policy: Policy = POLICY, required_tests: list[str] | None = None):
        verifier = Verifier(self.repo, policy, load_trust(self.repo, policy), required_tests=required_tests)
        return verifier.verify(self.repo.revparse_single(rev).peel(pygit2.Commit))
