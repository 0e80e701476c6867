"""Property-based tests (Hypothesis) over everything that reads hostile bytes.

Two properties: a parser of untrusted input answers with a value or its own
clean error, never another exception; and a merge of notes never loses an
entry of either side.
"""
from __future__ import annotations

import tempfile
from typing import Callable

import pygit2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitproof.receipt import ReceiptFormatError, note_entries, parse, parse_payload, raw_entries, serialize_payload
from gitproof.sync import MergeResult, _union
from gitproof.trust.allowed_signers import AllowedSigners, AllowedSignersError
from gitproof.trust.keys import SignatureError
from gitproof.trust.revocation import RevokedKeys
from gitproof.trust.sshsig import parse_signature
from tests.factories import make_receipt

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = serialize_payload(make_receipt())
LINES = VALID.decode().splitlines(keepends=True)
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")
SIGNERS_LINE = f'alice@example.com namespaces="gpu-proof" {KEY}\n'
ARMOR = ("-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg4yqqeRXOubRJ0bpQ6ioouxpuAfkL2i"
         "RaLR2HaX0YomUAAAAJZ3B1LXByb29mAAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1lZDI1NTE5AAAAQA==\n"
         "-----END SSH SIGNATURE-----\n")


def mutated(base: str) -> st.SearchStrategy[str]:
    """``base`` with characters replaced, dropped or inserted, and lines repeated or removed."""
    index = st.integers(0, max(0, len(base) - 1))
    edit = st.tuples(st.sampled_from(["replace", "drop", "insert", "dup-line"]), index, st.characters())

    def apply(edits: list) -> str:
        text = base
        for kind, i, ch in edits:
            i = min(i, len(text))
            if kind == "replace":
                text = text[:i] + ch + text[i + 1:]
            elif kind == "drop":
                text = text[:i] + text[i + 1:]
            elif kind == "insert":
                text = text[:i] + ch + text[i:]
            else:
                lines = text.splitlines(keepends=True)
                if lines:
                    j = i % len(lines)
                    lines.insert(j, lines[j])
                text = "".join(lines)
        return text
    return st.lists(edit, max_size=8).map(apply)


@SETTINGS
@given(st.one_of(mutated(VALID.decode()), st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_the_receipt_parser_answers_or_refuses_cleanly(text):
    try:
        parse_payload(text.encode("utf-8", "surrogateescape"))
    except ReceiptFormatError:
        pass


USES = [{"test": t.nodeid, "used": False, "method": "cuda-driver.not-loaded", "evidence": "never loaded",
         "devices": [], "nvml": None} for t in make_receipt().tests]
VALID_WITH_USES = serialize_payload(make_receipt(gpu_use=USES))


def _reading(read: Callable[[bytes], object], payload: bytes) -> object:
    try:
        return read(payload)
    except ReceiptFormatError as exc:
        return str(exc)


@SETTINGS
@given(st.one_of(mutated(VALID_WITH_USES.decode()), st.text()).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_the_fast_receipt_reading_answers_as_the_strict_one(payload):
    """parse_payload reads most receipts by canonical-text patterns; the strict reading is the oracle."""
    def strict(data: bytes) -> object:
        return parse._read_strict(parse._payload_text(data))
    assert _reading(parse_payload, payload) == _reading(strict, payload)


@SETTINGS
@given(st.binary(max_size=4000) | mutated(VALID.decode() + ARMOR).map(lambda t: t.encode("utf-8", "replace")))
def test_a_note_of_any_bytes_splits_into_entries_without_raising(data):
    entries = note_entries(data)
    assert all((e.signed is None) != (e.error is None) for e in entries)
    assert all(entry in data for entry in raw_entries(data))  # exact bytes of the note, nothing made up


@SETTINGS
@given(st.one_of(mutated(SIGNERS_LINE * 2), st.text()))
def test_the_allowed_signers_parser_answers_or_refuses_cleanly(text):
    try:
        AllowedSigners.from_text(text, "allowed_signers")
    except AllowedSignersError:
        pass
    try:
        RevokedKeys.from_text(text, "revoked")
    except AllowedSignersError:
        pass


@SETTINGS
@given(st.one_of(mutated(ARMOR), st.text(), st.binary()))
def test_the_sshsig_armor_and_blob_parser_answers_or_refuses_cleanly(armored):
    try:
        parse_signature(armored)
    except SignatureError:
        pass


ENTRY = st.one_of(
    st.just(VALID.decode() + ARMOR),
    mutated(VALID.decode() + ARMOR),
    st.just("gpu-proof receipt v2\nsomething: new\n"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60),
).map(lambda t: t.encode("utf-8", "surrogatepass"))  # lone surrogates: bytes that are not UTF-8


_repo = pygit2.init_repository(tempfile.mkdtemp(prefix="gitproof-properties-"), bare=True)


@SETTINGS
@given(st.lists(ENTRY, max_size=4), st.lists(ENTRY, max_size=4))
def test_a_merge_never_loses_an_entry_of_either_side(ours, theirs):
    def note(entries: list[bytes]) -> bytes:
        return b"\n".join(e if e.endswith(b"\n") else e + b"\n" for e in entries)

    mine, other = note(ours), note(theirs)
    current = (str(_repo.create_blob(mine)), "x") if mine else None
    merged, _ = _union(_repo, current, str(_repo.create_blob(other)), "c" * 40, MergeResult("t", "merge"))
    assert all(entry.strip() in merged for entry in raw_entries(mine) + raw_entries(other))
    assert merged.startswith(mine)  # our bytes stay exactly as they were
    again, added = _union(_repo, (str(_repo.create_blob(merged)), "x"), str(_repo.create_blob(other)),
                          "c" * 40, MergeResult("t", "merge"))
    assert (again, added) == (merged, 0)  # merging the same again adds nothing
