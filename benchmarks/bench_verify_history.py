"""``git gpu-proof log``-style verification of a whole history, in process.

The repository (built with pygit2 object writes, no working-tree checkout):
``--commits`` commits (default 1,000) on one linear branch, one second apart.
The first commit creates pyproject.toml ([tool.gpu_proof] with
``allowed_signers = ".gpu-proof/allowed_signers"``), src/ and tests/ (``--src-files``
small Python files in nested packages). Every ``--every``-th commit (default 10,
counting the first) edits one file under src/ and gets a receipt; every other
commit only edits docs/changes.md, so its GPU code equals its latest receipted
ancestor's. Receipts carry ``--tests`` test lines, the real fingerprint trees of
their commit, and a signature made by the real ``ssh-keygen -Y sign -n gpu-proof``
with a fresh ed25519 key; they are attached with ``NotesStore.add``.
pyproject.toml and the allowed_signers file are also written to the working
directory, where ``open_verifier`` reads them.

Timed (median of interleaved runs, each with a fresh verifier, so nothing is
memoised between runs; gitproof's per-process key caches stay warm):

* log, oldest first: exactly what ``git gpu-proof log -n N`` does:
  ``commits_in(repo, "HEAD", N)`` (topological+time walk), ``open_verifier(repo)``,
  then ``verifier.verify(c)`` for every commit, oldest first (each commit's
  receipt is looked up by its trees, and each receipt is judged once);
* newest first: the same verifications in walk order;
* ``open_verifier`` alone (policy, allowed_signers) and ``verify(HEAD)`` alone
  with a fresh verifier (the ``status`` / hook case);
* the ``commits_in`` walk alone, and ``NotesStore.entries`` on one receipted
  commit (reading and parsing one receipt note, no signature check), to show
  where the time goes.

Run:

    python benchmarks/bench_verify_history.py
    python benchmarks/bench_verify_history.py --commits 5000 --every 10 --repeat 5

Options: ``--commits`` (default 1000), ``--every`` (default 10), ``--tests``
(default 50), ``--src-files`` (default 200), ``--repeat`` (default 7),
``--keep`` (leave the repository in place and print its path).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2

from _common import Case, fmt_time, measure, print_machine, table

from gitproof.fingerprint import commit_trees
from gitproof.git import commits_in
from gitproof.notes import NotesStore
from gitproof.receipt import Receipt, SignedReceipt, TestResult, serialize_payload
from gitproof.verify import open_verifier

PRINCIPAL = "alice@example.com"
NAMESPACE = "gpu-proof"
PATHS = ["src", "tests"]
PYPROJECT = ('[project]\nname = "bench"\nversion = "0"\n\n[tool.gpu_proof]\n'
             'fingerprint_paths = ["src", "tests"]\nallowed_signers = ".gpu-proof/allowed_signers"\n')


class TreeWriter:
    """Files as {path: blob id}; writes git trees, reusing unchanged subtrees."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.files: dict[str, pygit2.Oid] = {}
        self._cache: dict[str, pygit2.Oid] = {}

    def put(self, path: str, data: bytes) -> None:
        self.files[path] = self.repo.create_blob(data)
        parts = path.split("/")
        for depth in range(len(parts)):
            self._cache.pop("/".join(parts[:depth]), None)

    def write(self, prefix: str = "") -> pygit2.Oid:
        if prefix in self._cache:
            return self._cache[prefix]
        start = f"{prefix}/" if prefix else ""
        children: dict[str, bool] = {}  # name -> is a directory
        for path in self.files:
            if path.startswith(start):
                name, sep, _ = path[len(start):].partition("/")
                children[name] = children.get(name, False) or bool(sep)
        builder = self.repo.TreeBuilder()
        for name, is_dir in sorted(children.items()):
            if is_dir:
                builder.insert(name, self.write(start + name), pygit2.enums.FileMode.TREE)
            else:
                builder.insert(name, self.files[start + name], pygit2.enums.FileMode.BLOB)
        self._cache[prefix] = builder.write()
        return self._cache[prefix]


def run(args: list[str], data: bytes | None = None) -> bytes:
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def make_receipt(commit: pygit2.Commit, trees: dict, fingerprint: str, tests: int,
                 when: datetime) -> Receipt:
    return Receipt(
        signer=PRINCIPAL, key_fingerprint=fingerprint,
        started=when, finished=when + timedelta(seconds=42), mode="local",
        trees=trees, commit=str(commit.id), branch="main", dirty_outside=False,
        pytest_args=["--gpu-proof"],
        environment={"os": "Linux", "python": "3.11.7", "pytest": "9.0", "gitproof": "0.1.0"},
        gpus=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15",
               "memory_mib": 81559, "compute_capability": "9.0", "uuid": "GPU-1234"}],
        tests=[TestResult(f"tests/gpu/test_k{i // 10}.py::test_case[{i}]", "passed", 0.25)
               for i in range(tests)],
    )


def build(root: Path, commits: int, every: int, tests: int, src_files: int) -> dict[str, float]:
    t0 = time.perf_counter()
    repo = pygit2.init_repository(str(root), initial_head="main")
    key = root / ".git" / "bench_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key)])
    pub = (root / ".git" / "bench_key.pub").read_text().split()
    fingerprint = run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"]).decode().split()[1]
    allowed = f"{PRINCIPAL} {pub[0]} {pub[1]}\n"
    (root / ".gpu-proof").mkdir()
    (root / ".gpu-proof" / "allowed_signers").write_text(allowed)
    (root / "pyproject.toml").write_text(PYPROJECT)

    writer = TreeWriter(repo)
    writer.put("pyproject.toml", PYPROJECT.encode())
    writer.put(".gpu-proof/allowed_signers", allowed.encode())
    src_paths = [f"src/pkg{i % 10}/mod{i // 10 % 5}/file_{i}.py" for i in range(src_files)]
    for i, path in enumerate(src_paths):
        writer.put(path, f"# module {i}\ndef f{i}(x):\n    return x * {i}\n".encode())
    for i in range(max(1, src_files // 4)):
        writer.put(f"tests/gpu/test_k{i}.py", f"def test_{i}():\n    assert True\n".encode())

    # Commits one second apart, ending an hour ago; each receipt a minute after its commit:
    # fresh for max_age_days, never before their commit.
    base = datetime.now(timezone.utc) - timedelta(hours=1, seconds=commits)
    parents: list[pygit2.Oid] = []
    to_sign: list[pygit2.Commit] = []
    changes = b""
    for n in range(commits):
        if n % every == 0:
            if n:
                path = src_paths[(n // every) % len(src_paths)]
                writer.put(path, f"# module edited in commit {n}\ndef g(x):\n    return x + {n}\n".encode())
            message = f"commit {n}: GPU code change"
        else:
            changes += f"- change {n}\n".encode()
            writer.put("docs/changes.md", changes)
            message = f"commit {n}: docs"
        when = int((base + timedelta(seconds=n)).timestamp())
        sig = pygit2.Signature("Bench", "bench@example.com", when, 0)
        oid = repo.create_commit("refs/heads/main", sig, sig, message + "\n", writer.write(), parents)
        parents = [oid]
        if n % every == 0:
            to_sign.append(repo[oid])
    t_objects = time.perf_counter()

    notes = NotesStore(repo)
    for commit in to_sign:
        receipt = make_receipt(commit, commit_trees(repo, commit, PATHS), fingerprint, tests,
                               datetime.fromtimestamp(commit.commit_time, timezone.utc) + timedelta(minutes=1))
        payload = serialize_payload(receipt)
        armored = run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE], payload).decode()
        notes.add(str(commit.id), SignedReceipt(receipt, payload, armored))
    t_notes = time.perf_counter()
    return {"objects_s": t_objects - t0, "receipts_s": t_notes - t_objects, "receipts": len(to_sign)}


def log_oldest_first(repo: pygit2.Repository, limit: int) -> Counter:
    commits = commits_in(repo, "HEAD", limit)
    verifier = open_verifier(repo)
    return Counter(verifier.verify(c).state for c in reversed(commits))


def log_newest_first(repo: pygit2.Repository, limit: int) -> Counter:
    commits = commits_in(repo, "HEAD", limit)
    verifier = open_verifier(repo)
    return Counter(verifier.verify(c).state for c in commits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--src-files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print_machine()
    root = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        print(f"\nbuilding {root}: {args.commits:,} commits, receipt on every {args.every}th ...",
              flush=True)
        info = build(root, args.commits, args.every, args.tests, args.src_files)
        print(f"  objects in {info['objects_s']:.1f} s; {info['receipts']} receipts signed with "
              f"ssh-keygen and added as notes in {info['receipts_s']:.1f} s")
        repo = pygit2.Repository(str(root))
        expected = log_oldest_first(repo, args.commits)
        newest = log_newest_first(repo, args.commits)
        print(f"  verdicts: {dict(expected)}")
        if expected != newest or expected.get("validated", 0) != info["receipts"] \
                or sum(expected.values()) != args.commits:
            print(f"unexpected verdicts: oldest-first {dict(expected)}, newest-first {dict(newest)}",
                  file=sys.stderr)
            return 1

        store = NotesStore(repo)
        noted = sorted(store.annotated_commits())[0]
        cases = [
            Case(f"log oldest first, {args.commits} commits", lambda: log_oldest_first(repo, args.commits)),
            Case(f"newest first, {args.commits} commits", lambda: log_newest_first(repo, args.commits)),
            Case("open_verifier only", lambda: open_verifier(repo)),
            Case("fresh verifier + verify(HEAD)", lambda: open_verifier(repo).verify(repo.head.peel())),
            Case(f"commits_in walk only ({args.commits})", lambda: commits_in(repo, "HEAD", args.commits)),
            Case("NotesStore.entries: parse one receipt note", lambda: store.entries(noted)),
        ]
        print(f"\nmeasuring, {args.repeat} interleaved rounds ...", flush=True)
        measure(cases, args.repeat, target_s=0.05)

        rows = []
        for case in cases:
            per = case.median / args.commits if "commits" in case.name and "walk" not in case.name else None
            lo, hi = case.spread
            rows.append([case.name, fmt_time(case.median), fmt_time(per) if per else "",
                         f"{fmt_time(lo)} .. {fmt_time(hi)}", str(case.number)])
        print()
        print(table(rows, ["operation", "median", "per commit", "min .. max", "calls/sample"]))
        oldest, newest_c = cases[0].median, cases[1].median
        print(f"\nnewest-first / oldest-first: {newest_c / oldest:.2f}x; "
              f"receipts checked per run: {info['receipts']} "
              f"(~{fmt_time(oldest / info['receipts'])} of the oldest-first run per receipt)")
        return 0
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
