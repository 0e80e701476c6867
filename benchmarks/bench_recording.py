"""Recording overhead side by side with pytest-gpu-proof, the plugin gitproof replaces.

In one go:

1. a throwaway git repository with ``--tests`` trivial tests marked
   ``gpu_proof`` (``--per-file`` to a module), a real ssh-keygen key in
   ``.gpu-proof/allowed_signers`` and ``user.signingKey``, made the way
   ``git gpu-proof demo`` makes its repository (gitproof.demo);
2. a throwaway virtualenv (``python -m venv``) with ``pytest-gpu-proof==0.4.1``
   from PyPI, and the pytest of this environment. If that install fails, the
   script says why and measures gitproof alone;
3. interleaved runs (see _common.py), ``--repeat`` of each, median wall time:

   * plain pytest in gitproof's environment (this interpreter), with and
     without gitproof's plugin loaded;
   * ``pytest --gpu-proof``: gitproof signs a receipt and stores it as a git note;
   * ``git gpu-proof run``: the same, plus run's signing preflight and its
     policy check of the new receipt;
   * plain pytest in the peer's virtualenv, with and without its plugin;
   * ``pytest --gpu-proof-enable``: pytest-gpu-proof signs its JSON receipt
     with the same key (ed25519, in process; ``--gpu-proof-github-user`` is
     given, so nothing asks GitHub or ``gh``).

Every run is ``-q -p no:cacheprovider`` with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``,
and the plugin loaded by ``-p``, so no other installed plugin (xdist,
hypothesis) weighs on one side only. Each side's baseline is plain pytest
with its plugin loaded but not recording, as a user who installed it runs
pytest; a run with no plugin at all shows what loading it costs. The two
plugins never meet in one process: the peer runs only in its virtualenv,
gitproof only in this one. ``--before DIR`` adds the two recording runs of
the gitproof package in DIR (an older copy), for before-and-after figures
from one run.

Before every recording run the notes ref is deleted (and the peer's receipt
file removed); after it, the script checks that all tests passed and counts
the receipts: exactly one new one per run, or it stops. Sizes are the note
(payload and signature) and the peer's JSON file.

Run with the project's environment:

    .venv/bin/python benchmarks/bench_recording.py [--tests 5000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from _common import Case, fmt_time, measure, print_machine, table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitproof.demo import create_demo_repo  # noqa: E402

PEER = "pytest-gpu-proof"
NOTES_REF = "refs/notes/gpu-proof"
SIGNATURE_START = "-----BEGIN SSH SIGNATURE-----"
PYTEST_FLAGS = ["-q", "-p", "no:cacheprovider"]
TARGETS = {"pytest --gpu-proof": 6.0, "git gpu-proof run": 10.0}  # issue 13: % over plain pytest

PYPROJECT = """\
[tool.pytest.ini_options]
markers = ["gpu_proof: a GPU test the receipt covers"]

[tool.gpu_proof]
fingerprint_paths = ["tests"]
allowed_signers = ".gpu-proof/allowed_signers"
"""


# -- the throwaway repository and virtualenv ------------------------------------------------


def module_source(first: int, count: int) -> str:
    body = "".join(f"\n\n@pytest.mark.gpu_proof\ndef test_{i:05d}():\n    pass\n"
                   for i in range(first, first + count))
    return "import pytest\n" + body


def make_repo(work: Path, tests: int, per_file: int) -> Path:
    project = work / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    for number, first in enumerate(range(0, tests, per_file)):
        count = min(per_file, tests - first)
        (project / "tests" / f"test_m{number:04d}.py").write_text(module_source(first, count))
    return create_demo_repo(work / "repo", project=project, message="trivial GPU-marked tests")


def make_peer_venv(target: Path, version: str) -> Path | None:
    """The peer's interpreter, or None (and why, printed) when it cannot be installed."""
    import pytest

    python = target / "bin" / "python"
    steps = [[sys.executable, "-m", "venv", str(target)],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              f"{PEER}=={version}", f"pytest=={pytest.__version__}"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()[-3:]
            print(f"could not install {PEER}=={version} ({' '.join(step[:4])}...): "
                  + " / ".join(why) + "\nmeasuring gitproof alone")
            return None
    return python


# -- one kind of run ---------------------------------------------------------------------------


@dataclass
class Run:
    """One command line, and what a good run of it leaves behind."""

    name: str
    argv: list[str]
    receipt: str | None = None  # "note" (gitproof) or "json" (the peer); None: plain pytest
    baseline: str | None = None  # the run it is compared with
    peer: bool = False  # runs in the peer's virtualenv, never with $PYTHONPATH
    pythonpath: str | None = None  # where to import gitproof from, before the installed one
    receipts: int = 0  # counted after each run
    size: int | None = None  # bytes of the first receipt


@dataclass
class Bench:
    repo: Path
    tests: int
    peer_out: Path
    env: dict[str, str]
    last: tuple[Run, subprocess.CompletedProcess[str]] | None = None
    runs: list[Run] = field(default_factory=list)

    def run_env(self, run: Run) -> dict[str, str]:
        """The environment ``run`` gets: the peer never sees $PYTHONPATH; a --before run gets its own."""
        env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"} if run.peer else dict(self.env)
        if run.pythonpath:
            env["PYTHONPATH"] = run.pythonpath
        return env

    def execute(self, run: Run) -> None:
        done = subprocess.run(run.argv, cwd=self.repo, env=self.run_env(run), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
        self.last = (run, done)

    def settle(self) -> None:
        """Check the run that just ended, count its receipt, and clear the way for the next."""
        if self.last is not None:
            run, done = self.last
            self.last = None
            self._check(run, done)
        self._git("update-ref", "-d", NOTES_REF)
        self.peer_out.unlink(missing_ok=True)

    def _check(self, run: Run, done: subprocess.CompletedProcess[str]) -> None:
        output = done.stdout + done.stderr
        if done.returncode != 0 or f"{self.tests} passed" not in output:
            raise SystemExit(f"{run.name} failed (exit {done.returncode}):\n{output[-3000:]}")
        if run.receipt == "note":
            self._count(run, self._note())
        elif run.receipt == "json":
            self._count(run, self._peer_receipt())

    def _count(self, run: Run, found: tuple[int, int]) -> None:
        receipts, size = found
        if receipts != 1:
            raise SystemExit(f"{run.name}: {receipts} receipts after one run; one was expected")
        run.receipts += 1
        run.size = run.size or size

    def _note(self) -> tuple[int, int]:
        shown = subprocess.run(["git", "notes", "--ref=gpu-proof", "show", "HEAD"], cwd=self.repo,
                               capture_output=True, check=False)
        if shown.returncode != 0:
            return 0, 0
        text = shown.stdout.decode()
        if self._git("for-each-ref", "refs/gpu-proof/pending").strip():
            raise SystemExit("a pending receipt was recorded: the working tree differs from HEAD")
        return text.count(SIGNATURE_START), len(shown.stdout)

    def _peer_receipt(self) -> tuple[int, int]:
        if not self.peer_out.exists():
            return 0, 0
        data = json.loads(self.peer_out.read_text())
        if len(data["tests"]) != self.tests or not data.get("signature"):
            raise SystemExit(f"the peer's receipt lists {len(data['tests'])} tests, or is unsigned")
        return 1, self.peer_out.stat().st_size

    def _git(self, *argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=self.repo, capture_output=True, text=True,
                              check=False).stdout


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # git-gpu-proof
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


OURS, PEERS = "plain pytest, gitproof loaded", "plain pytest, peer loaded"


def gitproof_runs() -> list[Run]:
    pytest = [sys.executable, "-m", "pytest", *PYTEST_FLAGS]
    plugin = ["-p", "gitproof.plugin"]
    return [
        Run("plain pytest, no plugin (gitproof's env)", [*pytest, "tests"], baseline=OURS),
        Run(OURS, [*pytest, *plugin, "tests"]),
        Run("pytest --gpu-proof", [*pytest, *plugin, "--gpu-proof", "tests"], "note", OURS),
        Run("git gpu-proof run", ["git", "gpu-proof", "run", "--python", sys.executable, "--",
                                  *PYTEST_FLAGS, *plugin, "tests"], "note", OURS),
    ]


def before_runs(directory: str) -> list[Run]:
    """The two recording runs again, importing gitproof from ``directory`` (an older copy)."""
    runs = [run for run in gitproof_runs() if run.receipt]
    for run in runs:
        run.name, run.pythonpath = f"{run.name} (before: {directory})", directory
    return runs


def peer_runs(python: Path, repo: Path, out: Path) -> list[Run]:
    pytest = [str(python), "-m", "pytest", *PYTEST_FLAGS]
    plugin = ["-p", "pytest_gpu_proof.plugin"]
    options = ["--gpu-proof-enable", f"--gpu-proof-out={out}",
               f"--gpu-proof-key={repo / '.git' / 'demo-key' / 'id_ed25519'}", "--gpu-proof-github-user=demo"]
    return [
        Run("plain pytest, no plugin (peer's env)", [*pytest, "tests"], baseline=PEERS, peer=True),
        Run(PEERS, [*pytest, *plugin, "tests"], peer=True),
        Run("pytest --gpu-proof-enable (peer)", [*pytest, *plugin, *options, "tests"], "json", PEERS, peer=True),
    ]


# -- the report -------------------------------------------------------------------------------


def overhead(cases: dict[str, Case], run: Run) -> float | None:
    if run.baseline is None:
        return None
    return (cases[run.name].median / cases[run.baseline].median - 1) * 100


def row(bench: Bench, cases: dict[str, Case], run: Run) -> list[str]:
    case = cases[run.name]
    low, high = case.spread
    extra = overhead(cases, run)
    per_test = (case.median - cases[run.baseline].median) / bench.tests if run.baseline else None
    return [run.name, fmt_time(case.median), f"{fmt_time(low)} – {fmt_time(high)}",
            "" if extra is None else f"{extra:+.1f} %",
            "" if per_test is None else ("-" if per_test < 0 else "") + fmt_time(abs(per_test)),
            "" if run.size is None else f"{run.size:,} B", str(run.receipts) if run.receipt else ""]


def report(bench: Bench, cases: dict[str, Case]) -> None:
    print()
    print(table([row(bench, cases, run) for run in bench.runs],
                ["run", "median", "spread", "vs plugin loaded", "per test", "receipt", "receipts"]))
    print()
    for name, limit in TARGETS.items():
        figure = overhead(cases, next(r for r in bench.runs if r.name == name))
        verdict = "met" if figure is not None and figure <= limit else "NOT met"
        print(f"target {name}: at most +{limit:g} % -> {figure:+.1f} % ({verdict})")
    compare_with_peer(bench, cases)


def compare_with_peer(bench: Bench, cases: dict[str, Case]) -> None:
    by_name = {run.name: run for run in bench.runs}
    peer = by_name.get("pytest --gpu-proof-enable (peer)")
    if peer is None:
        return
    peer_extra = overhead(cases, peer) or 0.0
    for name in TARGETS:
        ours = by_name[name]
        extra = overhead(cases, ours) or 0.0
        wall = cases[name].median / cases[peer.name].median
        ratio = f"{extra / peer_extra:.2f}×" if peer_extra > 0 else "n/a (the peer adds nothing measurable)"
        print(f"{name} / peer: overhead {extra:+.1f} % vs {peer_extra:+.1f} % ({ratio}); "
              f"wall time {wall:.2f}×")
    ours = by_name["pytest --gpu-proof"]
    if ours.size and peer.size:
        print(f"receipt size: gitproof {ours.size:,} B, peer {peer.size:,} B ({ours.size / peer.size:.2f}×); "
              f"per test {ours.size / bench.tests:.0f} B vs {peer.size / bench.tests:.0f} B")


# -- main -------------------------------------------------------------------------------------


def run_all(work: Path, args: argparse.Namespace) -> None:
    print(f"building {args.tests:,} tests in {work} ...", flush=True)
    repo = make_repo(work, args.tests, args.per_file)
    peer_out = work / "peer-receipt.json"
    bench = Bench(repo, args.tests, peer_out, environment())
    bench.runs = gitproof_runs() + (before_runs(args.before) if args.before else [])
    if not args.no_peer:
        print(f"installing {PEER}=={args.peer_version} into a throwaway virtualenv ...", flush=True)
        python = Path(args.peer_venv) / "bin" / "python" if args.peer_venv else \
            make_peer_venv(work / "peer-venv", args.peer_version)
        if python is not None:
            bench.runs += peer_runs(python, repo, peer_out)
    cases = {run.name: Case(run.name, functools.partial(bench.execute, run), setup=bench.settle, number=1)
             for run in bench.runs}
    print("warm-up: one run of each (writes the tests' bytecode, checks each works) ...", flush=True)
    for run in bench.runs:
        bench.settle()
        bench.execute(run)
    bench.settle()
    for run in bench.runs:
        run.receipts = 0
    measure(list(cases.values()), args.repeat)
    bench.settle()
    report(bench, cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--per-file", type=int, default=50, help="tests per module")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--peer-version", default="0.4.1")
    parser.add_argument("--peer-venv", default=None, metavar="DIR",
                        help="an existing virtualenv with the peer installed (skips the install)")
    parser.add_argument("--no-peer", action="store_true", help="measure gitproof alone")
    parser.add_argument("--before", default=None, metavar="DIR",
                        help="also time the recording runs with the gitproof package found in DIR "
                             "(a copy of an older version), interleaved with the rest")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway directory")
    args = parser.parse_args()
    print_machine()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    work = Path(tempfile.mkdtemp(prefix="gitproof-bench-recording-"))
    try:
        run_all(work, args)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
