"""Writing receipts into notes of every size: ``NotesStore.add`` and merging incoming notes.

For each size N (default 1,000, 10,000 and 20,000), a repository whose notes already hold N
receipts (one per made-up commit id, written once in git's fan-out layout), then, interleaved,
medians of ``--repeat`` runs:

* ``add``: one more receipt with ``NotesStore.add`` (the notes ref is put back before each run,
  so every run adds to N notes);
* ``merge``: ``gitproof.sync.merge`` of a notes ref that holds the same N receipts plus
  ``--incoming`` new ones (default 1,000) into ours, which holds the N plus one of its own (so
  the histories diverged and a merge commit is made), as ``git gpu-proof fetch`` does after
  the transfer.

Also: the loose objects each operation writes, and the receipts counted after it (none lost).
The figures go in docs/performance.md, section 13.

Run:

    python benchmarks/bench_notes.py
    python benchmarks/bench_notes.py --sizes 10000 20000 --incoming 10000 --repeat 3
"""
from __future__ import annotations

import argparse
import hashlib
from datetime import datetime, timedelta, timezone
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

from _common import Case, fmt_time, measure, print_machine, table

from gitproof.notes import NOTES_REF, NotesStore, tree_with_notes, walk_notes_tree
from gitproof.receipt import Receipt, SignedReceipt, TestResult, serialize_payload
from gitproof.sync import merge

SIG = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n"
INCOMING_REF = "refs/remote-notes/bench/gpu-proof"


def signed_receipt(n: int, tests: int = 50) -> SignedReceipt:
    """A 50-test receipt in the real format; its signature block is a stand-in (nothing verifies it)."""
    when = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(minutes=n)
    receipt = Receipt(
        signer="alice@example.com", key_fingerprint="SHA256:" + "A" * 43, started=when,
        finished=when + timedelta(seconds=42), mode="local",
        trees={"src": _id(n, "src"), "tests": _id(n, "tests")}, commit=_id(n, "made-on"), branch="main",
        dirty_outside=False, pytest_args=["--gpu-proof"],
        environment={"os": "Linux", "python": "3.11.7", "pytest": "9.0", "gitproof": "0.3.0"},
        gpus=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory_mib": 81559,
               "compute_capability": "9.0", "uuid": "GPU-1234"}],
        tests=[TestResult(f"tests/gpu/test_k{i // 10}.py::test_case[{i}]", "passed", 0.25) for i in range(tests)],
    )
    return SignedReceipt(receipt, serialize_payload(receipt), SIG)


def _id(n: int, salt: str) -> str:
    return hashlib.sha1(f"{salt}{n}".encode()).hexdigest()


def notes_commit(repo: pygit2.Repository, base: pygit2.Oid | None, notes: dict[str, bytes]) -> pygit2.Oid:
    tree = repo[base].peel(pygit2.Commit).tree if base else None
    sig = pygit2.Signature("Bench", "bench@example.com")
    return repo.create_commit(None, sig, sig, "notes\n", tree_with_notes(repo, tree, notes),
                              [base] if base else [])


def loose_bytes(root: Path) -> int:
    objects = root / ".git" / "objects"
    return sum(f.stat().st_size for d in objects.iterdir() if len(d.name) == 2 for f in d.iterdir())


def count(repo: pygit2.Repository, ref: str = NOTES_REF) -> int:
    return len(walk_notes_tree(repo.references[ref].peel(pygit2.Commit).tree, "", ""))


def fetch_repos(base: Path, size: int) -> Path:
    """A bare remote with ``size`` receipts and a clone (returned) with ``size`` others, ready to fetch."""
    remote = pygit2.init_repository(str(base / f"remote-{size}.git"), bare=True)
    local = pygit2.init_repository(str(base / f"local-{size}"))
    local.remotes.create("origin", remote.path)
    sig = pygit2.Signature("Bench", "bench@example.com")
    local.create_commit("HEAD", sig, sig, "empty\n", local.TreeBuilder().write(), [])  # fetch wants a commit
    data = signed_receipt(0).text.encode()
    for repo, salt in ((remote, "theirs"), (local, "ours")):
        tip = notes_commit(repo, None, {_id(i, salt): data for i in range(size)})
        repo.references.create(NOTES_REF, tip, force=True)
    return base / f"local-{size}"


def fetch_once(base: Path, size: int) -> list[str]:
    """``git gpu-proof fetch`` end to end: a bare remote with ``size`` receipts, a clone with ``size``
    others; wall time, bytes the clone's object store grew by, receipts after."""
    fetch_repos(base, size)
    before = _store_bytes(base / f"local-{size}" / ".git" / "objects")
    start = time.perf_counter()
    # this interpreter's git-gpu-proof, whether or not its virtualenv is on PATH
    tool = Path(sys.executable).parent / "git-gpu-proof"
    done = subprocess.run([str(tool) if tool.exists() else shutil.which("git-gpu-proof") or "git-gpu-proof",
                           "fetch", "origin"],
                          cwd=base / f"local-{size}", capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fetch failed: {done.stderr}")
    grown = _store_bytes(base / f"local-{size}" / ".git" / "objects") - before
    counted = count(pygit2.Repository(str(base / f"local-{size}")))
    assert counted == 2 * size, f"lost receipts: {counted} != {2 * size}"
    return [f"{size} + {size}", f"{elapsed:.2f} s", f"{grown / 1e6:.1f} MB", f"{counted} of {2 * size}"]


def _store_bytes(objects: Path) -> int:
    return sum(f.stat().st_size for f in objects.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 20_000])
    parser.add_argument("--incoming", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fetch", type=int, nargs="*", default=[10_000, 20_000], metavar="N",
                        help="also time `git gpu-proof fetch` of N remote receipts into N local ones, once each")
    args = parser.parse_args()
    print_machine()
    base = Path(tempfile.mkdtemp(prefix="bench-notes-"))
    try:
        rows = [_size(base / str(size), size, args.incoming, args.repeat) for size in args.sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    header = ["notes", "add (median)", f"merge {args.incoming} (median)", "merge writes", "counted after merge"]
    print(table(rows, header))
    if args.fetch:
        fetch_base = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
        try:
            fetched = [fetch_once(fetch_base, size) for size in args.fetch]
        finally:
            shutil.rmtree(fetch_base, ignore_errors=True)
        print(table(fetched, ["receipts (remote + local)", "git gpu-proof fetch", "objects written", "counted after"]))
    return 0


def _size(root: Path, size: int, incoming: int, repeat: int) -> list[str]:
    repo = pygit2.init_repository(str(root))
    data = signed_receipt(0).text.encode()
    existing = {_id(i, "commit"): data for i in range(size)}
    start = notes_commit(repo, None, existing)
    theirs = notes_commit(repo, start, {_id(i, "incoming"): data for i in range(incoming)})
    ours = notes_commit(repo, start, {_id(0, "local"): data})  # diverged: a real merge, not a fast-forward
    repo.references.create(NOTES_REF, ours, force=True)
    repo.references.create(INCOMING_REF, theirs, force=True)
    store = NotesStore(repo)
    one = signed_receipt(-1)

    def reset() -> None:
        repo.references[NOTES_REF].set_target(ours)

    before = loose_bytes(root)  # the first merge writes its objects; later runs find them there
    merge(repo, INCOMING_REF)
    written = loose_bytes(root) - before
    counted = count(repo)
    add = Case(f"add to {size}", lambda: store.add(_id(-1, "new"), one), setup=reset, number=1)
    merged = Case(f"merge {incoming} into {size}", lambda: merge(repo, INCOMING_REF), setup=reset, number=1)
    measure([add, merged], repeat, progress=False)
    expected = size + 1 + incoming
    assert counted == expected, f"lost receipts: {counted} != {expected}"
    return [str(size), fmt_time(add.median), fmt_time(merged.median), f"{written / 1e6:.2f} MB",
            f"{counted} of {expected}"]


if __name__ == "__main__":
    raise SystemExit(main())
