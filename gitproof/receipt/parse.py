"""Reading a receipt's payload: strict about every field this version knows.

A payload is accepted only when it is exactly what this version would write
for the receipt it states (fields it does not know aside), so two readers can
never see two different receipts in the same signed bytes.

Two readings decide that. The strict one parses every line, writes the
receipt back and compares the bytes. The fast one, tried first, proves the
bulk of a receipt, its ``test:`` and ``gpu-use:`` lines, canonical by
patterns that match nothing else (gitproof.receipt.canonical) and writes back
only the header before them; it accepts a subset of what the strict one
accepts, the same receipt for each, and leaves every other payload, and the
wording of its refusal, to the strict one.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime, timezone
from operator import attrgetter, itemgetter
from typing import Any

from gitproof.receipt.canonical import PLAIN_TEST_LINES, PLAIN_USE, PLAIN_USE_REST, TEST_LINE, USE_LINES
from gitproof.receipt.fields import check_object, gpu_facts_object, gpu_use_object, json_object
from gitproof.receipt.model import (
    MAGIC,
    MAGIC_PREFIX,
    MODES,
    OUTCOMES,
    TIME_FORMAT,
    UNSIGNED_KEY,
    Receipt,
    ReceiptFormatError,
    TestResult,
    counts_text,
    format_test_line,
    header_lines,
    json_text,
    serialize_payload,
)
from gitproof.text import escape

_KEY_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_HEX40_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_ESCAPE_RE = re.compile(r"%[0-9A-F]{2}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WRITTEN_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z")
# The bytes of the control characters but LF: no other UTF-8 sequence holds one.
_CONTROL_BUT_LF = bytes([*range(0x0a), *range(0x0b, 0x20), 0x7f])
_NOT_CANONICAL = "receipt is not in canonical form (field order or formatting)"
_USE = "gpu-use: "
_nodeid_of = attrgetter("nodeid")
_test_of = itemgetter("test")


def unescape(text: str) -> str:
    """Strict inverse of :func:`gitproof.text.escape`: non-canonical input is an error."""
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
            self.checks.append(check_object(value))
        elif key == "gpu-use":
            self.gpu_use.append(gpu_use_object(value))
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
        self.gpus.append(json_object(value, "gpu"))

    def require(self, key: str) -> str:
        if key not in self.seen:
            raise ReceiptFormatError(f"missing header field {key!r}")
        return self.seen[key]


def _parse_time(text: str) -> datetime:
    written = _WRITTEN_TIME.fullmatch(text)  # how this version writes it; strptime decides the rest
    try:
        if written:
            year, month, day, hour, minute, second, micro = map(int, written.groups())
            return datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone.utc)
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)
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
    text = _payload_text(payload)
    try:
        return _read_fast(payload, text)
    except Exception:  # refused, or beyond the fast reading: the strict reading decides, and says why
        return _read_strict(text)


def _payload_text(payload: bytes) -> str:
    """The payload as text, once it is UTF-8 with LF endings and starts with this version's magic."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReceiptFormatError("receipt is not valid UTF-8") from exc
    if not text.endswith("\n") or "\r" in text:
        raise ReceiptFormatError("receipt must use LF line endings and end with a newline")
    first = text[:text.index("\n")]
    if first != MAGIC:
        if first.startswith(MAGIC_PREFIX):
            raise ReceiptFormatError(f"unsupported receipt format version: first line {first!r}")
        raise ReceiptFormatError(f"first line must be {MAGIC!r}, got {first!r}")
    return text


def _read_strict(text: str) -> Receipt:
    """Parse every line, then demand that writing the receipt back gives the same bytes."""
    lines = text[:-1].split("\n")
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
    _check_consistency(receipt, header)
    # Fields this version does not know may stand anywhere in the header; all the
    # others must be exactly as this version writes them.
    unknown = {i for i, line in enumerate(lines[1:blank], start=1) if _split_line(line, i)[0] in header.extra_keys}
    known_lines = [line for i, line in enumerate(lines) if i not in unknown]
    if serialize_payload(replace(receipt, extra=[])) != ("\n".join(known_lines) + "\n").encode("utf-8"):
        raise ReceiptFormatError(_NOT_CANONICAL)
    return receipt


def _read_fast(payload: bytes, text: str) -> Receipt:
    """The strict reading's receipt, or an exception: the header parsed and written back as there, the
    ``test:`` and ``gpu-use:`` lines proven canonical by pattern where they can be.

    Accepts exactly when the strict reading does: the header (unknown fields aside) is compared line
    for line with what this version writes, which also checks the verdict and counts lines; the
    ``gpu-use:`` lines must follow it, as they are written last; each test and gpu-use line is either
    matched by a pattern of canonical text or written back and compared, as the strict reading would.
    """
    if len(payload.translate(None, _CONTROL_BUT_LF)) != len(payload):
        raise ReceiptFormatError("control character in receipt")
    blank = text.find("\n\n")
    if blank < 0:
        raise ReceiptFormatError("missing blank line between header and tests")
    uses = text.find("\n" + _USE, 0, blank) + 1  # the first gpu-use line, or 0
    header = _HeaderParser()
    known = _read_fields(header, text[:uses - 1 if uses else blank].split("\n"))
    header.gpu_use = _read_uses(header, text, uses, blank + 1) if uses else []
    receipt = _build(header, _read_tests(text, blank + 2))
    _check_gpu_use_names_tests(receipt)
    _check_fingerprint(receipt)
    if header_lines(receipt) != known:
        raise ReceiptFormatError(_NOT_CANONICAL)
    return receipt


def _read_fields(header: _HeaderParser, lines: list[str]) -> list[str]:
    """Feed the header lines before the first gpu-use record; the magic and known fields' lines."""
    known = [lines[0]]
    for lineno, line in enumerate(lines[1:], start=2):
        key, value = _split_line(line, lineno)
        header.feed(key, value)
        if key not in header.extra_keys:
            known.append(line)
    return known


def _read_uses(header: _HeaderParser, text: str, start: int, end: int) -> list[dict[str, Any]]:
    """The gpu-use records in the lines from ``start`` to ``end``, each one canonical. Other fields
    there are fed to the header: a known one is then missing from the lines compared with what this
    version writes (which puts it before the records), so only unknown ones may stand between them."""
    found = USE_LINES.findall(text, start, end)
    if len(found) == text.count("\n", start, end):  # each match is one whole line
        uses = _plain_uses(found)
        if uses is not None:
            return uses
    uses = []
    for line in text[start:end - 1].split("\n"):
        if line.startswith(_USE):
            uses.append(_read_use(line[len(_USE):]))
        else:
            header.feed(*_split_line(line, 0))
    return uses


def _plain_uses(found: list[tuple[str, str]]) -> list[dict[str, Any]] | None:
    """The records as JSON decodes them, when each is a plain one: the members after ``test`` checked
    and decoded once per distinct text, each record with a devices list of its own; else None."""
    decoded: dict[str, dict[str, Any]] = {}
    uses = []
    for name, rest in found:
        if rest not in decoded:
            if not PLAIN_USE_REST.fullmatch(rest):
                return None
            decoded[rest] = json.loads("{" + rest + "}")
        members = decoded[rest]
        test = json.loads(name) if "\\" in name else name[1:-1]
        uses.append({"test": test, **members, "devices": [*members["devices"]]})
    return uses


def _read_use(value: str) -> dict[str, Any]:
    if PLAIN_USE.fullmatch(value):
        use: dict[str, Any] = json.loads(value)
        return use
    use = gpu_use_object(value)
    if json_text(use) != value:
        raise ReceiptFormatError(_NOT_CANONICAL)
    return use


def _read_tests(text: str, start: int) -> list[TestResult]:
    """The test lines from ``start`` on, each one canonical: matched as such, or parsed and written back."""
    if text.find("%", start) < 0:  # no node id is escaped
        found = PLAIN_TEST_LINES.findall(text, start)
        if len(found) == text.count("\n", start):  # each match is one whole line
            return [TestResult(nodeid, outcome, float(duration)) for outcome, duration, nodeid in found]
    return [_read_test(line) for line in text[start:-1].split("\n")] if start < len(text) else []


def _read_test(line: str) -> TestResult:
    match = TEST_LINE.fullmatch(line)
    if match:
        outcome, duration, nodeid = match.groups()
        return TestResult(nodeid, outcome, float(duration))
    key, value = _split_line(line, 0)
    if key != "test":
        raise ReceiptFormatError("only 'test:' lines may follow the header")
    test = _parse_test(value, 0)
    if format_test_line(test) != line:
        raise ReceiptFormatError(_NOT_CANONICAL)
    return test


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
        ci=json_object(header.seen["ci"], "ci") if "ci" in header.seen else None,
        gpu_facts=gpu_facts_object(header.seen["gpu-facts"]) if "gpu-facts" in header.seen else None,
        gpu_use=header.gpu_use,
    )
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
    if header.require("counts") != counts_text(receipt.counts):
        raise ReceiptFormatError("counts do not match the test lines")
    _check_gpu_use_names_tests(receipt)
    _check_fingerprint(receipt)


def _check_fingerprint(receipt: Receipt) -> None:
    if not receipt.key_fingerprint.startswith("SHA256:") and receipt.key_fingerprint != UNSIGNED_KEY:
        raise ReceiptFormatError(f"bad key fingerprint {receipt.key_fingerprint!r}")


def _check_gpu_use_names_tests(receipt: Receipt) -> None:
    """Each gpu-use record speaks for one listed test, and for it alone."""
    if not receipt.gpu_use:
        return
    listed = set(map(_nodeid_of, receipt.tests))
    named = list(map(_test_of, receipt.gpu_use))
    if listed.issuperset(named) and len(set(named)) == len(named):
        return
    seen: set[str] = set()
    for use in receipt.gpu_use:
        if use["test"] not in listed:
            raise ReceiptFormatError(f"gpu-use record for a test the receipt does not list: {use['test']!r}")
        if use["test"] in seen:
            raise ReceiptFormatError(f"two gpu-use records for {use['test']!r}")
        seen.add(use["test"])
