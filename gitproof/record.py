"""Turning a finished pytest session into a signed, stored receipt.

``prepare`` runs before any test: it refuses early (no repository, no
commit, no fingerprint paths, no signing key, unknown shard) so a refused
run writes nothing. ``finish`` builds the receipt, signs it and stores it:
as a note on HEAD when the fingerprint paths match HEAD, otherwise as a
pending receipt for the commit that will record that content.

A run may cover one shard of the policy (``shard``): then its fingerprint
paths are the shard's, and only the shard's tests are selected. An
``unsigned`` run is a dry run: the receipt ends with the unsigned trailer
instead of a signature, and verification rejects it unless told otherwise.

An attesting run (``attest``) also signs a DSSE envelope over the receipt's in-toto
statement with the same key (gitproof.signing.attest) and stores it beside the receipt
(gitproof.attestation_notes); the key is loaded for it in ``prepare``, so a key that
cannot sign an envelope is refused before any test.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pygit2

from gitproof.errors import GitproofError
from gitproof import __version__, attestation_notes, ci_context, git, gpu, intoto, signing
from gitproof.fingerprint import (FingerprintError, WorktreeState, changed_fingerprint_paths, links_leaving,
                                  require_some_present, worktree_state)
from gitproof.notes import NotesStore
from gitproof.pending import PendingStore
from gitproof.policy import Policy, Shard, load_policy, selects
from gitproof.receipt import (MAX_NOTE_BYTES, MODES, UNSIGNED_KEY, UNSIGNED_TRAILER, Receipt, SignedReceipt,
                              TestResult, parse_payload, serialize_payload)

if TYPE_CHECKING:  # securesystemslib is imported only by runs that attest
    from securesystemslib.signer._signer import Signer  # where defined: the package re-exports it implicitly


class RecordError(GitproofError):
    """A receipt cannot be made; nothing was written."""


UNKNOWN_PRINCIPAL = "unknown"


@dataclass(frozen=True)
class RecordOptions:
    key: str | None = None
    principal: str | None = None
    mode: str | None = None  # None: the policy's pytest-gpu-proof `mode`, else local
    key_env: str | None = None  # name of an environment variable holding the private key
    unsigned: bool = False
    shard: str | None = None
    # this run's policy overrides (pytest-gpu-proof's recording flags)
    fingerprint_paths: list[str] | None = None
    required_marker: str | None = None
    include_gpu_uuid: bool | None = None
    require_gpu: bool = False
    attest: bool | None = None  # None: the policy's ``attest``

    def overrides(self) -> dict[str, Any]:
        return {"fingerprint_paths": self.fingerprint_paths, "required_marker": self.required_marker,
                "include_gpu_uuid": self.include_gpu_uuid}


@dataclass
class Recording:
    """Everything fixed before the tests run."""

    repo: pygit2.Repository
    policy: Policy
    key: signing.SigningKey | None  # None: an unsigned dry run
    principal: str
    key_fingerprint: str
    mode: str
    state: WorktreeState
    head: str
    branch: str | None
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    shard: Shard | None = None
    ci: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # warnings for the user, shown at the end
    attest: Signer | None = None  # signs the DSSE envelope beside the receipt (``attest``)
    run_url: str | None = None  # the CI job's page, for the in-toto statement

    @property
    def paths(self) -> list[str]:
        """The fingerprint paths of this run: its shard's, or the policy's."""
        return list(self.shard.paths) if self.shard else list(self.policy.fingerprint_paths)


def may_hold(selectors: list[str] | tuple[str, ...], nodeid: str) -> bool:
    """Could a collector (directory, module, class) hold a test the selectors select?"""
    return selects(selectors, nodeid) or any(
        s.startswith(nodeid + "::") or s.startswith(nodeid.rstrip("/") + "/") for s in selectors)


@dataclass(frozen=True)
class RecordOutcome:
    signed: SignedReceipt
    stored_as: str  # "note" or "pending"
    location: str  # commit id or pending ref
    added: bool
    attestation: str | None = None  # where its DSSE envelope went, when the run attests


def open_repository(start: Path) -> pygit2.Repository:
    repo = git.discover(start)
    if repo is None:
        raise RecordError(f"{start} is not inside a git repository; run from your project's checkout")
    if repo.head_is_unborn:
        raise RecordError("the repository has no commits yet; commit your code, then run again")
    return repo


def prepare(start: Path, options: RecordOptions,
            environ: Mapping[str, str] | None = None) -> Recording:
    """Everything that can refuse, checked before any test runs; nothing is written."""
    environ = os.environ if environ is None else environ
    if options.mode is not None and options.mode not in MODES:
        raise RecordError(f"unknown mode {options.mode!r}; use one of: {', '.join(MODES)}")
    _check_key_options(options)
    repo = open_repository(start)
    configured = load_policy(repo)
    policy = configured.overridden(options.overrides(), "command line")
    if options.require_gpu and not gpu.gpu_visible():
        raise RecordError("--gpu-proof-require-gpu: no GPU is visible here (NVML, nvidia-smi), so "
                          "the receipt could not show one; run on a GPU machine")
    shard = _shard(policy, options.shard)
    paths = shard.paths if shard else policy.fingerprint_paths
    try:
        state = worktree_state(repo, paths)
        require_some_present(state.trees)
    except FingerprintError as exc:
        raise RecordError(str(exc) + (f" (shard {shard.name!r})" if shard else "")) from exc
    leaving = links_leaving(repo, state.trees)
    if leaving:
        shown = ", ".join(leaving[:5]) + (f" (+{len(leaving) - 5} more)" if len(leaving) > 5 else "")
        raise RecordError(f"symbolic links under the fingerprint paths lead outside them: {shown}. A "
                          "receipt would not cover the code they lead to; replace each link with its "
                          "file, or add the target's folder to fingerprint_paths")
    principal = options.principal or policy.personal.principal
    if options.unsigned:
        key, fingerprint = None, UNSIGNED_KEY
        principal = principal or _principal_or_unknown(repo)
    else:
        if options.key_env:
            key = signing.key_from_env(repo, options.key_env, environ)
        else:
            key = signing.resolve_signing_key(repo, options.key or policy_key(policy, repo.workdir))
        principal = principal or signing.default_principal(repo)
        fingerprint = signing.key_fingerprint(key)
    return Recording(
        notes=_path_notes(configured, paths, state.trees),
        repo=repo, policy=policy, key=key, principal=principal,
        key_fingerprint=fingerprint, mode=options.mode or policy.personal.mode or "local", state=state,
        head=str(repo.head.target),
        branch=None if repo.head_is_detached else repo.head.shorthand,
        shard=shard, ci=ci_context.detect(environ),
        attest=_attest_signer(options, policy, key, fingerprint), run_url=run_url(environ),
    )


def _check_key_options(options: RecordOptions) -> None:
    if options.unsigned and (options.key or options.key_env):
        raise RecordError("--unsigned records no signature, so it takes no signing key; "
                          "drop --key / --key-env, or drop --unsigned to sign")
    if options.key and options.key_env:
        raise RecordError("--key and --key-env both name a signing key; pass only one")
    if options.unsigned and options.attest:
        raise RecordError("--attest signs a DSSE envelope with the receipt's key, and --unsigned signs "
                          "nothing; drop one of them")


def _attest_signer(options: RecordOptions, policy: Policy, key: signing.SigningKey | None,
                   fingerprint: str) -> Signer | None:
    """The in-process signer of the run's DSSE envelope; None when the run does not attest
    (an unsigned dry run never does). SigningError when the key cannot sign one."""
    wanted = policy.attest if options.attest is None else options.attest
    if not wanted or key is None:
        return None
    from gitproof.signing.attest import attest_signer, check_signer

    signer = attest_signer(key)
    check_signer(signer, fingerprint)
    return signer


def run_url(environ: Mapping[str, str]) -> str | None:
    """The CI job's page (GitLab's job, GitHub's workflow run), or None outside CI."""
    ci = ci_context.detect(environ) or {}
    if ci.get("job_url"):
        return str(ci["job_url"])
    if ci.get("provider") == "github-actions" and ci.get("repository") and ci.get("run_id"):
        server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        return f"{server}/{ci['repository']}/actions/runs/{ci['run_id']}"
    return None


def _listing(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit]) or "no file named"
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _refuse_oversized(rec: Recording, payload_size: int) -> None:
    """A note over MAX_NOTE_BYTES is never read, so adding to one would hide every receipt in it."""
    existing = NotesStore(rec.repo).note_bytes(rec.head) or b""
    total = len(existing) + payload_size + 4096  # the signature block, with room to spare
    if total > MAX_NOTE_BYTES:
        raise RecordError(f"this receipt ({payload_size} bytes) would make the note on {rec.head[:10]} "
                          f"{total} bytes, over the {MAX_NOTE_BYTES}-byte limit past which notes are not "
                          "read; the receipts already there are kept. Record fewer or smaller "
                          "gpu_proof_check metadata, or fewer tests per run")


def _path_notes(configured: Policy, paths: list[str], trees: dict[str, str | None]) -> list[str]:
    """Warnings about fingerprint paths that leave code uncovered, or that verify will not accept."""
    notes = [f"fingerprint path {path!r} does not exist, so the receipt covers no code there; set "
             "[tool.gpu_proof] fingerprint_paths to the folders holding your GPU code and tests "
             "([\".\"] is the whole repository)" for path, tree in trees.items() if tree is None]
    expected = configured.fingerprint_paths if not configured.shards else paths
    if list(paths) != list(expected):
        notes.append(f"this run fingerprints {', '.join(paths)}, but verify checks the policy's "
                     f"fingerprint_paths ({', '.join(expected)}): its receipt will fail paths-not-covered "
                     "unless they match")
    return notes


def policy_key(policy: Policy, root: str | None) -> str | None:
    """pytest-gpu-proof's ``key_path``, with ``~`` expanded as it did, relative to the repository root."""
    if not policy.personal.key:
        return None
    path = os.path.expanduser(policy.personal.key)
    return os.path.join(root, path) if root and not os.path.isabs(path) else path


def _shard(policy: Policy, name: str | None) -> Shard | None:
    if name is None:
        if policy.shards:  # an unsharded receipt could never count under this policy
            raise RecordError(f"the policy defines shards ({', '.join(sorted(policy.shards))}): "
                              "run one with --shard NAME (`git gpu-proof plan` says which)")
        return None
    if name in policy.shards:
        return policy.shards[name]
    if not policy.shards:
        raise RecordError(f"unknown shard {name!r}: the policy ({policy.source}) defines no shards; "
                          f"define it as [tool.gpu_proof.shards.{name}] with paths = [...] "
                          "(`git gpu-proof migrate` converts pytest-gpu-proof's shard settings)")
    raise RecordError(f"unknown shard {name!r}; the policy defines: {', '.join(sorted(policy.shards))}")


def _principal_or_unknown(repo: pygit2.Repository) -> str:
    try:
        return signing.default_principal(repo)
    except signing.SigningError:
        return UNKNOWN_PRINCIPAL


def environment() -> dict[str, str]:
    import pytest  # imported here: the CLI's other commands need not pay for pytest

    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "pytest": pytest.__version__,
        "gitproof": __version__,
    }


def build_receipt(rec: Recording, tests: list[TestResult], exit_status: int,
                  pytest_args: list[str], checks: list[dict[str, Any]],
                  gpu_uses: list[dict[str, Any]] | None = None) -> Receipt:
    facts = gpu.detect_facts(include_uuid=rec.policy.include_gpu_uuid)
    listed = {test.nodeid for test in tests}
    return Receipt(
        signer=rec.principal, key_fingerprint=rec.key_fingerprint,
        started=rec.started, finished=datetime.now(timezone.utc), mode=rec.mode,
        trees=dict(rec.state.trees), commit=rec.head, branch=rec.branch,
        dirty_outside=rec.state.dirty_outside, pytest_args=list(pytest_args),
        environment=environment(), gpus=[d.to_dict() for d in facts.devices],
        gpu_facts=facts.to_dict(), tests=tests, checks=checks, exit_status=exit_status,
        shard=rec.shard.name if rec.shard else None, ci=rec.ci,
        gpu_use=_one_record_per_test(gpu_uses or [], listed),
    )


def _one_record_per_test(uses: list[dict[str, Any]], listed: set[str]) -> list[dict[str, Any]]:
    """The last record of each listed test (a rerun's replaces the earlier attempt's);
    a receipt speaks for its own tests only."""
    kept: dict[str, dict[str, Any]] = {}
    for use in uses:
        if use.get("test") in listed:
            kept[use["test"]] = use
    return list(kept.values())


def finish(rec: Recording, tests: list[TestResult], exit_status: int,
           pytest_args: list[str], checks: list[dict[str, Any]] | None = None,
           gpu_uses: list[dict[str, Any]] | None = None) -> RecordOutcome:
    """Sign and store the receipt; refuse if the code changed during the run."""
    now = worktree_state(rec.repo, rec.paths)
    if now.trees != rec.state.trees:
        changed = changed_fingerprint_paths(rec.repo, rec.state.trees, now.trees)
        raise RecordError(f"files under the fingerprint paths changed while the tests ran ({_listing(changed)}); "
                          "no receipt recorded. Run again without editing; files the tests write "
                          "belong in .gitignore")
    receipt = build_receipt(rec, tests, exit_status, pytest_args, checks or [], gpu_uses)
    payload = serialize_payload(receipt)
    parse_payload(payload)  # a receipt we could not read back must never be stored
    if rec.state.matches_head:
        _refuse_oversized(rec, len(payload))
    if rec.key is None:
        signature = UNSIGNED_TRAILER + "\n"
    else:
        signature = signing.sign(payload, rec.key)
    signed = SignedReceipt(receipt, payload, signature)
    envelope = _envelope(rec, signed)  # made before anything is stored: a refusal writes nothing
    if rec.state.matches_head:
        added = NotesStore(rec.repo).add(rec.head, signed)
        if envelope is None:
            return RecordOutcome(signed, "note", rec.head, added)
        try:
            attestation_notes.append_envelope(rec.repo, rec.head, envelope)
        except GitproofError as exc:  # the notes ref would not take it (a full note, a ref that kept moving)
            raise RecordError(f"the receipt is recorded on {rec.head[:10]}, but its attestation is not: {exc}. "
                              "Run again with --attest to add one") from None
        return RecordOutcome(signed, "note", rec.head, added, attestation_notes.ATTESTATIONS_REF)
    ref = PendingStore(rec.repo).add(signed)
    held = attestation_notes.hold_pending(rec.repo, ref, envelope) if envelope is not None else None
    return RecordOutcome(signed, "pending", ref, True, held)


def _envelope(rec: Recording, signed: SignedReceipt) -> bytes | None:
    """The DSSE envelope line over the receipt's in-toto statement, when the run attests;
    RecordError when it could not be stored beside the receipt."""
    if rec.attest is None:
        return None
    from gitproof.signing.attest import attestation

    commits = [rec.head] if rec.state.matches_head else []  # a pending receipt's commit is not made yet
    line = attestation(signed, rec.attest, commits, url=rec.run_url, repo=rec.repo,
                       blob_paths=frozenset(intoto.file_paths(rec.repo, signed.receipt.trees)))
    try:
        attestation_notes.check_room(rec.repo, rec.head if rec.state.matches_head else None, line)
    except attestation_notes.AttestationNoteError as exc:
        raise RecordError(f"--attest: {exc}; no receipt recorded") from None
    return line
