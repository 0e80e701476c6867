from __future__ import annotations

import multiprocessing
from pathlib import Path

import pygit2

from gitproof.notes import NOTES_REF, NotesStore
from gitproof.receipt import SignedReceipt, serialize_payload
from tests.factories import make_receipt
from tests.helpers import git

SIG = "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"


def signed(signer: str = "alice@example.com") -> SignedReceipt:
    receipt = make_receipt(signer=signer)
    return SignedReceipt(receipt, serialize_payload(receipt), SIG)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def test_receipts_accumulate_and_git_shows_them(repo: Path):
    store = NotesStore(pygit2.Repository(str(repo)))
    assert store.add(head(repo), signed("alice@example.com"))
    first_note = git(repo, "notes", "--ref=gpu-proof", "show", "HEAD")
    assert store.add(head(repo), signed("bob@example.com"))
    note = git(repo, "notes", "--ref=gpu-proof", "show", "HEAD")
    assert note.startswith(first_note), "adding a receipt must not rewrite the ones before it"
    assert [e.signed.receipt.signer for e in store.entries(head(repo))] == ["alice@example.com", "bob@example.com"]
    assert "Notes (gpu-proof):" in git(repo, "log", "--notes=gpu-proof", "-1")


def test_identical_receipt_is_not_added_twice(repo: Path):
    store = NotesStore(pygit2.Repository(str(repo)))
    assert store.add(head(repo), signed())
    tip = git(repo, "rev-parse", NOTES_REF)
    assert not store.add(head(repo), signed())
    assert git(repo, "rev-parse", NOTES_REF) == tip


def test_every_write_is_a_new_commit_on_top_of_the_old_tip(repo: Path):
    store = NotesStore(pygit2.Repository(str(repo)))
    store.add(head(repo), signed("a@x"))
    first = git(repo, "rev-parse", NOTES_REF)
    store.add(head(repo), signed("b@x"))
    assert git(repo, "rev-parse", f"{NOTES_REF}^") == first


def test_appends_to_a_note_that_git_stored_with_fanout(repo: Path):
    commit = head(repo)
    git(repo, "notes", "--ref=gpu-proof", "add", "-m", "hand-written note", commit)
    # Rewrite the notes tree into fanout form (as git does for large note sets).
    r = pygit2.Repository(str(repo))
    blob = r.lookup_note(commit, NOTES_REF).id
    sub = r.TreeBuilder()
    sub.insert(commit[2:], blob, pygit2.enums.FileMode.BLOB)
    root = r.TreeBuilder()
    root.insert(commit[:2], sub.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("t", "t@x")
    r.create_commit(NOTES_REF, sig, sig, "fanout", root.write(), [r.references[NOTES_REF].target])
    store = NotesStore(r)
    assert store.add(commit, signed())
    shown = git(repo, "notes", "--ref=gpu-proof", "show", commit)
    assert shown.startswith("hand-written note") and "gpu-proof receipt v1" in shown
    entries = store.entries(commit)
    assert entries[0].error and entries[1].signed is not None


def _add_many(args):
    path, commit, worker = args
    store = NotesStore(pygit2.Repository(path))
    for round_ in range(8):
        store.add(commit, signed(f"w{worker}-{round_}@x"))


def test_concurrent_writers_never_lose_a_receipt(repo: Path):
    commit = head(repo)
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.map(_add_many, [(str(repo), commit, w) for w in range(8)])
    signers = [e.signed.receipt.signer for e in NotesStore(pygit2.Repository(str(repo))).entries(commit)]
    assert sorted(signers) == sorted(f"w{w}-{r}@x" for w in range(8) for r in range(8))
    # One linear history: every write sits on top of the one before it.
    assert git(repo, "rev-list", "--count", NOTES_REF) == "64"
    assert git(repo, "rev-list", "--merges", NOTES_REF) == ""


def test_non_utf8_bytes_in_a_note_survive_an_append(repo: Path):
    commit = head(repo)
    r = pygit2.Repository(str(repo))
    blob = r.create_blob(b"\xff\xfe legacy bytes\n")
    tree = r.TreeBuilder()
    tree.insert(commit, blob, pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("t", "t@x")
    r.create_commit(NOTES_REF, sig, sig, "legacy", tree.write(), [])
    NotesStore(r).add(commit, signed())
    data = r[NotesStore(r).index()[commit][0]].data
    assert data.startswith(b"\xff\xfe legacy bytes\n") and b"gpu-proof receipt v1" in data
