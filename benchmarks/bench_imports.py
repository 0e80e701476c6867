"""Import cost of the pre-push hook's path, side by side with another checkout.

    python benchmarks/bench_imports.py OTHER_CHECKOUT [RUNS]

Each run starts a fresh interpreter that imports what `git-gpu-proof hook pre-push`
imports, alternating between this checkout and OTHER_CHECKOUT (say, a worktree of an
older commit: `git worktree add /tmp/old <commit>`) so that machine noise hits both
alike. Prints the median of each and their ratio. An editable install's import hook
is removed first, so each run imports the checkout it names.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
PRELUDE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
           "sys.path.insert(0, {path!r}); ")
CASES = [("the pre-push hook's imports", "import gitproof.cli.hook, gitproof.hook, gitproof.sync, gitproof.verify"),
         ("python -c pass", "pass")]


def once(path: Path, code: str, cwd: str) -> float:
    start = time.perf_counter()  # run from an empty directory: nothing there can be imported instead
    subprocess.run([sys.executable, "-c", PRELUDE.format(path=str(path)) + code], check=True, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="another checkout of gitproof (a directory holding gitproof/)")
    parser.add_argument("runs", type=int, nargs="?", default=21, help="runs per case (default 21)")
    args = parser.parse_args()
    other, runs = args.other.resolve(), args.runs
    if not (other / "gitproof" / "__init__.py").is_file():
        parser.error(f"{other} is not a checkout of gitproof (no gitproof/__init__.py there)")
    if runs < 1:
        parser.error("runs must be at least 1")
    empty = tempfile.mkdtemp(prefix="bench-imports-")
    print(f"this checkout: {HERE}\nother:         {other}\nruns: {runs}, interleaved; medians")
    for label, code in CASES:
        mine, theirs = [], []
        for _ in range(runs):
            theirs.append(once(other, code, empty))
            mine.append(once(HERE, code, empty))
        a, b = statistics.median(theirs) * 1000, statistics.median(mine) * 1000
        print(f"{label:38s} other {a:7.1f} ms   this {b:7.1f} ms   this/other {b / a:.2f}")


if __name__ == "__main__":
    main()
