from __future__ import annotations

from pathlib import Path

import pygit2

from gitproof.notes import NotesStore
from gitproof.pending import PendingStore, attach_pending
from gitproof.policy import Policy
from gitproof.receipt import SignedReceipt, serialize_payload
from tests.factories import make_receipt
from tests.helpers import commit_all, git, write_files

SIG = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"
PATHS = ["src", "tests"]


def signed_for(trees: dict) -> SignedReceipt:
    receipt = make_receipt(trees=trees)
    return SignedReceipt(receipt, serialize_payload(receipt), SIG)


def test_pending_receipts_survive_a_fresh_repository_object(repo: Path):
    item = signed_for({"src": "1" * 40, "tests": "2" * 40})
    ref = PendingStore(pygit2.Repository(str(repo))).add(item)
    pending = PendingStore(pygit2.Repository(str(repo))).list()
    assert [p.ref for p in pending] == [ref] and pending[0].signed == item
    PendingStore(pygit2.Repository(str(repo))).remove(ref)
    assert PendingStore(pygit2.Repository(str(repo))).list() == []


def test_pending_receipt_attaches_to_the_commit_that_records_its_content(repo: Path):
    write_files(repo, {"src/kernels.py": "changed\n"})
    commit_all(repo, "change")
    r = pygit2.Repository(str(repo))
    trees = {p: git(repo, "rev-parse", f"HEAD:{p}") for p in PATHS}
    item = signed_for(trees)
    PendingStore(r).add(item)
    other = signed_for({"src": "9" * 40, "tests": trees["tests"]})
    PendingStore(r).add(other)
    attached = attach_pending(r, Policy(), [r.head.peel(), r.head.peel().parents[0]])
    assert [(a.commit, a.signed) for a in attached] == [(str(r.head.target), item)]
    assert [e.signed for e in NotesStore(r).entries(str(r.head.target))] == [item]
    assert [p.signed for p in PendingStore(r).list()] == [other], "unmatched receipts stay pending"
