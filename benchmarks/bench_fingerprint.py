"""Fingerprint cost on a clean checkout, and how it scales with repository size.

What it measures (medians of interleaved repetitions, see _common.py):

* ``commit_trees(repo, repo.head.peel(), ["src", "tests"])``: the verify /
  pre-push hook path, a few tree lookups. Timed twice: on an already open
  ``pygit2.Repository`` and including ``pygit2.Repository(path)`` + HEAD
  lookup (what one CLI invocation pays).
* ``worktree_state(repo, ["src", "tests"])``: the ``run`` path, a status over
  the working tree (one lstat per file, no file contents read on a settled
  index) followed by the same tree lookups because the tree is clean.
* ``git status --porcelain --untracked-files=all`` in a subprocess, as a
  reference for what the status part of ``worktree_state`` costs in git itself.
* SHA-256 of every file under src/ and tests/ (``hashlib.file_digest``), which
  is what a content-hash fingerprint costs, once with the files in the page
  cache and once after evicting them with ``posix_fadvise(DONTNEED)`` (the
  script reports, via util-linux ``fincore`` when available, how much really
  stayed resident).
* The same operations on a tiny repository (10 files), to show whether the
  git-tree figures grow with size.

How the large repository is built: Python writes ``--files`` files of random
(incompressible, ``os.urandom``) bytes totalling about ``--mb`` MB into nested
directories under src/ (75 %) and tests/ (25 %), plus a pyproject.toml and a
README; then the real ``git add -A`` and ``git commit`` record them (loose
objects, default compression). The script then waits 1.1 s and runs
``git status`` once so the index is rewritten after the files' mtimes (no
"racily clean" entries whose contents libgit2 would re-hash): a settled
checkout, as a developer's is.

Run:

    python benchmarks/bench_fingerprint.py                 # 20,000 files, 500 MB
    python benchmarks/bench_fingerprint.py --files 2000 --mb 50 --repeat 5
    python benchmarks/bench_fingerprint.py --dir /tmp/fp-big --keep   # reuse later

Options: ``--files N`` (default 20000), ``--mb S`` (default 500), ``--repeat R``
(default 7), ``--dir PATH`` (build there, or reuse a repository this script
built there before), ``--keep`` (do not delete the temporary directory; a ``--dir``
repository is never deleted).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

from _common import Case, fmt_time, measure, print_machine, table

from gitproof.fingerprint import commit_trees, worktree_state

PATHS = ["src", "tests"]
MARKER = ".bench-fingerprint.json"  # inside .git/, records how a repository was built
FILES_PER_DIR = 50
DIRS_PER_PACKAGE = 10


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, stdout=subprocess.DEVNULL)


def layout(files: int) -> list[str]:
    """Relative paths: src/pkg_NN/mod_NN/f_NNN.bin, tests/pkg_NN/mod_NN/t_NNN.bin."""
    n_src = max(1, round(files * 0.75)) if files > 1 else 1
    paths = []
    for top, prefix, count in (("src", "f", n_src), ("tests", "t", files - n_src)):
        for i in range(count):
            leaf, slot = divmod(i, FILES_PER_DIR)
            package, module = divmod(leaf, DIRS_PER_PACKAGE)
            paths.append(f"{top}/pkg_{package:03d}/mod_{module:02d}/{prefix}_{slot:03d}.bin")
    return paths


def generate(root: Path, files: int, megabytes: float, seed: int = 1) -> dict[str, float]:
    """Build the repository; returns timings of the phases."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    git(root, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com"),
                       ("commit.gpgsign", "false")):
        git(root, "config", key, value)
    paths = layout(files)
    weights = [rng.uniform(0.2, 1.8) for _ in paths]
    scale = megabytes * 1e6 / sum(weights)
    total = 0
    made_dirs: set[str] = set()
    for rel, weight in zip(paths, weights, strict=True):
        parent = rel.rsplit("/", 1)[0]
        if parent not in made_dirs:
            (root / parent).mkdir(parents=True, exist_ok=True)
            made_dirs.add(parent)
        size = max(1, int(weight * scale))
        (root / rel).write_bytes(os.urandom(size))
        total += size
    (root / "pyproject.toml").write_text(
        '[project]\nname = "bench"\nversion = "0"\n\n[tool.gpu_proof]\n'
        'fingerprint_paths = ["src", "tests"]\n')
    (root / "README.md").write_text("benchmark repository\n")
    written = time.perf_counter()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "generated")
    committed = time.perf_counter()
    time.sleep(1.1)  # let the clock move past the files' mtimes ...
    git(root, "status", "--porcelain")  # ... and have git rewrite a settled index
    info = {"files": files, "bytes": total, "write_s": written - started,
            "git_s": committed - written}
    (root / ".git" / MARKER).write_text(json.dumps(info))
    return info


def existing(root: Path) -> dict | None:
    marker = root / ".git" / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else None


def git_status(root: Path) -> None:
    """Reference point: the real git doing the same status (includes process start-up)."""
    subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                   check=True, stdout=subprocess.DEVNULL)


def tracked_files(root: Path) -> list[Path]:
    found = []
    for top in PATHS:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames.sort()
            found += [Path(dirpath) / name for name in sorted(filenames)]
    return found


def hash_all(root: Path, files: list[Path]) -> str:
    """A content-hash fingerprint: SHA-256 over (path, SHA-256 of contents) of every file."""
    outer = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").digest()
        outer.update(str(path.relative_to(root)).encode() + b"\0" + digest)
    return outer.hexdigest()


def evict(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(files: list[Path]) -> None:
    """Read every file once so it is in the page cache (undoes a previous eviction)."""
    buffer = bytearray(1 << 20)
    for path in files:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buffer):
                pass


def resident_bytes(files: list[Path]) -> int | None:
    """Bytes of these files in the page cache, per util-linux fincore; None if unavailable."""
    if shutil.which("fincore") is None:
        return None
    total = 0
    for start in range(0, len(files), 1000):
        chunk = [str(p) for p in files[start:start + 1000]]
        result = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *chunk],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return None
        total += sum(int(x) for x in result.stdout.split())
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mb", type=float, default=500.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print_machine()
    scratch = Path(tempfile.mkdtemp(prefix="bench-fingerprint-"))
    big_root = args.dir.resolve() if args.dir else scratch / "big"
    tiny_root = scratch / "tiny"
    try:
        info = existing(big_root)
        if info is not None:
            print(f"\nreusing {big_root}: {info['files']:,} files, {info['bytes'] / 1e6:,.0f} MB")
        else:
            if big_root.exists() and any(big_root.iterdir()):
                parser.error(f"{big_root} exists and was not built by this script")
            print(f"\nbuilding {big_root}: {args.files:,} files, ~{args.mb:,.0f} MB of random bytes ...",
                  flush=True)
            info = generate(big_root, args.files, args.mb)
            print(f"  wrote files in {info['write_s']:.1f} s; git add + commit took "
                  f"{info['git_s']:.1f} s")
        generate(tiny_root, 10, 0.1)

        big, tiny = pygit2.Repository(str(big_root)), pygit2.Repository(str(tiny_root))
        for name, repo in (("large", big), ("tiny", tiny)):
            state = worktree_state(repo, PATHS)
            if state.changed_paths or not state.matches_head:
                print(f"{name} checkout is not clean: {state.changed_paths[:5]}", file=sys.stderr)
                return 1
        big_files, tiny_files = tracked_files(big_root), tracked_files(tiny_root)
        big_bytes = sum(p.stat().st_size for p in big_files)
        print(f"  large: {len(big_files):,} files, {big_bytes / 1e6:,.1f} MB under src/ and tests/;"
              f" tiny: {len(tiny_files)} files")

        def fresh(root: Path):
            repo = pygit2.Repository(str(root))
            return commit_trees(repo, repo.head.peel(), PATHS)

        big_head, tiny_head = big.head.peel(), tiny.head.peel()
        cases = {
            "commit_trees, open repo, tiny": Case("", lambda: commit_trees(tiny, tiny.head.peel(), PATHS)),
            "commit_trees, open repo, large": Case("", lambda: commit_trees(big, big.head.peel(), PATHS)),
            "open + HEAD + commit_trees, tiny": Case("", lambda: fresh(tiny_root)),
            "open + HEAD + commit_trees, large": Case("", lambda: fresh(big_root)),
            "worktree_state, tiny": Case("", lambda: worktree_state(tiny, PATHS)),
            "worktree_state, large": Case("", lambda: worktree_state(big, PATHS)),
            "git status --porcelain -uall, large (subprocess)": Case("", lambda: git_status(big_root)),
            "sha256 all files, tiny (cached)": Case("", lambda: hash_all(tiny_root, tiny_files)),
            "sha256 all files, large (cached)": Case("", lambda: hash_all(big_root, big_files),
                                                     setup=lambda: warm(big_files), number=1),
            "sha256 all files, large (evicted)": Case("", lambda: hash_all(big_root, big_files),
                                                      setup=lambda: evict(big_files), number=1),
        }
        for name, case in cases.items():
            case.name = name
        assert big_head is not None and tiny_head is not None

        # page-cache facts, measured outside the timed region
        hash_all(big_root, big_files)
        cached_res = resident_bytes(big_files)
        evict(big_files)
        evicted_res = resident_bytes(big_files)
        hash_all(big_root, big_files)

        print(f"\nmeasuring, {args.repeat} interleaved rounds ...", flush=True)
        measure(list(cases.values()), args.repeat)

        base = cases["commit_trees, open repo, large"].median
        rows = []
        for case in cases.values():
            lo, hi = case.spread
            rows.append([case.name, fmt_time(case.median), f"{case.median / base:,.1f}x",
                         f"{fmt_time(lo)} .. {fmt_time(hi)}", str(case.number)])
        print()
        print(table(rows, ["operation", "median", "vs commit_trees large",
                           "min .. max", "calls/sample"]))

        def ratio(a: str, b: str) -> str:
            return f"{cases[a].median / cases[b].median:,.2f}"

        print("\nlarge / tiny (same operation):")
        for op in ("commit_trees, open repo", "open + HEAD + commit_trees", "worktree_state",
                   "sha256 all files"):
            a = f"{op}, large" if not op.startswith("sha256") else f"{op}, large (cached)"
            b = f"{op}, tiny" if not op.startswith("sha256") else f"{op}, tiny (cached)"
            print(f"  {op:30} {ratio(a, b)}x")
        print("large repository, relative:")
        wt_large = "worktree_state, large"
        print(f"  sha256 (cached)  / worktree_state  {ratio('sha256 all files, large (cached)', wt_large)}x")
        print(f"  sha256 (evicted) / worktree_state  {ratio('sha256 all files, large (evicted)', wt_large)}x")
        print(f"  worktree_state   / open+commit_trees {ratio(wt_large, 'open + HEAD + commit_trees, large')}x")
        mb_s = big_bytes / 1e6
        print(f"  sha256 throughput: cached {mb_s / cases['sha256 all files, large (cached)'].median:,.0f} MB/s,"
              f" evicted {mb_s / cases['sha256 all files, large (evicted)'].median:,.0f} MB/s")
        if cached_res is None:
            print("page cache: fincore not available; residency unknown")
        else:
            print(f"page cache (fincore): {cached_res / 1e6:,.1f} of {big_bytes / 1e6:,.1f} MB resident (whole pages) "
                  f"before the cached runs, {evicted_res / 1e6:,.1f} MB after eviction")
        return 0
    finally:
        if args.keep:
            print(f"\nkept {scratch}" + (f" and {big_root}" if args.dir else ""))
        else:
            shutil.rmtree(scratch, ignore_errors=True)  # a --dir repository is always kept


if __name__ == "__main__":
    sys.exit(main())
