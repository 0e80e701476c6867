"""The receipt: a readable, line-oriented record of one GPU test session.

A receipt is UTF-8 text. Its *payload* runs from the magic line up to (not
including) the ``-----BEGIN SSH SIGNATURE-----`` line; the signature covers
exactly those bytes. docs/receipt-format.md is the specification.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from gitproof.errors import GitproofError

MAGIC = "gpu-proof receipt v1"
MAGIC_PREFIX = "gpu-proof receipt v"  # any version's first line
# A note larger than this is not read: 10 receipts of 5,000 tests each with kernel evidence
# fit many times over, and a hostile 100 MB note would otherwise cost gigabytes to split.
MAX_NOTE_BYTES = 32 * 1024 * 1024
SIG_BEGIN = "-----BEGIN SSH SIGNATURE-----"
SIG_END = "-----END SSH SIGNATURE-----"
UNSIGNED_TRAILER = "-----UNSIGNED RECEIPT-----"
UNSIGNED_KEY = "unsigned"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
FAILING_OUTCOMES = frozenset({"failed", "error"})
MODES = ("local", "ci-gpu")
VERDICTS = ("passed", "failed")

_KEY_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_HEX40_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_ESCAPE_RE = re.compile(r"%[0-9A-F]{2}")
_NEEDS_ESCAPE_RE = re.compile(r"[%\x00-\x1f\x7f]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ReceiptFormatError(GitproofError, ValueError):
    """The text is not a well-formed receipt; the message says where and why."""


# -- value escaping -----------------------------------------------------------

def escape(value: str) -> str:
    """Make any string fit on one line, reversibly.

    ``%``, control characters, DEL and leading/trailing spaces become ``%XX``
    (uppercase hex of the UTF-8 byte); everything else stays as it is.
    """
    if not _NEEDS_ESCAPE_RE.search(value) and not value.startswith(" ") and not value.endswith(" "):
        return value
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        code = ord(ch)
        if ch == "%" or code < 0x20 or code == 0x7F or (ch == " " and i in (0, last)):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


# C1 controls, bidi marks and overrides, line separators, and the surrogate escapes that stand
# for bytes that were not UTF-8 (from a file read with errors="surrogateescape").
_INVISIBLE_RE = re.compile("[\u0080-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                           "\udc80-\udcff]")


def printable(value: str) -> str:
    """:func:`escape`, and also the C1 controls (U+0080..U+009F, which some
    terminals obey) and the bidirectional overrides that could reorder what a
    reader sees: for showing receipt text, which is unauthenticated until
    verified, on a terminal. Not part of the receipt format."""
    escaped = escape(value)
    if not _INVISIBLE_RE.search(escaped):
        return escaped
    return _INVISIBLE_RE.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogateescape")), escaped)


# Control characters other than newline and tab, with everything _INVISIBLE_RE covers.
_UNSAFE_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u061c\u200e\u200f\u2028\u2029"
                        "\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def terminal_safe(text: str) -> str:
    """A message for the terminal, with what could drive or disguise it shown as %XX.

    Unlike :func:`printable`, lines and ``%`` stay as they are: for whole messages that
    may quote a hostile path or value (from a policy file, say), not for receipt fields."""
    return _UNSAFE_RE.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogateescape")), text)


def unescape(text: str) -> str:
    """Strict inverse of :func:`escape`: non-canonical input is an error."""
    if "%" not in text:
        if escape(text) != text:
            raise ReceiptFormatError(f"value is not canonically escaped: {text!r}")
        return text
    pos = 0
    raw = bytearray()
    for match in _ESCAPE_RE.finditer(text):
        raw += text[pos:match.start()].encode("utf-8")
        raw.append(int(match.group()[1:], 16))
        pos = match.end()
    raw += text[pos:].encode("utf-8")
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReceiptFormatError(f"escaped value is not UTF-8: {text!r}") from exc
    if escape(value) != text:
        raise ReceiptFormatError(f"value is not canonically escaped: {text!r}")
    return value


# -- model --------------------------------------------------------------------

@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, despite the name

    nodeid: str
    outcome: str
    duration: float

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING_OUTCOMES


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
        counts = {outcome: 0 for outcome in OUTCOMES}
        for test in self.tests:
            counts[test.outcome] += 1
        return counts

    @property
    def verdict(self) -> str:
        """``passed`` only when pytest succeeded, at least one test passed and none failed.

        A run in which everything was skipped proves nothing, so it does not pass.
        """
        ok = (self.exit_status == 0 and any(t.outcome == "passed" for t in self.tests)
              and not any(t.failing for t in self.tests))
        return "passed" if ok else "failed"

    def with_signer(self, signer: str, key_fingerprint: str) -> "Receipt":
        return replace(self, signer=signer, key_fingerprint=key_fingerprint)


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

    @property
    def identity(self) -> str:
        """Stable identity for deduplication: the payload and signature bytes."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


# -- serialisation ------------------------------------------------------------

def _format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False, allow_nan=False)


def _counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{outcome}={counts[outcome]}" for outcome in OUTCOMES)


def _gpu_lines(gpus: list[dict[str, Any]]) -> list[str]:
    if not gpus:
        return ["gpu: none"]
    return [f"gpu: {_json(gpu)}" for gpu in gpus]


def serialize_payload(receipt: Receipt) -> bytes:
    """The exact bytes that get signed."""
    lines = [
        MAGIC,
        f"verdict: {receipt.verdict}",
        f"counts: {_counts_text(receipt.counts)}",
        *_gpu_lines(receipt.gpus),
        *([f"gpu-facts: {_json(receipt.gpu_facts)}"] if receipt.gpu_facts is not None else []),
        f"signer: {escape(receipt.signer)} {receipt.key_fingerprint}",
        f"time: {_format_time(receipt.started)} {_format_time(receipt.finished)}",
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
        f"pytest-args: {_json(receipt.pytest_args)}",
    ]
    lines += [f"env: {escape(k)}={escape(v)}" for k, v in receipt.environment.items()]
    if receipt.ci is not None:
        lines.append(f"ci: {_json(receipt.ci)}")
    lines += [f"check: {_json(check)}" for check in receipt.checks]
    lines += [f"gpu-use: {_json(use)}" for use in receipt.gpu_use]
    lines += [f"{key}: {value}" for key, value in receipt.extra]
    lines.append("")
    lines += [f"test: {t.outcome} {t.duration:.3f}s {escape(t.nodeid)}" for t in receipt.tests]
    return ("\n".join(lines) + "\n").encode("utf-8")


# -- parsing ------------------------------------------------------------------

class _HeaderParser:
    """Turns header lines into Receipt fields; strict about every known key."""

    SINGLE = ("verdict", "counts", "signer", "time", "mode", "commit", "branch",
              "dirty-outside-paths", "exit-status", "pytest-args", "shard", "ci", "gpu-facts")

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}
        self.trees: dict[str, str | None] = {}
        self.gpus: list[dict[str, Any]] = []
        self.gpu_none = False
        self.env: dict[str, str] = {}
        self.checks: list[dict[str, Any]] = []
        self.gpu_use: list[dict[str, Any]] = []
        self.extra: list[tuple[str, str]] = []
        self.extra_keys: set[str] = set()

    def feed(self, key: str, value: str) -> None:
        if key in self.SINGLE:
            if key in self.seen:
                raise ReceiptFormatError(f"header field {key!r} appears twice")
            self.seen[key] = value
        elif key == "tree":
            self._tree(value)
        elif key == "gpu":
            self._gpu(value)
        elif key == "env":
            name, sep, val = value.partition("=")
            if not sep or unescape(name) in self.env:
                raise ReceiptFormatError(f"bad or repeated env field: {value!r}")
            self.env[unescape(name)] = unescape(val)
        elif key == "check":
            self.checks.append(_check_object(value))
        elif key == "gpu-use":
            self.gpu_use.append(_gpu_use_object(value))
        else:
            self.extra.append((key, value))
            self.extra_keys.add(key)

    def _tree(self, value: str) -> None:
        tree, sep, path = value.partition(" ")
        if not sep or not (tree == "absent" or _HEX40_RE.match(tree)):
            raise ReceiptFormatError(f"bad tree field: {value!r}")
        path = unescape(path)
        if path in self.trees:
            raise ReceiptFormatError(f"tree for {path!r} appears twice")
        self.trees[path] = None if tree == "absent" else tree

    def _gpu(self, value: str) -> None:
        if value == "none":
            if self.gpus or self.gpu_none:
                raise ReceiptFormatError("'gpu: none' mixed with other gpu fields")
            self.gpu_none = True
            return
        if self.gpu_none:
            raise ReceiptFormatError("'gpu: none' mixed with other gpu fields")
        self.gpus.append(_json_object(value, "gpu"))

    def require(self, key: str) -> str:
        if key not in self.seen:
            raise ReceiptFormatError(f"missing header field {key!r}")
        return self.seen[key]


def _json_object(value: str, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ReceiptFormatError(f"{what} field is not valid JSON: {value!r}") from exc
    if not isinstance(parsed, dict):
        raise ReceiptFormatError(f"{what} field must be a JSON object: {value!r}")
    return parsed


_OPTIONAL_TEXT = (str, type(None))
_TEXT_LIST = "list of strings"
# Known keys and their types; other keys are a newer writer's and are kept unread.
_GPU_USE_KEYS = {"method": _OPTIONAL_TEXT, "evidence": (str,), "devices": _TEXT_LIST,
                 "nvml": _OPTIONAL_TEXT, "kernels": (dict, type(None))}
# The kernels object of a gpu-use record (CUPTI's totals); counts are whole numbers in 0 .. 2**64-1.
_KERNEL_KEYS = {"tracer": _OPTIONAL_TEXT, "error": (str,), "devices": _TEXT_LIST, "top": (list,),
                "memcpy": (dict,), "memset": (dict,)}
_KERNEL_COUNTS = ("launches", "gpu_time_ns", "dropped", "incomplete", "untimed")
_MAX_COUNT = 2**64 - 1  # CUPTI's counters and timestamps are 64-bit
_GPU_FACTS_KEYS = {"cuda_visible_devices": _OPTIONAL_TEXT, "confidential_computing": (dict, type(None)),
                   "notes": _TEXT_LIST}


def _gpu_use_object(value: str) -> dict[str, Any]:
    use = _json_object(value, "gpu-use")
    if not isinstance(use.get("test"), str):
        raise ReceiptFormatError(f"gpu-use field needs a string 'test': {value!r}")
    if "used" not in use or not (use["used"] is None or isinstance(use["used"], bool)):
        raise ReceiptFormatError(f"gpu-use field needs 'used' true, false or null: {value!r}")
    _check_known_keys(use, _GPU_USE_KEYS, "gpu-use", value)
    if isinstance(use.get("kernels"), dict):
        _check_kernels(use["kernels"], value)
    return use


def _check_kernels(kernels: dict[str, Any], value: str) -> None:
    _check_known_keys(kernels, _KERNEL_KEYS, "gpu-use kernels", value)
    counts = [kernels[key] for key in _KERNEL_COUNTS if key in kernels]
    for part in ("memcpy", "memset"):
        counts += [kernels[part].get(key) for key in ("count", "bytes") if key in kernels.get(part, {})]
    for entry in kernels.get("top", []):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
            raise ReceiptFormatError(f"gpu-use kernels field has a bad 'top' entry: {value!r}")
        counts += [entry[key] for key in ("launches", "gpu_time_ns") if key in entry]
    if not all(_is_count(n) for n in counts):
        raise ReceiptFormatError(f"gpu-use kernels field has a count that is not a whole number "
                                 f"from 0 to 2**64-1: {value!r}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT


def _gpu_facts_object(value: str) -> dict[str, Any]:
    facts = _json_object(value, "gpu-facts")
    if not isinstance(facts.get("source"), str):
        raise ReceiptFormatError(f"gpu-facts field needs a string 'source': {value!r}")
    _check_known_keys(facts, _GPU_FACTS_KEYS, "gpu-facts", value)
    return facts


CHECK_OUTCOMES = ("passed", "failed", "error")
_NON_FINITE = ("nan", "inf", "-inf")  # how a check writes an error maximum that is not finite


def _is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= 2**64 if isinstance(value, int) else math.isfinite(value)


# A check record's known keys: a test for the value, and what it must be; others are kept unread.
_CHECK_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "test": (lambda v: isinstance(v, str), "a string"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "outcome": (lambda v: v in CHECK_OUTCOMES, "passed, failed or error"),
    "ok": (lambda v: isinstance(v, bool), "true or false"),
    "message": (lambda v: isinstance(v, str), "a string"),
    "rtol": (_is_finite_number, "a finite number"),
    "atol": (_is_finite_number, "a finite number"),
    "max_abs_err": (lambda v: _is_finite_number(v) or v in _NON_FINITE, 'a finite number, "nan", "inf" or "-inf"'),
    "max_rel_err": (lambda v: _is_finite_number(v) or v in _NON_FINITE, 'a finite number, "nan", "inf" or "-inf"'),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
}

MAX_CHECK_QUOTE = 300  # what a refusal quotes of a check line, whose message may run to kilobytes


def _quoted(value: str) -> str:
    return repr(value) if len(value) <= MAX_CHECK_QUOTE else repr(value[:MAX_CHECK_QUOTE]) + "..."


def _check_object(value: str) -> dict[str, Any]:
    """A ``check:`` record: ``test`` and ``name``, and an ``outcome`` or (written before
    outcomes, and still beside them) ``ok``; each known key of the right type."""
    check = _json_object(value, "check")
    for key in ("test", "name"):
        if key not in check:
            raise ReceiptFormatError(f"check field has no {key!r}: {_quoted(value)}")
    for key, (valid, wanted) in _CHECK_FIELDS.items():
        if key in check and not valid(check[key]):
            raise ReceiptFormatError(f"check field has a bad {key!r} (must be {wanted}): {_quoted(value)}")
    if "outcome" not in check and "ok" not in check:
        raise ReceiptFormatError(f"check field has neither 'outcome' nor 'ok': {_quoted(value)}")
    if "outcome" in check and "ok" in check and check["ok"] != (check["outcome"] == "passed"):
        raise ReceiptFormatError(f"check field's 'ok' contradicts its 'outcome': {_quoted(value)}")
    return check


def check_outcome(check: dict[str, Any]) -> str:
    """``passed``, ``failed`` or ``error`` for a parsed check record; an older record's
    ``ok: false`` is ``failed``."""
    if "outcome" in check:
        return check["outcome"]
    return "passed" if check["ok"] else "failed"


def _check_known_keys(data: dict[str, Any], known: dict[str, Any], what: str, value: str) -> None:
    for key, kind in known.items():
        if key not in data:
            continue
        item = data[key]
        ok = (isinstance(item, list) and all(isinstance(x, str) for x in item)) if kind == _TEXT_LIST \
            else isinstance(item, kind)
        if not ok:
            raise ReceiptFormatError(f"{what} field has a bad {key!r}: {value!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse_time(text: str) -> datetime:
    try:
        return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise ReceiptFormatError(f"bad timestamp {text!r}") from exc


def _parse_test(value: str, lineno: int) -> TestResult:
    parts = value.split(" ", 2)
    if len(parts) != 3 or parts[0] not in OUTCOMES or not re.fullmatch(r"\d+\.\d{3}s", parts[1]):
        raise ReceiptFormatError(f"line {lineno}: bad test line {value!r}")
    return TestResult(nodeid=unescape(parts[2]), outcome=parts[0], duration=float(parts[1][:-1]))


def _split_line(line: str, lineno: int) -> tuple[str, str]:
    key, sep, value = line.partition(": ")
    if not sep or not _KEY_RE.match(key):
        raise ReceiptFormatError(f"line {lineno}: expected 'key: value', got {line!r}")
    if _CONTROL_RE.search(line):
        raise ReceiptFormatError(f"line {lineno}: control character in line")
    return key, value


def parse_payload(payload: bytes) -> Receipt:
    """Parse the signed part of a receipt; raise ReceiptFormatError on anything odd."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReceiptFormatError("receipt is not valid UTF-8") from exc
    if not text.endswith("\n") or "\r" in text:
        raise ReceiptFormatError("receipt must use LF line endings and end with a newline")
    lines = text[:-1].split("\n")
    if lines[0] != MAGIC:
        if lines[0].startswith("gpu-proof receipt v"):
            raise ReceiptFormatError(f"unsupported receipt format version: first line {lines[0]!r}")
        raise ReceiptFormatError(f"first line must be {MAGIC!r}, got {lines[0]!r}")
    try:
        blank = lines.index("")
    except ValueError:
        raise ReceiptFormatError("missing blank line between header and tests") from None
    header = _HeaderParser()
    for lineno, line in enumerate(lines[1:blank], start=2):
        header.feed(*_split_line(line, lineno))
    tests = []
    for lineno, line in enumerate(lines[blank + 1:], start=blank + 2):
        key, value = _split_line(line, lineno)
        if key != "test":
            raise ReceiptFormatError(f"line {lineno}: only 'test:' lines may follow the header")
        tests.append(_parse_test(value, lineno))
    receipt = _build(header, tests)
    # Fields this version does not know may stand anywhere in the header; all the
    # others must be exactly as this version writes them.
    unknown = {i for i, line in enumerate(lines[1:blank], start=1) if _split_line(line, i)[0] in header.extra_keys}
    known_lines = [line for i, line in enumerate(lines) if i not in unknown]
    if serialize_payload(replace(receipt, extra=[])) != ("\n".join(known_lines) + "\n").encode("utf-8"):
        raise ReceiptFormatError("receipt is not in canonical form (field order or formatting)")
    return receipt


def _build(header: _HeaderParser, tests: list[TestResult]) -> Receipt:
    signer, _, fingerprint = header.require("signer").rpartition(" ")
    started, _, finished = header.require("time").partition(" ")
    mode = header.require("mode")
    if mode not in MODES:
        raise ReceiptFormatError(f"unknown mode {mode!r}")
    commit = header.require("commit")
    if not _HEX40_RE.match(commit):
        raise ReceiptFormatError(f"bad commit id {commit!r}")
    if not header.trees:
        raise ReceiptFormatError("receipt names no fingerprint trees")
    if not header.gpus and not header.gpu_none:
        raise ReceiptFormatError("missing header field 'gpu'")
    branch = header.require("branch")
    dirty = header.require("dirty-outside-paths")
    if dirty not in ("yes", "no"):
        raise ReceiptFormatError(f"dirty-outside-paths must be yes or no, got {dirty!r}")
    exit_status = header.require("exit-status")
    if not re.fullmatch(r"-?\d{1,9}", exit_status):
        raise ReceiptFormatError(f"bad exit-status {exit_status!r}")
    args = _parse_args(header.require("pytest-args"))
    receipt = Receipt(
        signer=unescape(signer), key_fingerprint=fingerprint,
        started=_parse_time(started), finished=_parse_time(finished), mode=mode,
        trees=header.trees, commit=commit,
        branch=None if branch == "(detached)" else unescape(branch),
        dirty_outside=dirty == "yes", pytest_args=args, environment=header.env,
        gpus=header.gpus, tests=tests, checks=header.checks,
        exit_status=int(exit_status), extra=header.extra,
        shard=unescape(header.seen["shard"]) if "shard" in header.seen else None,
        ci=_json_object(header.seen["ci"], "ci") if "ci" in header.seen else None,
        gpu_facts=_gpu_facts_object(header.seen["gpu-facts"]) if "gpu-facts" in header.seen else None,
        gpu_use=header.gpu_use,
    )
    _check_consistency(receipt, header)
    return receipt


def _parse_args(value: str) -> list[str]:
    try:
        args = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise ReceiptFormatError(f"pytest-args is not valid JSON: {value!r}") from exc
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ReceiptFormatError("pytest-args must be a JSON list of strings")
    return args


def _check_consistency(receipt: Receipt, header: _HeaderParser) -> None:
    if header.require("verdict") != receipt.verdict:
        raise ReceiptFormatError("verdict does not match the test results")
    if header.require("counts") != _counts_text(receipt.counts):
        raise ReceiptFormatError("counts do not match the test lines")
    _check_gpu_use_names_tests(receipt)
    if not receipt.key_fingerprint.startswith("SHA256:") and receipt.key_fingerprint != UNSIGNED_KEY:
        raise ReceiptFormatError(f"bad key fingerprint {receipt.key_fingerprint!r}")


def _check_gpu_use_names_tests(receipt: Receipt) -> None:
    """Each gpu-use record speaks for one listed test, and for it alone."""
    listed = {test.nodeid for test in receipt.tests}
    seen: set[str] = set()
    for use in receipt.gpu_use:
        if use["test"] not in listed:
            raise ReceiptFormatError(f"gpu-use record for a test the receipt does not list: {use['test']!r}")
        if use["test"] in seen:
            raise ReceiptFormatError(f"two gpu-use records for {use['test']!r}")
        seen.add(use["test"])


# -- notes: several receipts in one blob ----------------------------------------

@dataclass(frozen=True)
class NoteEntry:
    """One receipt found in a note, or the reason it could not be read."""

    signed: SignedReceipt | None
    error: str | None
    index: int
    code: str = "malformed"  # the failure code an unreadable entry gets

def split_note(text: str) -> Iterator[tuple[str, str]]:
    """Split a note into (payload, armored signature) text pairs.

    Blank lines between receipts are allowed; anything else outside a
    receipt is reported as an error entry with empty payload.
    """
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].strip() == "":
            i += 1
            continue
        if lines[i].rstrip("\n") != MAGIC:
            end = _next_magic(lines, i + 1)
            yield "", "".join(lines[i:end])
            i = end
            continue
        start = i
        while i < len(lines) and lines[i].rstrip("\n") not in (SIG_BEGIN, UNSIGNED_TRAILER):
            if i > start and lines[i].startswith(MAGIC_PREFIX):  # any version's receipt starts anew
                break
            i += 1
        if i < len(lines) and lines[i].rstrip("\n") == UNSIGNED_TRAILER:
            yield "".join(lines[start:i]), lines[i]
            i += 1
            continue
        if i >= len(lines) or lines[i].rstrip("\n") != SIG_BEGIN:
            yield "".join(lines[start:i]), ""
            continue
        payload_end = i
        while i < len(lines) and lines[i].rstrip("\n") != SIG_END and not lines[i].startswith(MAGIC_PREFIX):
            i += 1
        if i < len(lines) and lines[i].rstrip("\n") == SIG_END:
            i += 1  # a block cut short ends where the next receipt starts
        yield "".join(lines[start:payload_end]), "".join(lines[payload_end:i])


def _next_magic(lines: list[str], start: int) -> int:
    """Where the next receipt of any version starts (so a newer one stays an entry of its own)."""
    for j in range(start, len(lines)):
        if lines[j].startswith(MAGIC_PREFIX):
            return j
    return len(lines)


def parse_note(text: str) -> list[NoteEntry]:
    """Every receipt in a note; malformed ones become entries with an error."""
    entries = []
    for index, (payload, signature) in enumerate(split_note(text)):
        entries.append(_parse_entry(payload, signature, index))
    return entries


def _parse_entry(payload: str, signature: str, index: int) -> NoteEntry:
    if not payload:
        return NoteEntry(None, "text in note that is not a receipt", index)
    trailer = signature.rstrip("\n")
    if not trailer.endswith(SIG_END) and trailer != UNSIGNED_TRAILER:
        return NoteEntry(None, "receipt has no complete SSH signature block", index)
    try:
        receipt = parse_payload(payload.encode("utf-8"))
    except ReceiptFormatError as exc:
        return NoteEntry(None, f"malformed receipt: {exc}", index)
    except (ValueError, RecursionError, OverflowError) as exc:  # hostile input: never a crash
        return NoteEntry(None, f"malformed receipt: {type(exc).__name__}", index)
    if (trailer == UNSIGNED_TRAILER) != (receipt.key_fingerprint == UNSIGNED_KEY):
        return NoteEntry(None, "malformed receipt: 'unsigned' key without the unsigned trailer "
                               "(or the reverse)", index)
    if not signature.endswith("\n"):
        signature += "\n"
    return NoteEntry(SignedReceipt(receipt, payload.encode("utf-8"), signature), None, index)


def join_note(existing: bytes, addition: SignedReceipt) -> bytes:
    """Append a receipt to a note's bytes, leaving the existing bytes exactly as they are."""
    return join_raw(existing, addition.text.encode("utf-8"))


def raw_entries(data: bytes) -> list[bytes]:
    """A note's entries as their exact bytes: receipts, and text that is not one (a newer
    format's receipt, say). Blank lines between entries are left out.

    Latin-1 maps each byte to one character and back, so the split works on any bytes and
    gives back exactly what was stored.
    """
    if len(data) > MAX_NOTE_BYTES:  # too large to split safely: one opaque entry, kept whole
        return [data]
    return [(payload + signature).encode("latin-1")
            for payload, signature in split_note(data.decode("latin-1"))]


def join_raw(existing: bytes, *additions: bytes) -> bytes:
    """Append entries' exact bytes to a note, as :func:`join_note` does for a receipt; in one
    growing buffer, so many additions cost time in proportion to the note's size."""
    out = bytearray(existing)
    for addition in additions:
        if out:
            out += b"" if out.endswith(b"\n\n") else (b"\n" if out.endswith(b"\n") else b"\n\n")
        out += addition if addition.endswith(b"\n") else addition + b"\n"
    return bytes(out)


def note_entries(data: bytes) -> list[NoteEntry]:
    """Every receipt in a note blob; bytes that are not UTF-8 make their entry malformed."""
    return parse_note(data.decode("utf-8", errors="replace"))
