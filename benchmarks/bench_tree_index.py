"""Finding receipts by their trees: what 10,000 receipts in the notes cost a verify.

Two repositories, built the same way (bench_verify_history's builder: real files,
a real ed25519 key, receipts signed by the real ``ssh-keygen -Y sign``):

* ``small``: ``--commits`` commits, receipts on every ``--every``-th one;
* ``big``: a copy of ``small`` whose notes also hold ``--receipts`` more receipts,
  each on its own commit id and claiming its own trees (the receipt on HEAD with its
  tree lines changed; they are never judged, only indexed).

Both have a commit ``squash`` beside HEAD: HEAD's tree on a new parent, with no note,
which only the tree index can validate (what a squash merge or a cherry-pick makes).

Timed (medians of interleaved runs; each run opens a fresh verifier, as a new
process would, with the index file already on disk):

* ``verify(HEAD)`` and ``verify(squash)`` in each repository, and the difference
  big - small (the target: at most 50 ms);
* building the index from nothing for the big repository (target: at most 1 s);
* bringing the index up to date after one more receipt (the incremental path).

Every receipt is counted at the end: the index must list one record per receipt.

Run:

    python benchmarks/bench_tree_index.py
    python benchmarks/bench_tree_index.py --receipts 20000 --repeat 9
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pygit2

from _common import Case, fmt_time, measure, print_machine, table
from bench_verify_history import PATHS, build

from gitproof.notes import NOTES_REF, NotesStore, walk_notes_tree
from gitproof.tree_index import TreeIndex
from gitproof.verify import open_verifier


def _fake_id(n: int, salt: str) -> str:
    return hashlib.sha1(f"{salt}{n}".encode()).hexdigest()


def add_squash_commit(repo: pygit2.Repository) -> str:
    """HEAD's tree on a new parentless commit: same GPU code, different history, no note."""
    head = repo.head.peel(pygit2.Commit)
    sig = pygit2.Signature("Bench", "bench@example.com", head.commit_time + 60, 0)
    return str(repo.create_commit("refs/heads/squashed", sig, sig, "squash\n", head.tree.id, []))


def add_fillers(repo: pygit2.Repository, count: int, salt: str = "") -> None:
    """``count`` more receipts in one notes commit, each on its own commit id and trees."""
    store = NotesStore(repo)
    tip = store.tip()
    head = repo.head.peel(pygit2.Commit)
    note = store.note_bytes(str(head.id))
    assert note, "HEAD must carry a receipt: --commits must be a multiple of --every, plus one"
    trees = {path: head.tree[path].id for path in PATHS}
    builder = repo.TreeBuilder(tip.tree)
    for n in range(count):
        data = note
        for path, tree in trees.items():
            data = data.replace(f"tree: {tree} {path}".encode(), f"tree: {_fake_id(n, salt + path)} {path}".encode())
        builder.insert(_fake_id(n, salt + "commit"), repo.create_blob(data), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("Bench", "bench@example.com")
    repo.create_commit(NOTES_REF, sig, sig, "fillers\n", builder.write(), [tip.id])


def one_more_receipt(repo: pygit2.Repository) -> tuple[pygit2.Oid, pygit2.Oid]:
    """(tip before, tip after) one more receipt is added; the benchmark flips between them."""
    before = NotesStore(repo).tip().id
    add_fillers(repo, 1, salt="one-more")
    return before, NotesStore(repo).tip().id


def scopes(repo: pygit2.Repository) -> list[tuple[str | None, tuple[str, ...]]]:
    return [(s.shard, s.paths) for s in open_verifier(repo).scopes]


def verify_state(repo: pygit2.Repository, rev: str) -> str:
    verdict = open_verifier(repo).verify(repo.revparse_single(rev).peel(pygit2.Commit))
    return verdict.state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument("--commits", type=int, default=101)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    print_machine()
    base = Path(tempfile.mkdtemp(prefix="bench-tree-index-"))
    try:
        return _run(base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(base: Path, args: argparse.Namespace) -> int:
    small_root, big_root = base / "small", base / "big"
    build(small_root, args.commits, args.every, 50, 100)
    small = pygit2.Repository(str(small_root))
    squash = add_squash_commit(small)
    shutil.copytree(small_root, big_root)
    big = pygit2.Repository(str(big_root))
    add_fillers(big, args.receipts)
    os.chdir(small_root)  # open_verifier reads pyproject.toml from the working directory's repository
    states = {f"{name} {label}": verify_state(repo, rev) for name, repo in (("small", small), ("big", big))
              for label, rev in (("HEAD", "HEAD"), ("squash", squash))}
    print(f"verdicts: {states}")

    def in_repo(root: Path, repo: pygit2.Repository, rev: str):
        def call() -> str:
            os.chdir(root)
            return verify_state(repo, rev)
        return call

    index = TreeIndex(NotesStore(big), scopes(big))

    def from_nothing() -> None:
        index.path.unlink(missing_ok=True)
        TreeIndex(NotesStore(big), scopes(big)).holders(None, PATHS, {p: None for p in PATHS})

    before, after = one_more_receipt(big)
    flip = {"next": before}

    def flip_tip() -> None:
        big.references[NOTES_REF].set_target(flip["next"])
        flip["next"] = after if flip["next"] == before else before

    def incremental() -> None:
        TreeIndex(NotesStore(big), scopes(big)).holders(None, PATHS, {p: None for p in PATHS})

    cases = [
        Case("verify HEAD, small", in_repo(small_root, small, "HEAD")),
        Case(f"verify HEAD, +{args.receipts} receipts", in_repo(big_root, big, "HEAD")),
        Case("verify squash, small", in_repo(small_root, small, squash)),
        Case(f"verify squash, +{args.receipts} receipts", in_repo(big_root, big, squash)),
    ]
    measure(cases, args.repeat)
    build_case = Case(f"index from nothing, {args.receipts} receipts", from_nothing, number=1)
    update_case = Case("index update, one more receipt", incremental, setup=flip_tip, number=1)
    measure([build_case, update_case], args.repeat)
    big.references[NOTES_REF].set_target(after)
    incremental()
    rows = [[c.name, fmt_time(c.median), f"{fmt_time(c.spread[0])} .. {fmt_time(c.spread[1])}"]
            for c in cases + [build_case, update_case]]
    print(table(rows, ["case", "median", "range"]))
    print(f"verify HEAD: big - small = {fmt_time(cases[1].median - cases[0].median)} (target <= 50 ms)")
    print(f"verify squash: big - small = {fmt_time(cases[3].median - cases[2].median)} (target <= 50 ms)")
    print(f"index from nothing: {fmt_time(build_case.median)} (target <= 1 s)")
    notes = walk_notes_tree(NotesStore(big).tip().tree, "", "")
    records = (index.path.stat().st_size - index.path.read_bytes().index(b"\n") - 1) // 130
    print(f"receipts counted: {len(notes)} notes in the big repository, {records} index records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
