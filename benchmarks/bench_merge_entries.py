"""What merging one commit's note costs as the note grows: `sync._union` on N entries.

Anyone can push a note with many small entries, so the per-commit merge must stay
linear in the note's size. Each size is merged into an empty note and into a note that
already holds every entry (the common "nothing new" case), median of a few runs.

Run:

    python benchmarks/bench_merge_entries.py [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pygit2

from _common import print_machine, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitproof.sync import MergeResult, _union  # noqa: E402


def timed(repo: pygit2.Repository, current: tuple[str, str] | None, blob: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        _union(repo, current, blob, "0" * 40, MergeResult("bench", "merge"))
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print_machine()
    repo = pygit2.init_repository(tempfile.mkdtemp(prefix="bench-merge-"), bare=True)
    rows = []
    for n in (5_000, 10_000, 20_000, 40_000):
        note = b"".join(b"gpu-proof receipt v1\nk: %08d\n" % i for i in range(n))
        blob = str(repo.create_blob(note))
        into_empty = timed(repo, None, blob, args.runs)
        into_same = timed(repo, (blob, "x"), blob, args.runs)
        rows.append([f"{n:,}", f"{len(note) // 1024:,} KiB", f"{into_empty:.3f} s", f"{into_same:.3f} s"])
    print()
    print(table(rows, ["entries", "note size", "merge into empty", "merge into itself"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
