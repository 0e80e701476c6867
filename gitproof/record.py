"""Turning a finished pytest session into a signed, stored receipt.

``prepare`` runs before any test: it refuses early (no repository, no
commit, no fingerprint paths, no signing key) so a refused run writes
nothing. ``finish`` builds the receipt, signs it and stores it: as a note
on HEAD when the fingerprint paths match HEAD, otherwise as a pending
receipt for the commit that will record that content.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pygit2

from gitproof import __version__, gpu, signing
from gitproof.fingerprint import FingerprintError, WorktreeState, require_some_present, worktree_state
from gitproof.notes import NotesStore
from gitproof.pending import PendingStore
from gitproof.policy import Policy, load_policy
from gitproof.receipt import Receipt, SignedReceipt, TestResult, parse_payload, serialize_payload

MODES = ("local", "ci-gpu")


class RecordError(Exception):
    """A receipt cannot be made; nothing was written."""


@dataclass(frozen=True)
class RecordOptions:
    key: str | None = None
    principal: str | None = None
    mode: str = "local"


@dataclass
class Recording:
    """Everything fixed before the tests run."""

    repo: pygit2.Repository
    policy: Policy
    key: signing.SigningKey
    principal: str
    key_fingerprint: str
    mode: str
    state: WorktreeState
    head: str
    branch: str | None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class RecordOutcome:
    signed: SignedReceipt
    stored_as: str  # "note" or "pending"
    location: str  # commit id or pending ref
    added: bool


def open_repository(start: Path) -> pygit2.Repository:
    found = pygit2.discover_repository(str(start))
    if found is None:
        raise RecordError(f"{start} is not inside a git repository; run from your project's checkout")
    repo = pygit2.Repository(found)
    if repo.head_is_unborn:
        raise RecordError("the repository has no commits yet; commit your code, then run again")
    return repo


def prepare(start: Path, options: RecordOptions) -> Recording:
    if options.mode not in MODES:
        raise RecordError(f"unknown mode {options.mode!r}; use one of: {', '.join(MODES)}")
    repo = open_repository(start)
    policy = load_policy(repo)
    try:
        state = worktree_state(repo, policy.fingerprint_paths)
        require_some_present(state.trees)
    except FingerprintError as exc:
        raise RecordError(str(exc)) from exc
    key = signing.resolve_signing_key(repo, options.key)
    principal = options.principal or signing.default_principal(repo)
    return Recording(
        repo=repo, policy=policy, key=key, principal=principal,
        key_fingerprint=signing.key_fingerprint(key), mode=options.mode, state=state,
        head=str(repo.head.target),
        branch=None if repo.head_is_detached else repo.head.shorthand,
    )


def environment() -> dict[str, str]:
    import pytest  # imported here: the CLI's other commands need not pay for pytest

    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "gitproof": __version__,
    }


def build_receipt(rec: Recording, tests: list[TestResult], exit_status: int,
                  pytest_args: list[str], checks: list[dict[str, Any]]) -> Receipt:
    devices = gpu.detect_gpus(include_uuid=rec.policy.include_gpu_uuid)
    return Receipt(
        signer=rec.principal, key_fingerprint=rec.key_fingerprint,
        started=rec.started, finished=datetime.now(timezone.utc), mode=rec.mode,
        trees=dict(rec.state.trees), commit=rec.head, branch=rec.branch,
        dirty_outside=rec.state.dirty_outside, pytest_args=list(pytest_args),
        environment=environment(), gpus=[d.to_dict() for d in devices],
        tests=tests, checks=checks, exit_status=exit_status,
    )


def finish(rec: Recording, tests: list[TestResult], exit_status: int,
           pytest_args: list[str], checks: list[dict[str, Any]] | None = None) -> RecordOutcome:
    """Sign and store the receipt; refuse if the code changed during the run."""
    now = worktree_state(rec.repo, rec.policy.fingerprint_paths)
    if now.trees != rec.state.trees:
        raise RecordError("files under the fingerprint paths changed while the tests ran; "
                          "no receipt recorded. Run again without editing.")
    receipt = build_receipt(rec, tests, exit_status, pytest_args, checks or [])
    payload = serialize_payload(receipt)
    parse_payload(payload)  # a receipt we could not read back must never be stored
    signature = signing.sign(payload, rec.key)
    signed = SignedReceipt(receipt, payload, signature)
    if rec.state.matches_head:
        added = NotesStore(rec.repo).add(rec.head, signed)
        return RecordOutcome(signed, "note", rec.head, added)
    ref = PendingStore(rec.repo).add(signed)
    return RecordOutcome(signed, "pending", ref, True)
