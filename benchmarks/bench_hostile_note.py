"""What a hostile junk note costs `git gpu-proof verify`: time and peak memory of the process.

Anyone can attach any note to any commit. This script makes a small
repository whose HEAD carries a junk note of SIZE megabytes (lines of one
character: the worst case for splitting lines), then runs
`git gpu-proof verify --json HEAD` in a child process several times and
prints the median wall time and the median peak resident memory (the
child's ``ru_maxrss``). Verification must give the verdict
``note-too-large`` without reading the note.

Run:

    python benchmarks/bench_hostile_note.py [--megabytes 100] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_machine


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def make_repo(root: Path, megabytes: int) -> None:
    git(root, "init", "-q")
    (root / "src").mkdir()
    (root / "src" / "k.py").write_text("x = 1\n")
    (root / ".gpu-proof").mkdir()
    (root / ".gpu-proof" / "allowed_signers").write_text("")
    (root / "pyproject.toml").write_text('[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n')
    git(root, "add", "-A")
    git(root, "-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-q", "-m", "code")
    junk = root.parent / "junk.txt"
    junk.write_bytes(b"x\n" * (megabytes * 1024 * 1024 // 2))
    git(root, "-c", "user.email=b@example.com", "-c", "user.name=b",
        "notes", "--ref=gpu-proof", "add", "-F", str(junk), "HEAD")
    junk.unlink()


def one_run(root: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, and the failure code, of one verify in a fresh child."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(['git', 'gpu-proof', 'verify', '--json', 'HEAD'], capture_output=True, text=True); "
            "w = time.perf_counter() - t; m = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
            "print(w, m); print(r.stdout)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    first, rest = out.split("\n", 1)
    wall, rss_kib = first.split()
    reasons = json.loads(rest)["results"][0]["reasons"]
    return float(wall), int(rss_kib) / 1024, ",".join(r["code"] for r in reasons)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print_machine()
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]
    with tempfile.TemporaryDirectory(prefix="bench-hostile-note-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        started = time.perf_counter()
        make_repo(root, args.megabytes)
        print(f"\nrepository with a {args.megabytes} MB junk note made in {time.perf_counter() - started:.1f} s")
        runs = [one_run(root) for _ in range(args.runs)]
    walls, rss, codes = zip(*runs, strict=True)
    print(f"verify --json HEAD, {args.runs} runs: median {statistics.median(walls):.3f} s wall, "
          f"median peak RSS {statistics.median(rss):.0f} MiB; verdict: {set(codes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
