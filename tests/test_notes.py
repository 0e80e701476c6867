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


# -- git's fan-out layout ------------------------------------------------------------------------


def fake_ids(count: int, salt: str = "") -> list[str]:
    import hashlib
    return [hashlib.sha1(f"{salt}{i}".encode()).hexdigest() for i in range(count)]


def write_flat(repo: pygit2.Repository, ids: list[str], data: bytes = b"note\n") -> None:
    """A flat notes tree, as gitproof wrote them before it used git's fan-out."""
    blob = repo.create_blob(data)
    builder = repo.TreeBuilder()
    for commit_id in ids:
        builder.insert(commit_id, blob, pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("t", "t@example.com")
    repo.create_commit(NOTES_REF, sig, sig, "flat\n", builder.write(), [])


def shape(repo: pygit2.Repository) -> tuple[int, int]:
    """(entries in the root tree, note blobs anywhere)."""
    tree = repo.references[NOTES_REF].peel(pygit2.Commit).tree
    from gitproof.notes import walk_notes_tree
    return len(tree), len(walk_notes_tree(tree, "", ""))


def test_a_growing_notes_tree_fans_out_and_git_reads_every_note(repo: Path):
    from gitproof.notes import FANOUT_LIMIT

    pyrepo = pygit2.Repository(str(repo))
    store = NotesStore(pyrepo)
    ids = fake_ids(FANOUT_LIMIT + 1)
    for commit_id in ids[:-1]:
        store.add(commit_id, signed())
    assert shape(pyrepo) == (FANOUT_LIMIT, FANOUT_LIMIT)  # flat while small, as git keeps it
    store.add(ids[-1], signed())
    root_entries, notes = shape(pyrepo)
    assert notes == FANOUT_LIMIT + 1 and root_entries <= 256
    listed = git(repo, "notes", "--ref=gpu-proof", "list").splitlines()
    assert sorted(line.split()[1] for line in listed) == sorted(ids)
    assert git(repo, "notes", "--ref=gpu-proof", "show", ids[7]).startswith("gpu-proof receipt v1")


def test_a_flat_tree_from_an_older_version_converts_on_the_next_write(repo: Path):
    pyrepo = pygit2.Repository(str(repo))
    ids = fake_ids(1000)
    write_flat(pyrepo, ids)
    store = NotesStore(pyrepo)
    assert store.note_bytes(ids[500]) == b"note\n"  # read as it is
    store.add(head(repo), signed())
    root_entries, notes = shape(pyrepo)
    assert notes == 1001 and root_entries <= 256  # every note moved one level down, none lost
    root = pyrepo.references[NOTES_REF].peel(pygit2.Commit).tree
    assert {entry.type_str for entry in root} == {"tree"} and all(len(entry.name) == 2 for entry in root)
    assert store.note_bytes(ids[500]) == b"note\n" and store.entries(head(repo))


def test_git_notes_and_gitproof_append_to_each_others_notes(repo: Path):
    pyrepo = pygit2.Repository(str(repo))
    store = NotesStore(pyrepo)
    ids = fake_ids(300, "git")
    store.add(ids[0], signed())
    for commit_id in ids[1:40]:
        git(repo, "notes", "--ref=gpu-proof", "add", "-m", f"by git for {commit_id[:6]}", commit_id)
    for commit_id in ids[40:]:
        store.add(commit_id, signed())
    git(repo, "notes", "--ref=gpu-proof", "append", "-m", "appended by git", ids[0])
    assert "appended by git" in git(repo, "notes", "--ref=gpu-proof", "show", ids[0])
    assert store.entries(ids[0])[0].signed is not None
    assert len(git(repo, "notes", "--ref=gpu-proof", "list").splitlines()) == 300
    assert shape(pyrepo)[1] == 300
