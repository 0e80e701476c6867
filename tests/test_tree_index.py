"""Receipts found by their trees: the index is a cache that can be stale, damaged, shared or
unwritable, and the answer stays right."""
from __future__ import annotations

import threading
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NOTES_REF, NotesStore, tree_with_note
from gitproof.receipt import MAGIC, MAX_NOTE_BYTES, SIG_BEGIN, SIG_END
from gitproof.tree_index import MAX_CLAIMS_PER_NOTE, MAX_COMMITS_PER_NOTE, TreeIndex, claimed_trees, scope_key
from gitproof.verify import ANCESTOR, ELSEWHERE, SELF, UNCHANGED, UNVALIDATED, VALIDATED
from gitproof.verify.verifier import MAX_HOLDERS, MAX_REASONS
from tests.helpers import commit_all, git, write_files
from tests.receipts import Project

SCOPES = [(None, ("src", "tests"))]


@pytest.fixture
def project(repo: Path, keygen) -> Project:
    return Project(repo, keygen("ed25519"))


def side_commit(project: Project, rev: str = "HEAD", message: str = "squashed") -> str:
    """``rev``'s tree on a new commit whose parent is ``rev``'s parent: what a squash merge makes."""
    commit = project.repo.revparse_single(rev).peel(pygit2.Commit)
    sig = pygit2.Signature("Merger", "merger@example.com", commit.commit_time + 5, 0)
    parents = [p.id for p in commit.parents]
    return str(project.repo.create_commit(None, sig, sig, message + "\n", commit.tree.id, parents))


def index_of(project: Project) -> TreeIndex:
    return TreeIndex(NotesStore(project.repo), SCOPES)


def head_trees(project: Project) -> dict[str, str | None]:
    head = project.repo.head.peel(pygit2.Commit)
    return {p: str(head.tree[p].id) for p in ("src", "tests")}


# -- the verdict -----------------------------------------------------------------------------------


def test_a_commit_elsewhere_with_the_same_trees_is_validated_and_says_where(project):
    signed = project.attach()
    holder = git(project.root, "rev-parse", "HEAD")
    squashed = side_commit(project)
    verdict = project.verify(squashed)
    assert verdict.state == UNCHANGED and verdict.relation == ELSEWHERE
    assert verdict.validated_by() == {
        "note_commit": holder, "made_on": holder, "relation": ELSEWHERE, "signer": "alice@example.com",
        "key": signed.receipt.key_fingerprint, "finished": signed.receipt.finished.isoformat()}


def test_own_receipt_beats_an_ancestors_which_beats_one_elsewhere(project):
    project.attach()
    write_files(project.root, {"README.md": "docs\n"})
    commit_all(project.root, "docs")
    assert project.verify().relation == ANCESTOR
    project.attach()
    assert project.verify().state == VALIDATED and project.verify().relation == SELF


def test_a_change_to_the_code_is_still_refused(project):
    project.attach()
    write_files(project.root, {"src/kernels.py": "def add(a, b):\n    return a - b\n"})
    commit_all(project.root, "real change")
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    assert [r.code for r in verdict.reasons] == ["fingerprint-changed"]


def test_a_receipt_whose_tree_lines_lie_is_found_but_refused(project, keygen):
    """A hostile note claims HEAD's trees over a broken signature: found, judged, refused."""
    signed = project.signed()
    armor = signed.signature.splitlines(keepends=True)
    armor[1] = armor[1][::-1]  # the signature's first line of base64, scrambled
    forged = signed.payload + "".join(armor).encode()
    other = side_commit(project, message="elsewhere")
    write_note(project, other, forged)
    verdict = project.verify()
    assert verdict.state == UNVALIDATED
    assert any(other[:10] in r.message for r in verdict.reasons)


def test_a_note_found_through_the_index_counts_only_its_receipts_for_these_trees(project):
    project.attach()
    a = git(project.root, "rev-parse", "HEAD")
    write_files(project.root, {"src/kernels.py": "changed = True\n"})
    b = commit_all(project.root, "change")
    NotesStore(project.repo).add(a, project.signed())  # B's receipt, parked in A's note
    verdict = project.verify()
    assert verdict.ok and verdict.relation == ANCESTOR
    assert verdict.receipt.note_commit == a and verdict.receipt.signed.receipt.commit == b
    squashed_a = project.verify(side_commit(project, a))
    assert squashed_a.ok and squashed_a.receipt.signed.receipt.commit == a and not squashed_a.reasons


# -- the cache -------------------------------------------------------------------------------------


def test_the_index_follows_new_receipts_incrementally(project):
    index = index_of(project)
    assert index.holders(None, ("src", "tests"), head_trees(project)) == []
    project.attach()
    holder = git(project.root, "rev-parse", "HEAD")
    assert index.holders(None, ("src", "tests"), head_trees(project)) == [holder]
    assert index_of(project).holders(None, ("tests", "src"), head_trees(project)) == [holder]  # from the file
    assert index.path.read_bytes().startswith(b"gitproof tree index v1 " + notes_tip(project).encode())


def test_removed_notes_leave_the_index(project):
    project.attach()
    before = index_of(project).holders(None, ("src", "tests"), head_trees(project))
    git(project.root, "notes", "--ref=gpu-proof", "remove", "HEAD")
    assert before and index_of(project).holders(None, ("src", "tests"), head_trees(project)) == []
    assert project.verify().state == UNVALIDATED


@pytest.mark.parametrize("damage", [b"", b"garbage\n", b"gitproof tree index v1 deadbeef\nshort record\n",
                                    "truncate"])
def test_a_damaged_index_file_is_rebuilt(project, damage):
    project.attach()
    holder = git(project.root, "rev-parse", "HEAD")
    path = index_of(project).path
    index_of(project).holders(None, ("src", "tests"), head_trees(project))
    path.write_bytes(path.read_bytes()[:-7] if damage == "truncate" else damage)
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) == [holder]
    assert project.verify(side_commit(project)).ok


def test_an_index_naming_a_lost_tip_is_rebuilt(project):
    project.attach()
    holder = git(project.root, "rev-parse", "HEAD")
    path = index_of(project).path
    index_of(project).holders(None, ("src", "tests"), head_trees(project))
    data = path.read_bytes()
    header, rest = data.split(b"\n", 1)
    path.write_bytes(header[:-40] + b"0" * 40 + b"\n" + rest)  # a tip this repository never had
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) == [holder]


def test_a_stale_index_from_a_rewound_notes_ref_is_carried_back(project):
    project.attach()
    first_tip = notes_tip(project)
    write_files(project.root, {"src/kernels.py": "v2 = 1\n"})
    commit_all(project.root, "v2")
    project.attach()
    holder = git(project.root, "rev-parse", "HEAD")
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) == [holder]
    git(project.root, "update-ref", NOTES_REF, first_tip)  # someone rewinds the notes
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) == []


def test_notes_written_in_git_fanout_layout_are_indexed(project):
    signed = project.signed()
    head = git(project.root, "rev-parse", "HEAD")
    write_note(project, head, signed.payload + signed.signature.encode(), fanout=True)
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) == [head]
    assert project.verify(side_commit(project)).relation == ELSEWHERE


def test_an_unwritable_git_directory_keeps_the_index_in_memory(project):
    project.attach()
    blocker = index_of(project).path.parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the index folder should be\n")
    index = index_of(project)
    assert index.holders(None, ("src", "tests"), head_trees(project)) == [git(project.root, "rev-parse", "HEAD")]
    assert project.verify(side_commit(project)).ok


def test_concurrent_writers_each_leave_a_true_index(project):
    project.attach()
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            for _ in range(20):
                index = TreeIndex(NotesStore(pygit2.Repository(str(project.root))), SCOPES)
                index.path.unlink(missing_ok=True)
                assert index.holders(None, ("src", "tests"), head_trees(project))
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=rebuild) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project))


def test_an_oversized_note_is_not_read_by_the_index(project):
    signed = project.signed()
    other = side_commit(project)
    big = signed.payload + signed.signature.encode() + b"x" * (MAX_NOTE_BYTES + 1)
    write_note(project, other, big)
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) == []


# -- reading claims ---------------------------------------------------------------------------------


def test_claimed_trees_reads_headers_leniently():
    signature = f"{SIG_BEGIN}\nU1NIU0lH\n{SIG_END}\n"
    note = (f"{MAGIC}\ntree: {'a' * 40} src\ntree: absent tests\nshard: k%25one\n\ntest: passed 1s tree: x y\n"
            f"{signature}junk\n{MAGIC}\ntree: {'b' * 40} s%ZZrc\n\n{signature}"
            f"{MAGIC}\ntree: {'c' * 40} src\n\n"  # no signature block: not a receipt the verifier would judge
            ).encode() + b"\xff\xfe\n"
    assert claimed_trees(note) == [("k%one", {"src": "a" * 40, "tests": None}), (None, {"s%ZZrc": "b" * 40})]


def test_one_note_claims_at_most_so_much():
    signature = f"{SIG_BEGIN}\nU1NIU0lH\n{SIG_END}\n"
    same = (f"{MAGIC}\ntree: {'a' * 40} src\n\n{signature}" * 1000).encode()
    assert len(claimed_trees(same)) == 1  # repeats count once
    distinct = "".join(f"{MAGIC}\ntree: {i:040x} src\n\n{signature}" for i in range(1000)).encode()
    assert len(claimed_trees(distinct)) == MAX_CLAIMS_PER_NOTE


def test_scope_key_needs_every_path():
    assert scope_key(None, ["src"], {"tests": "t"}) is None
    assert scope_key(None, ["src", "tests"], {"src": "a", "tests": None}) == \
        scope_key(None, ["tests", "src"], {"tests": None, "src": "a"})
    assert scope_key("k", ["src"], {"src": "a"}) != scope_key(None, ["src"], {"src": "a"})


# -- helpers ---------------------------------------------------------------------------------------


def notes_tip(project: Project) -> str:
    return git(project.root, "rev-parse", NOTES_REF)


def write_note(project: Project, commit: str, data: bytes, fanout: bool = False) -> None:
    store = NotesStore(project.repo)
    tip = store.tip()
    path = f"{commit[:2]}/{commit[2:]}" if fanout else commit
    tree = tree_with_note(project.repo, tip.tree if tip else None, path, data)
    assert store.commit_tree(tip, tree, "hostile or hand-made note")


# -- hostile notes cost bounded work ----------------------------------------------------------------


def junk_receipt(project: Project, n: int) -> bytes:
    """A receipt claiming HEAD's trees whose signature is garbage: found, judged, refused."""
    signed = project.signed()
    armor = signed.signature.splitlines(keepends=True)
    armor[1] = f"{n:08d}" + armor[1][8:]
    return signed.payload + "".join(armor).encode()


def write_notes(project: Project, notes: dict[str, bytes]) -> None:
    store = NotesStore(project.repo)
    tip = store.tip()
    builder = project.repo.TreeBuilder(tip.tree) if tip else project.repo.TreeBuilder()
    for commit, data in notes.items():
        builder.insert(commit, project.repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    assert store.commit_tree(tip, builder.write(), "many notes")


def test_one_note_blob_on_many_commits_is_indexed_for_a_few(project):
    data = junk_receipt(project, 0)
    write_notes(project, {f"{i:040x}": data for i in range(3 * MAX_COMMITS_PER_NOTE)})
    assert len(index_of(project).holders(None, ("src", "tests"), head_trees(project))) == MAX_COMMITS_PER_NOTE


def test_a_flood_of_junk_claiming_the_code_is_bounded_and_hides_no_receipt_this_clone_has(project):
    write_notes(project, {f"{i:04x}" * 10: junk_receipt(project, i) for i in range(MAX_HOLDERS + 40)})
    squashed = side_commit(project)
    verdict = project.verify(squashed)
    assert verdict.state == UNVALIDATED
    assert len(verdict.reasons) == MAX_REASONS
    assert "more reason(s) not shown" in verdict.reasons[-1].message
    assert "40 more note(s) claiming this code were not examined" in verdict.reasons[-1].message
    project.attach()  # the real receipt, on a commit this clone has: examined first
    verdict = project.verify(squashed)
    assert verdict.ok and verdict.receipt.note_commit == git(project.root, "rev-parse", "HEAD")


def test_a_damaged_record_is_skipped_by_lookups_and_rebuilt_by_updates(project):
    project.attach()
    holder = git(project.root, "rev-parse", "HEAD")
    index_of(project).holders(None, ("src", "tests"), head_trees(project))
    path = index_of(project).path
    data = bytearray(path.read_bytes())
    data[-3] = 0xFF  # a byte in the padding of the only record's commit field
    path.write_bytes(bytes(data))
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project)) in ([], [holder])
    write_files(project.root, {"src/kernels.py": "v2 = 1\n"})
    commit_all(project.root, "v2")
    project.attach()  # the notes move: the update meets the damaged record and rebuilds
    assert index_of(project).holders(None, ("src", "tests"), {**head_trees(project)})
    assert project.verify(side_commit(project)).ok


def test_a_gitlink_at_a_note_path_is_no_note(project):
    project.attach()
    index_of(project).holders(None, ("src", "tests"), head_trees(project))
    store = NotesStore(project.repo)
    tip = store.tip()
    builder = project.repo.TreeBuilder(tip.tree)
    builder.insert("ab" * 20, pygit2.Oid(hex="cd" * 20), pygit2.enums.FileMode.COMMIT)
    assert store.commit_tree(tip, builder.write(), "a submodule entry among the notes")
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project))  # incremental, no crash
    index_of(project).path.unlink()
    assert index_of(project).holders(None, ("src", "tests"), head_trees(project))  # from nothing
