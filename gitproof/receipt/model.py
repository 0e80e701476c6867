"""What a receipt states, and the exact bytes that get signed.

A receipt is UTF-8 text. Its *payload* runs from the magic line up to (not
including) the ``-----BEGIN SSH SIGNATURE-----`` line; the signature covers
exactly those bytes. docs/receipt-format.md is the specification.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from gitproof.errors import GitproofError
from gitproof.receipt.checks import CheckRecord
from gitproof.text import escape

if TYPE_CHECKING:  # imported where read: the gitproof.gpu package loads its device-facts side too
    from gitproof.gpu.records import GpuDevice, GpuFacts, GpuUse

MAGIC = "gpu-proof receipt v1"
MAGIC_PREFIX = "gpu-proof receipt v"  # any version's first line
SIG_BEGIN = "-----BEGIN SSH SIGNATURE-----"
SIG_END = "-----END SSH SIGNATURE-----"
UNSIGNED_TRAILER = "-----UNSIGNED RECEIPT-----"
UNSIGNED_KEY = "unsigned"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
FAILING_OUTCOMES = frozenset({"failed", "error"})
MODES = ("local", "ci-gpu")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ReceiptFormatError(GitproofError, ValueError):
    """Raised when text is not a well-formed receipt; the message says where and why."""


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    outcome: str
    duration: float

    def __init__(self, nodeid: str, outcome: str, duration: float) -> None:
        # Written out: the generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__, which costs a receipt of 5,000 tests a millisecond more to read.
        fields = self.__dict__
        fields["nodeid"] = nodeid
        fields["outcome"] = outcome
        fields["duration"] = duration

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING_OUTCOMES


_outcome_of = attrgetter("outcome")


@dataclass(frozen=True)
class Receipt:
    """Everything a receipt states. ``extra`` keeps header fields this version
    does not know, in order, so newer receipts stay readable and re-serialise
    byte for byte."""

    signer: str
    key_fingerprint: str
    started: datetime
    finished: datetime
    mode: str
    trees: dict[str, str | None]
    commit: str
    branch: str | None
    dirty_outside: bool
    pytest_args: list[str]
    environment: dict[str, str]
    gpus: list[dict[str, Any]]
    tests: list[TestResult]
    checks: list[dict[str, Any]] = field(default_factory=list)
    exit_status: int = 0
    shard: str | None = None
    ci: dict[str, Any] | None = None
    gpu_facts: dict[str, Any] | None = None
    gpu_use: list[dict[str, Any]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(OUTCOMES, 0)
        for outcome, number in Counter(map(_outcome_of, self.tests)).items():
            counts[outcome] += number
        return counts

    @property
    def verdict(self) -> str:
        """``passed`` only when pytest succeeded, at least one test passed and none failed.

        A run in which everything was skipped proves nothing, so it does not pass.
        """
        outcomes = set(map(_outcome_of, self.tests))
        ok = self.exit_status == 0 and "passed" in outcomes and outcomes.isdisjoint(FAILING_OUTCOMES)
        return "passed" if ok else "failed"

    # The JSON-valued fields, typed; ``gpus``, ``gpu_facts``, ``gpu_use`` and ``checks`` stay
    # the objects as read, so that the receipt re-serialises byte for byte.

    @property
    def device_records(self) -> list[GpuDevice]:
        """The ``gpu:`` lines."""
        from gitproof.gpu.records import GpuDevice
        return [GpuDevice.from_dict(gpu) for gpu in self.gpus]

    @property
    def facts_record(self) -> GpuFacts | None:
        """The ``gpu-facts:`` line, with the devices; None in a receipt from before gitproof 0.2."""
        from gitproof.gpu.records import GpuFacts
        return None if self.gpu_facts is None else GpuFacts.from_dict(self.gpu_facts, self.gpus)

    @property
    def use_records(self) -> list[GpuUse]:
        """The ``gpu-use:`` lines, one per test at most (the parser checks that)."""
        from gitproof.gpu.records import GpuUse
        return [GpuUse.from_dict(use) for use in self.gpu_use]

    @property
    def check_records(self) -> list[CheckRecord]:
        """The ``check:`` lines."""
        return [CheckRecord.from_dict(check) for check in self.checks]


@dataclass(frozen=True)
class SignedReceipt:
    """A receipt as stored: its exact payload bytes and armored signature."""

    receipt: Receipt
    payload: bytes
    signature: str

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8") + self.signature

    @property
    def unsigned(self) -> bool:
        """A dry-run receipt (``run --unsigned``): no signature at all."""
        return self.signature.rstrip("\n") == UNSIGNED_TRAILER

    @cached_property
    def identity(self) -> str:
        """Stable identity for deduplication: the payload and signature bytes (kept once computed:
        they cannot change, and hashing a receipt of thousands of tests takes a millisecond)."""
        digest = hashlib.sha256(self.payload)
        digest.update(self.signature.encode("utf-8"))
        return digest.hexdigest()


# -- serialisation ------------------------------------------------------------

def format_time(moment: datetime) -> str:
    """A receipt's timestamp: UTC, to the microsecond."""
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


# What json.dumps(value, separators=(", ", ": "), ensure_ascii=False, allow_nan=False) would make,
# without building an encoder per call.
_JSON_ENCODER = json.JSONEncoder(separators=(", ", ": "), ensure_ascii=False, allow_nan=False)


def json_text(value: Any) -> str:
    """A JSON-valued field, on one line, as every version writes it."""
    return _JSON_ENCODER.encode(value)


def counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{outcome}={counts[outcome]}" for outcome in OUTCOMES)


def _gpu_lines(gpus: list[dict[str, Any]]) -> list[str]:
    if not gpus:
        return ["gpu: none"]
    return [f"gpu: {json_text(gpu)}" for gpu in gpus]


def header_lines(receipt: Receipt) -> list[str]:
    """The header's lines up to the ``gpu-use:`` records, as this version writes them."""
    lines = [
        MAGIC,
        f"verdict: {receipt.verdict}",
        f"counts: {counts_text(receipt.counts)}",
        *_gpu_lines(receipt.gpus),
        *([f"gpu-facts: {json_text(receipt.gpu_facts)}"] if receipt.gpu_facts is not None else []),
        f"signer: {escape(receipt.signer)} {receipt.key_fingerprint}",
        f"time: {format_time(receipt.started)} {format_time(receipt.finished)}",
        f"mode: {receipt.mode}",
    ]
    if receipt.shard is not None:
        lines.append(f"shard: {escape(receipt.shard)}")
    for path, tree in receipt.trees.items():
        lines.append(f"tree: {tree or 'absent'} {escape(path)}")
    lines += [
        f"commit: {receipt.commit}",
        f"branch: {escape(receipt.branch) if receipt.branch else '(detached)'}",
        f"dirty-outside-paths: {'yes' if receipt.dirty_outside else 'no'}",
        f"exit-status: {receipt.exit_status}",
        f"pytest-args: {json_text(receipt.pytest_args)}",
    ]
    lines += [f"env: {escape(k)}={escape(v)}" for k, v in receipt.environment.items()]
    if receipt.ci is not None:
        lines.append(f"ci: {json_text(receipt.ci)}")
    lines += [f"check: {json_text(check)}" for check in receipt.checks]
    return lines


def format_test_line(test: TestResult) -> str:
    """One ``test:`` line, as this version writes it."""
    return f"test: {test.outcome} {test.duration:.3f}s {escape(test.nodeid)}"


def serialize_payload(receipt: Receipt) -> bytes:
    """The exact bytes that get signed."""
    lines = header_lines(receipt)
    lines += [f"gpu-use: {json_text(use)}" for use in receipt.gpu_use]
    lines += [f"{key}: {value}" for key, value in receipt.extra]
    lines.append("")
    lines += [format_test_line(t) for t in receipt.tests]
    return ("\n".join(lines) + "\n").encode("utf-8")
