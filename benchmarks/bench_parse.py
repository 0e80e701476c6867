"""Reading and verifying one receipt of many tests, in process, side by side with another checkout.

    python benchmarks/bench_parse.py --other /tmp/oldparse
    python benchmarks/bench_parse.py --tests 5000 --rounds 21 --calls 5

Setup, with this checkout's gitproof: two repositories of one commit each, whose
pyproject.toml and allowed_signers admit a fresh ed25519 key made by ``ssh-keygen``.
Each commit carries one receipt of ``--tests`` passing tests, signed by the real
``ssh-keygen -Y sign -n gpu-proof`` and attached with ``NotesStore.add``:

* ``gpu-use``: a ``test:`` line and a ``gpu-use:`` record per test, as ``pytest
  --gpu-proof`` writes them for trivial tests that never load CUDA (the record
  the GPU-use watcher makes then, byte for byte);
* ``tests only``: the ``test:`` lines alone, as a receipt from before GPU-use records.

Timed in one worker interpreter per checkout and round, this checkout and
``--other`` (say, the commit before: ``git worktree add /tmp/oldparse HEAD``)
taking turns so that machine noise hits both alike; each figure is the median
over rounds of a round's median of ``--calls`` calls, after one warm-up call:

* ``parse_payload(payload)``;
* ``note_entries(note)``: the note split into receipts, each parsed;
* ``verify``: ``pygit2.Repository(path)``, ``open_verifier(repo)`` and
  ``verify(HEAD)``, so the note is read, parsed and judged from nothing, as one
  ``git gpu-proof verify`` process does after its imports (gitproof's key caches,
  filled by the warm-up, aside).

Every verify must say validated and every parse give back all tests and
records, or the script stops: no receipt is lost.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from _common import print_machine, table

HERE = Path(__file__).resolve().parent.parent
NAMESPACE = "gpu-proof"
PRINCIPAL = "alice@example.com"
PYPROJECT = ('[project]\nname = "bench"\nversion = "0"\n\n[tool.gpu_proof]\n'
             'fingerprint_paths = ["src", "tests"]\nallowed_signers = ".gpu-proof/allowed_signers"\n')
SHAPES = ("gpu-use", "tests only")
CASES = ("parse_payload", "note_entries", "verify")
# What the GPU-use watcher records for a test that never loaded CUDA (gitproof.gpu.findings.combine).
NOT_LOADED = {"used": False, "method": "cuda-driver.not-loaded",
              "evidence": "libcuda was never loaded by the test process", "devices": [], "nvml": None}


def run(args: list[str], data: bytes | None = None) -> bytes:
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def build(root: Path, tests: int, with_uses: bool) -> None:
    """A one-commit repository at ``root`` with a signed receipt of ``tests`` tests on its commit."""
    import pygit2

    from gitproof.fingerprint import commit_trees
    from gitproof.notes import NotesStore
    from gitproof.receipt import Receipt, SignedReceipt, TestResult, serialize_payload

    key = root / ".git" / "bench_key"
    repo = pygit2.init_repository(str(root), initial_head="main")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key)])
    kind, blob = (root / ".git" / "bench_key.pub").read_text().split()[:2]
    files = {"pyproject.toml": PYPROJECT, ".gpu-proof/allowed_signers": f"{PRINCIPAL} {kind} {blob}\n",
             "src/kernels.py": "def add(a, b):\n    return a + b\n",
             **{f"tests/test_many_{i}.py": "def test_it():\n    pass\n" for i in range(tests // 100 + 1)}}
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    repo.index.add_all()
    repo.index.write()
    now = datetime.now(timezone.utc)
    author = pygit2.Signature("Bench", "bench@example.com", int((now - timedelta(hours=1)).timestamp()), 0)
    commit = repo[repo.create_commit("refs/heads/main", author, author, "one commit\n",
                                     repo.index.write_tree(), [])]
    fingerprint = run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"]).decode().split()[1]
    results = [TestResult(f"tests/test_many_{i // 100}.py::test_case[{i}]", "passed", 0.001 * (i % 7))
               for i in range(tests)]
    started = now - timedelta(minutes=30)
    receipt = Receipt(
        signer=PRINCIPAL, key_fingerprint=fingerprint, started=started, finished=started + timedelta(seconds=9),
        mode="local", trees=commit_trees(repo, commit, ["src", "tests"]), commit=str(commit.id), branch="main",
        dirty_outside=False, pytest_args=["--gpu-proof"],
        environment={"os": "Linux", "python": "3.11.7", "pytest": "9.0", "gitproof": "0.1.0"}, gpus=[],
        tests=results, gpu_use=[{"test": t.nodeid, **NOT_LOADED} for t in results] if with_uses else [])
    payload = serialize_payload(receipt)
    armored = run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE], payload).decode()
    NotesStore(repo).add(str(commit.id), SignedReceipt(receipt, payload, armored))
    (root / ".git" / "bench_payload").write_bytes(payload)


def median_of(fn: Callable[[], object], calls: int) -> float:
    fn()  # warm-up: imports, key caches
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(checkout: Path, roots: list[Path], tests: int, calls: int) -> dict[str, Any]:
    """In a fresh interpreter: import gitproof from ``checkout``, time every case, check every verdict."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
    sys.path.insert(0, str(checkout))
    import pygit2

    from gitproof.notes import NotesStore
    from gitproof.receipt import note_entries, parse_payload
    from gitproof.verify import open_verifier

    def verify(root: Path) -> str:
        repo = pygit2.Repository(str(root))
        return str(open_verifier(repo).verify(repo.head.peel()).state)

    out: dict[str, Any] = {"gitproof": str(Path(sys.modules["gitproof"].__file__ or "").parent)}
    for shape, root in zip(SHAPES, roots, strict=True):
        repo = pygit2.Repository(str(root))
        payload = (root / ".git" / "bench_payload").read_bytes()
        note = NotesStore(repo).note_bytes(str(repo.head.target)) or b""
        receipt = parse_payload(payload)
        [entry] = note_entries(note)
        out[shape] = {
            "checks": {"verdict": verify(root), "tests": len(receipt.tests), "gpu_use": len(receipt.gpu_use),
                       "entry_tests": len(entry.signed.receipt.tests) if entry.signed else -1},
            "parse_payload": median_of(lambda p=payload: parse_payload(p), calls),
            "note_entries": median_of(lambda n=note: note_entries(n), calls),
            "verify": median_of(lambda r=root: verify(r), calls),
            "bytes": len(payload),
        }
    return out


def one_round(checkout: Path, roots: list[Path], tests: int, calls: int) -> dict[str, Any]:
    args = [sys.executable, __file__, "--worker", str(checkout), "--tests", str(tests), "--calls", str(calls),
            "--roots", *map(str, roots)]
    result = json.loads(subprocess.run(args, capture_output=True, check=True, text=True).stdout)
    if Path(result["gitproof"]) != checkout / "gitproof":
        raise SystemExit(f"the worker for {checkout} imported {result['gitproof']}")
    for shape in SHAPES:
        checks = result[shape]["checks"]
        want_uses = tests if shape == "gpu-use" else 0
        if checks != {"verdict": "validated", "tests": tests, "gpu_use": want_uses, "entry_tests": tests}:
            raise SystemExit(f"{checkout}, {shape}: unexpected results {checks}")
    return result


def report(results: dict[str, list[dict[str, Any]]], other: Path | None) -> None:
    this = results["this"]
    print(f"\nreceipt bytes: gpu-use {this[0]['gpu-use']['bytes']:,}, tests only {this[0]['tests only']['bytes']:,}")
    header = ["case", "this (ms)"] + (["other (ms)", "other / this"] if other else [])
    rows = []
    for shape in SHAPES:
        for case in CASES:
            mine = statistics.median(r[shape][case] for r in this) * 1e3
            row = [f"{shape}: {case}", f"{mine:,.2f}"]
            if other:
                theirs = statistics.median(r[shape][case] for r in results["other"]) * 1e3
                row += [f"{theirs:,.2f}", f"{theirs / mine:,.1f}x"]
            rows.append(row)
    print(table(rows, header))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="another checkout of gitproof (a directory holding gitproof/)")
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--roots", type=Path, nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.roots, args.tests, args.calls)))
        return 0
    if args.other and not (args.other / "gitproof" / "__init__.py").is_file():
        parser.error(f"{args.other} is not a checkout of gitproof (no gitproof/__init__.py there)")

    print_machine()
    checkouts = {"this": HERE, **({"other": args.other.resolve()} if args.other else {})}
    print("checkouts: " + ", ".join(f"{name} {path}" for name, path in checkouts.items()))
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        roots = [Path(tmp) / "uses", Path(tmp) / "plain"]
        for root, with_uses in zip(roots, (True, False), strict=True):
            build(root, args.tests, with_uses)
        print(f"{args.tests:,} tests per receipt; {args.rounds} rounds of {args.calls} calls per case, "
              "checkouts taking turns ...", flush=True)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
        for round_no in range(args.rounds):
            names = list(checkouts)[::1 if round_no % 2 == 0 else -1]
            for name in names:
                results[name].append(one_round(checkouts[name], roots, args.tests, args.calls))
    report(results, args.other)
    return 0


if __name__ == "__main__":
    sys.exit(main())
