"""A receipt as an in-toto Statement v1 with the test-result predicate, for in-toto tooling.

One signed receipt becomes one statement (``statement``):

* ``subject``: the commits the caller names (digest ``gitCommit``) and the receipt's
  fingerprint paths (digest ``gitTree``; ``gitBlob`` for a path that is a file). The
  commit a receipt was made on (its ``commit:``) is named only when the run tested it
  (see :func:`tested_commits`): a run on a checkout with uncommitted changes under the
  fingerprint paths records a commit whose code it did not test. The receipt
  descriptor's ``commit`` annotation carries it either way;
* ``predicateType``: https://in-toto.io/attestation/test-result/v0.1;
* ``predicate``: ``result`` (see :func:`result_of`), the tests by outcome, ``url`` when
  known, and ``configuration``: the receipt itself, bytes included, so a consumer can
  check its SSH signature with ``ssh-keygen -Y verify -n gpu-proof`` without trusting
  this statement, and one descriptor per GPU the receipt lists.

The statement is built with the in-toto-attestation bindings (protobuf), imported inside
the functions that use them: the hooks import gitproof but never build a statement.
``docs/receipt-format.md`` (section 6) describes the statement and where its DSSE
envelopes are stored.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import pygit2

from gitproof.receipt import SignedReceipt

if TYPE_CHECKING:
    from gitproof.receipt import Receipt

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://in-toto.io/attestation/test-result/v0.1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"  # the DSSE payloadType of an in-toto statement
RECEIPT_DESCRIPTOR = "gpu-proof-receipt"  # the configuration entry that carries the receipt
RECEIPT_MEDIA_TYPE = "text/plain"
PASSED, WARNED, FAILED = "PASSED", "WARNED", "FAILED"
WARNED_OUTCOMES = frozenset({"skipped", "xfailed", "xpassed"})
FAILED_OUTCOMES = frozenset({"failed", "error"})
GPU_FIELDS = ("index", "name", "driver", "memory_mib", "compute_capability", "uuid", "pci_bus_id", "cuda_driver",
              "mig", "visible")
_GIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def receipt_digest(receipt_bytes: bytes) -> str:
    """The hex SHA-256 of a receipt's bytes, as its configuration descriptor states it."""
    return hashlib.sha256(receipt_bytes).hexdigest()


def stored_bytes(signed: SignedReceipt) -> bytes:
    """The receipt as a note stores it: payload and signature block."""
    return signed.text.encode("utf-8")


def _checks_failed(receipt: Receipt) -> set[str]:
    """Tests with a gpu_proof_check that did not pass (a test recorded xfailed is exempt, as in verify)."""
    xfailed = {t.nodeid for t in receipt.tests if t.outcome == "xfailed"}
    return {c.test for c in receipt.check_records if not c.passed and c.test not in xfailed}


def result_of(receipt: Receipt) -> str:
    """The predicate's ``result``.

    * ``FAILED`` when the receipt's verdict is ``failed`` (a test failed or errored, no
      test passed, or pytest's exit status was not 0) or a ``gpu_proof_check`` did not pass;
    * ``WARNED`` when it passed, but a test was skipped, xfailed or xpassed, or the run had
      uncommitted changes outside the fingerprint paths (``dirty-outside-paths: yes``);
    * ``PASSED`` otherwise.
    """
    if receipt.verdict != "passed" or _checks_failed(receipt):
        return FAILED
    if receipt.dirty_outside or any(t.outcome in WARNED_OUTCOMES for t in receipt.tests):
        return WARNED
    return PASSED


def tests_by_result(receipt: Receipt) -> dict[str, list[str]]:
    """Node ids for ``passedTests``, ``warnedTests`` and ``failedTests``. A test whose
    gpu_proof_check did not pass is listed as failed, whatever its own outcome."""
    checks_failed = _checks_failed(receipt)
    lists: dict[str, list[str]] = {"passedTests": [], "warnedTests": [], "failedTests": []}
    for test in receipt.tests:
        if test.outcome in FAILED_OUTCOMES or test.nodeid in checks_failed:
            lists["failedTests"].append(test.nodeid)
        elif test.outcome in WARNED_OUTCOMES:
            lists["warnedTests"].append(test.nodeid)
        else:
            lists["passedTests"].append(test.nodeid)
    return lists


def file_paths(repo: pygit2.Repository, trees: dict[str, str | None]) -> set[str]:
    """The fingerprint paths whose recorded id names a blob here (a path that is a file)."""
    from gitproof.git import lookup

    return {path for path, object_id in trees.items()
            if object_id is not None and getattr(lookup(repo, object_id), "type_str", None) == "blob"}


def tested_commits(repo: pygit2.Repository, receipt: Receipt, commits: Iterable[str]) -> list[str]:
    """Those of ``commits`` whose code the receipt's run tested: well-formed ids of commits in the
    repository whose trees at the receipt's paths are exactly the receipt's trees (a path
    recorded absent must be absent). A receipt that records no path tested no commit."""
    from gitproof.fingerprint import commit_trees
    from gitproof.git import lookup

    paths = list(receipt.trees)
    tested: list[str] = []
    for commit_id in dict.fromkeys(commits):
        commit = lookup(repo, commit_id) if _GIT_ID.fullmatch(commit_id) else None
        if paths and isinstance(commit, pygit2.Commit) and commit_trees(repo, commit, paths) == receipt.trees:
            tested.append(commit_id)
    return tested


def statement(signed: SignedReceipt, receipt_bytes: bytes, commits: list[str], *, url: str | None = None,
              blob_paths: Collection[str] = ()) -> dict[str, Any]:
    """The in-toto Statement v1 for one receipt, as JSON-ready data.

    ``receipt_bytes`` are the receipt as stored (see :func:`stored_bytes`); ``commits``
    the commit ids it speaks for (none for a receipt not yet attached to a commit);
    ``blob_paths`` the fingerprint paths that are files (see :func:`file_paths`).
    ValueError when there would be no subject, or a commit is not a git object id.
    """
    from google.protobuf import json_format
    from in_toto_attestation.v1.statement import Statement

    predicate = _predicate(signed.receipt, receipt_bytes, url)
    result = Statement([d.pb for d in _subjects(signed.receipt, commits, blob_paths)], PREDICATE_TYPE, predicate)
    result.validate()
    data: dict[str, Any] = _whole_numbers(json_format.MessageToDict(result.pb))
    return data


def _whole_numbers(value: Any) -> Any:
    """protobuf's Struct holds every number as a double: ``81559`` comes back ``81559.0``.
    Whole numbers are written back as integers (the same JSON number), as the receipt has them."""
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _subjects(receipt: Receipt, commits: list[str], blobs: Collection[str]) -> list[Any]:
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

    bad = [c for c in commits if not _GIT_ID.fullmatch(c)]
    if bad:
        raise ValueError(f"not a git commit id: {bad[0][:80]!r}")
    subjects = [ResourceDescriptor(name=c, digest={"gitCommit": c}) for c in dict.fromkeys(commits)]
    subjects += [ResourceDescriptor(name=path, digest={"gitBlob" if path in blobs else "gitTree": tree})
                 for path, tree in receipt.trees.items() if tree is not None]
    if not subjects:
        raise ValueError("a statement needs a subject: no commit given and the receipt records no tree")
    return subjects


def _predicate(receipt: Receipt, data: bytes, url: str | None) -> dict[str, Any]:
    from google.protobuf import json_format
    from in_toto_attestation.predicates.test_result.v0.test_result_pb2 import TestResult

    lists = tests_by_result(receipt)
    message = TestResult(result=result_of(receipt), configuration=[d.pb for d in _configuration(receipt, data)],
                         url=url or "", passed_tests=lists["passedTests"], warned_tests=lists["warnedTests"],
                         failed_tests=lists["failedTests"])
    predicate: dict[str, Any] = json_format.MessageToDict(message)
    for name, tests in lists.items():  # present even when empty: a reader need not guess
        predicate.setdefault(name, tests)
    return predicate


def _configuration(receipt: Receipt, data: bytes) -> list[Any]:
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

    about = {"signer": receipt.signer, "keyFingerprint": receipt.key_fingerprint, "verdict": receipt.verdict,
             "mode": receipt.mode, "started": receipt.started.isoformat(), "finished": receipt.finished.isoformat(),
             "commit": receipt.commit, **({"shard": receipt.shard} if receipt.shard else {})}
    descriptors = [ResourceDescriptor(name=RECEIPT_DESCRIPTOR, digest={"sha256": receipt_digest(data)},
                                      content=data, media_type=RECEIPT_MEDIA_TYPE, annotations=about)]
    for gpu in receipt.gpus:  # as the receipt lists them (the index is NVML's, not a CUDA ordinal)
        descriptors.append(ResourceDescriptor(name=f"gpu {gpu.get('index', '?')}: {gpu.get('name', '?')}",
                                              annotations=_gpu_annotations(gpu)))
    return descriptors


def _gpu_annotations(gpu: dict[str, Any]) -> dict[str, Any]:
    """A ``gpu:`` object's known fields with plain values. A newer writer's keys, or values of
    another shape, are left out: the receipt itself, in the configuration, keeps them all."""
    def plain(value: Any) -> bool:
        return value is None or isinstance(value, (str, bool)) or (isinstance(value, int) and abs(value) < 2**53)

    return {key: value for key, value in gpu.items() if key in GPU_FIELDS and plain(value)}
