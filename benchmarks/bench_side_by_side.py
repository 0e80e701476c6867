"""Issue 13's table in one go: gitproof next to pytest-gpu-proof 0.4.1, plain git and plain pytest.

One script builds every setup, installs the peer (``pytest-gpu-proof==0.4.1`` from PyPI) into a
throwaway virtualenv, measures each gitproof case interleaved with what it is compared with (see
_common.py: every round runs each case once, the starting case rotating; figures are medians
over rounds), and prints one table: the figure, the issue's target, whether it is met, the
comparison measured in the same run, the ratio gitproof / comparison (wall time), the peak
resident memory of the gitproof process and of the comparison, and the receipts counted.

The setups come from the other scripts in this folder, imported, not copied:

* fetch: ``bench_notes.fetch_repos``: a bare remote with N receipts and a clone with N others;
  ``git-gpu-proof fetch origin`` then merges them (``--fetch-repeat`` fresh pairs per size).
  Objects written and receipts counted after each. The second size is compared with the
  first: the ratio is the growth t(2N)/t(N).
* ``NotesStore.add``: a notes ref of N receipts in git's fan-out layout
  (``bench_notes.notes_commit``); a worker process adds one more receipt, as a recording run
  does once, then 4 × ``--calls`` more times (the ref put back before each, untimed). The
  figure is the first add, median over ``--rounds`` workers per size (the sizes taking
  turns); the repeated adds are in the notes. The worker also counts the trees the first
  add wrote and the receipts after the adds. The larger size is compared with the smaller.
* recording: ``bench_recording`` (its repository of ``--tests`` trivial GPU-marked tests, its
  runs, its checks that every recording run leaves exactly one receipt): plain pytest with
  no plugin and with each tool's plugin loaded, ``pytest --gpu-proof``, ``git gpu-proof run``,
  and the peer's ``pytest --gpu-proof-enable``. The overhead is over plain pytest with the
  tool's own plugin loaded, as bench_recording reports it; the notes below the table also
  give it over pytest with no plugin at all.
* status / verify / show on a clean checkout of ``--files`` files (``--mb`` MB of random
  bytes under src/ and tests/, ``bench_fingerprint.generate``), plus a module of 50
  GPU-marked tests, a real ssh-keygen key in ``user.signingKey`` and
  ``.gpu-proof/allowed_signers``. Both tools record a receipt of those tests there first
  (gitproof a note, the peer its JSON file, git-ignored so the checkout stays clean).
  Compared with plain ``git status`` and with the peer's equivalent.
* whole-process and in-process verify of one ``--tests``-test receipt: the recording
  repository, after one more recording run of each tool (kept). In process means a worker
  interpreter that opens the repository and verifies HEAD ``--calls`` times after one
  warm-up call (gitproof: ``pygit2.Repository``, ``open_verifier``, ``verify(HEAD)``; the
  peer: ``verify_receipt``); the two workers take turns for ``--rounds`` rounds, and the
  figure is the median over rounds of each round's median.
* ``log -n N``: ``bench_verify_history.build``: N commits, a receipt signed by ssh-keygen on
  every 10th (the others change only docs/), against ``git log --notes=gpu-proof -n N``.
  Every verdict is counted once with ``--json``.
* pre-push hook, tip mode: ``bench_hook.Bench`` (a clone with the hooks installed, a bare
  remote reset before every push, a branch of ``--hook-commits`` commits each changing
  src/, a receipt on its tip): ``git push`` against ``git push --no-verify``; the figure is
  the hook's cost, the difference.
* pre-push hook, ``push_check = "every"``: ``bench_verify_history.build`` with a receipt on
  every one of ``--hook-commits`` commits (each changes src/), pushed as a new branch to a
  bare remote: ``git-gpu-proof hook pre-push --mode every`` against the same hook in tip
  mode, both fed git's stdin lines for the branch and the notes ref (so both only check).
  Issue 13's target (at most 300 ms over 1,000 commits) is read as the cost ``every`` adds
  to a push over tip mode (the issue measured 0.9 ms a commit); the whole hook process is
  in the notes below the table.

Peak RSS: a process this script starts would carry this script's own peak in its
``ru_maxrss`` (on exec, Linux keeps the high-water mark of the memory being replaced; with
vfork, that is the parent's). So the runs whose RSS is reported go through a small launcher
(``python -I -S``, about 9 MiB) that starts the command with ``posix_spawn`` and reaps it
with ``os.wait4``: its ``ru_maxrss`` is the largest resident set of the command and of every
descendant it waited for (``git gpu-proof status`` is git plus the Python process it starts,
so the figure is the Python one's). A command that needs less than the launcher itself
shows as "≤ N MiB". Timed runs start directly, without the launcher; each whole-process case
runs through it once before its timed rounds (the warm-up, checked like every run) and once
after, and the larger peak is shown. Recording runs: the warm-up run, and for the two
recorders also the run kept for the verify section. Fetches run through the launcher only,
and their time is the launcher's measure of the command alone. In-process cases: the worker's
own ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the worker started by the launcher):
interpreter, imports and the case. Children run with ``PYTHONDONTWRITEBYTECODE`` removed, so
byte-code caches exist as in a normal installation (the warm-up runs write them).

What the peer offers, read from its 0.4.1 wheel: a pytest plugin (``--gpu-proof-enable``
writes one signed JSON receipt file) and a ``gpu-proof`` command with ``verify``, ``merge``,
``plan``, ``status`` and ``durations``. Its ``verify --receipt FILE --repo .`` is the only
command that tells whether the checkout is covered: it recomputes the fingerprint by
hashing every tracked file under the fingerprint paths, and fetches the signer's keys from
``https://github.com/USER.keys``. It is the comparison for both ``status`` and ``verify``;
its own ``gpu-proof status FILE`` only summarises receipt files (no tree, no signature) and
is shown as a second comparison for ``status``. Nothing here reaches the network: the peer
runs with its key fetch replaced by reading the same public key from a local file (its
``fetch_github_public_keys``, patched in the process), so the peer is timed without a
network round trip. The peer has no equivalent, so its column says "—", for: fetch (its
receipt is a file committed with the code; git moves it, there is nothing to merge), notes
(no notes), ``log`` (no per-commit history view) and the pre-push hook (none).

Every receipt is counted ("No receipt is lost in any benchmark"): after each fetch (local +
remote), after each add, one per recording run, the notes on HEAD and the peer's JSON
tests, every verdict of the log, the receipts on the remote after a hooked push, and the
receipts the ``every`` push checks. A count that is off stops the script.

Run (the full run takes about 10-20 minutes on 2 busy cores):

    .venv/bin/python benchmarks/bench_side_by_side.py
    .venv/bin/python benchmarks/bench_side_by_side.py --quick                 # small sizes, 1-3 minutes
    .venv/bin/python benchmarks/bench_side_by_side.py --quick --peer-venv /tmp/peer --only recording

Options: ``--quick`` (small sizes and few rounds; any size given explicitly still counts),
``--only SECTION ...`` (fetch, add, recording, checkout, verify, log, hook), sizes
(``--fetch``, ``--add``, ``--tests``, ``--files``, ``--mb``, ``--log-commits``,
``--hook-commits``), rounds (``--repeat`` for whole-process cases, ``--recording-repeat``,
``--rounds`` and ``--calls`` for worker cases, ``--fetch-repeat``), ``--peer-venv DIR`` (use,
or create and keep, the peer's virtualenv there), ``--no-peer``, ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pygit2

import bench_fingerprint
import bench_hook
import bench_notes
import bench_recording
import bench_verify_history
from _common import Case, fmt_time, measure, print_machine, table

from gitproof.fingerprint import commit_trees
from gitproof.notes import NOTES_REF, NotesStore

HERE = Path(__file__).resolve().parent
PEER_VERSION = "0.4.1"
DASH = "—"
ZERO = "0" * 40
SIGNATURE_START = bench_recording.SIGNATURE_START
PRINCIPAL = "alice@example.com"
GPU_TESTS = 50  # tests in the module both tools record on the big checkout
SECTIONS = ("fetch", "add", "recording", "checkout", "verify", "log", "hook")

FULL = {"fetch": [10_000, 20_000], "add": [1000, 10_000], "tests": 5000, "files": 20_000, "mb": 200.0,
        "log_commits": 10_000, "hook_commits": 1000, "repeat": 15, "recording_repeat": 5, "rounds": 9,
        "calls": 5, "fetch_repeat": 3}
QUICK = {"fetch": [1000, 2000], "add": [1000, 5000], "tests": 500, "files": 2000, "mb": 20.0,
         "log_commits": 1000, "hook_commits": 100, "repeat": 3, "recording_repeat": 2, "rounds": 3,
         "calls": 3, "fetch_repeat": 1}

# The peer verifies signatures against https://github.com/USER.keys; here the same public key
# is read from the file named by $BENCH_PEER_KEYS instead, so nothing reaches the network.
PEER_OFFLINE = """\
import os
import pytest_gpu_proof.signers.ed25519 as _signers

def _local_keys(username):
    with open(os.environ["BENCH_PEER_KEYS"]) as fh:
        keys = [_signers._parse_pubkey_line(line) for line in fh.read().splitlines() if line.strip()]
    return [key for key in keys if key is not None]

_signers.fetch_github_public_keys = _local_keys
"""
PEER_CLI = PEER_OFFLINE + "from pytest_gpu_proof.cli import main\nmain()\n"

# Worker processes: one case each, timed inside, their own peak RSS reported.
WORKER_HEAD = """\
import json, resource, statistics, sys, time
ARGS = json.loads(sys.argv[1])

def timed(fn, calls):
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times

def finish(**extra):
    print(json.dumps({"maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **extra}))
"""
ADD_WORKER = WORKER_HEAD + """\
sys.path.insert(0, ARGS["bench_dir"])
import pygit2
from bench_notes import _id, count, signed_receipt
from gitproof.notes import NOTES_REF, NotesStore

repo = pygit2.Repository(ARGS["repo"])
base = repo.references[NOTES_REF].target
store = NotesStore(repo)
receipt = signed_receipt(-1)

def trees_written(old, new):
    if old is not None and old.id == new.id:
        return 0
    before = {entry.name: entry for entry in old} if old is not None else {}
    written = 1
    for entry in new:
        if entry.type_str == "tree":
            prev = before.get(entry.name)
            prev_tree = repo[prev.id] if prev is not None and prev.type_str == "tree" else None
            written += trees_written(prev_tree, repo[entry.id])
    return written

def add():
    repo.references[NOTES_REF].set_target(base)
    start = time.perf_counter()
    store.add(_id(-1, "new"), receipt)
    return time.perf_counter() - start

first = add()  # the add a recording run makes: once, in a fresh process
trees = trees_written(repo[base].peel(pygit2.Commit).tree, repo.references[NOTES_REF].peel(pygit2.Commit).tree)
times = [add() for _ in range(ARGS["calls"])]
finish(first=first, times=times, trees=trees, counted=count(repo))
"""
GITPROOF_VERIFY_WORKER = WORKER_HEAD + """\
import pygit2
from gitproof.verify import open_verifier
states = []

def verify():
    repo = pygit2.Repository(ARGS["repo"])
    states.append(str(open_verifier(repo).verify(repo.head.peel()).state))

times = timed(verify, ARGS["calls"])
finish(times=times, ok=all(state == "validated" for state in states), verdicts=len(states))
"""
PEER_VERIFY_WORKER = WORKER_HEAD + PEER_OFFLINE + """\
import contextlib, io
from pytest_gpu_proof.verify import verify_receipt
results = []

def verify():
    with contextlib.redirect_stdout(io.StringIO()):
        results.append(verify_receipt(ARGS["receipt"], repo_root=ARGS["repo"]))

times = timed(verify, ARGS["calls"])
finish(times=times, ok=all(results), verdicts=len(results))
"""


# -- processes, and their peak RSS ----------------------------------------------------------------


# A process started by this one inherits its peak RSS: on exec, Linux records the high-water
# mark of the memory the process had before (with vfork, this script's own) in the new
# program's ru_maxrss. So processes whose RSS is reported are started by this small launcher
# (Python with -I -S, about 9 MiB), which reaps the command with os.wait4 and writes its
# ru_maxrss (the command and every descendant it waited for) and wall time to a file.
LAUNCHER = """\
import os, sys, time
report, cwd, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
os.chdir(cwd)
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as fh:
    fh.write(f"{usage.ru_maxrss} {wall!r}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


@dataclass
class Proc:
    returncode: int
    stdout: str
    stderr: str
    wall: float
    maxrss: int | None  # KiB, through the launcher: the largest resident set in the process tree


def spawn(argv: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None, rss: bool = False) -> Proc:
    """Run ``argv`` to the end; with ``rss``, through the launcher, for its peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp, \
            tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        if stdin is not None:
            inp.write(stdin.encode())
            inp.seek(0)
        command = [sys.executable, "-I", "-S", "-c", LAUNCHER, report.name, str(cwd), *argv] if rss else argv
        start = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=err, check=False,
                              stdin=inp if stdin is not None else subprocess.DEVNULL)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        maxrss = None
        if rss:
            reported = report.read().split()
            if len(reported) != 2:
                raise SystemExit(f"the launcher could not run {argv[0]} (exit {done.returncode}): {err.read()!r}")
            maxrss, wall = int(reported[0]), float(reported[1])
        return Proc(done.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                    wall, maxrss)


class Cmd:
    """One command line: timed runs (started directly) and RSS runs (through the launcher), all checked."""

    def __init__(self, name: str, argv: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None,
                 expect: Callable[[Proc], str | None] | None = None) -> None:
        self.name, self.argv, self.cwd, self.env, self.stdin = name, argv, cwd, env, stdin
        self.expect = expect or (lambda proc: None if proc.returncode == 0 else "failed")
        self.peaks: list[int] = []
        self.timed: Case | None = None

    def __call__(self, rss: bool = False) -> Proc:
        proc = spawn(self.argv, self.cwd, self.env, self.stdin, rss)
        problem = self.expect(proc)
        if problem:
            raise SystemExit(f"{self.name}: {problem} (exit {proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr)[-3000:]}")
        if proc.maxrss is not None:
            self.peaks.append(proc.maxrss)
        return proc

    def profile(self, setup: Callable[[], object] | None = None) -> Proc:
        """An untimed run through the launcher: checked, its peak RSS kept (also the warm-up)."""
        if setup is not None:
            setup()
        return self(rss=True)

    def case(self, setup: Callable[[], object] | None = None) -> Case:
        self.timed = Case(self.name, self, setup=setup, number=1)
        return self.timed

    @property
    def median(self) -> float:
        assert self.timed is not None, "not measured"
        return self.timed.median

    @property
    def peak(self) -> int:
        return max(self.peaks)


def measure_cmds(cmds: list[Cmd], repeat: int, setup: Callable[[], object] | None = None) -> None:
    """A profiled run of each (warm-up, check, RSS), the timed rounds, and one more profiled run."""
    for cmd in cmds:
        cmd.profile(setup)
    measure([cmd.case(setup) for cmd in cmds], repeat, progress=False)
    for cmd in cmds:
        cmd.profile(setup)


def worker(python: Path | str, source: str, args: dict, cwd: Path, env: dict[str, str]) -> dict:
    """Run a worker through the launcher (so its own ru_maxrss starts from the launcher's) for its JSON."""
    proc = spawn([str(python), "-c", source, json.dumps(args)], cwd, env, rss=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the table --------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    ours: str
    target: str = DASH
    met: str = ""
    versus: str = DASH
    theirs: str = DASH
    ratio: str = DASH
    rss: str = DASH
    rss_theirs: str = DASH
    receipts: str = ""

    def cells(self) -> list[str]:
        return [self.what, self.ours, self.target, self.met, self.versus, self.theirs, self.ratio, self.rss,
                self.rss_theirs, self.receipts]


HEADER = ["what", "gitproof", "target", "met", "compared with", "comparison", "ratio", "RSS gitproof",
          "RSS comparison", "receipts"]


FLOOR: list[int] = []  # KiB: the launcher's own peak RSS, measured once (what a tiny command reads as)


def mib(kib: int | None) -> str:
    if kib is None:
        return DASH
    if FLOOR and kib <= FLOOR[0] + 512:
        return f"≤ {FLOOR[0] / 1024:,.0f} MiB"
    return f"{kib / 1024:,.0f} MiB"


def times(a: float, b: float) -> str:
    return f"{a / b:.2f}×"


def verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def of(counted: int, expected: int) -> str:
    if counted != expected:
        raise SystemExit(f"receipts lost: {counted} counted, {expected} expected")
    return f"{counted:,} of {expected:,}"


@dataclass
class Ctx:
    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    peer: Path | None = None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recorded: dict[str, Path] = field(default_factory=dict)  # what the verify section reuses

    def say(self, text: str) -> None:
        print(text, flush=True)


def child_env() -> dict[str, str]:
    env = bench_recording.environment()  # the venv's bin first on PATH, no VIRTUAL_ENV, no plugin autoload
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("GITPROOF_SYNC", None)
    return env


def peer_env(ctx: Ctx, keys: Path) -> dict[str, str]:
    env = {k: v for k, v in ctx.env.items() if k != "PYTHONPATH"}
    env["BENCH_PEER_KEYS"] = str(keys)
    return env


# -- fetch, NotesStore.add --------------------------------------------------------------------------


def section_fetch(ctx: Ctx) -> None:
    sizes, repeat = ctx.args.fetch, ctx.args.fetch_repeat
    results: dict[int, tuple[float, float, int, int]] = {}
    for size in sizes:
        walls, grown, peaks, counts = [], [], [], []
        for attempt in range(repeat):
            base = ctx.work / f"fetch-{size}-{attempt}"
            base.mkdir()
            local = bench_notes.fetch_repos(base, size)
            objects = local / ".git" / "objects"
            before = bench_notes._store_bytes(objects)
            proc = spawn(["git-gpu-proof", "fetch", "origin"], local, ctx.env, rss=True)
            if proc.returncode != 0:
                raise SystemExit(f"fetch failed: {proc.stderr}")
            walls.append(proc.wall)
            grown.append(bench_notes._store_bytes(objects) - before)
            peaks.append(proc.maxrss)
            counts.append(bench_notes.count(pygit2.Repository(str(local))))
            shutil.rmtree(base)
        for counted in counts:
            of(counted, 2 * size)
        results[size] = (statistics.median(walls), statistics.median(grown), max(peaks), len(counts))
        ctx.say(f"  fetch {size:,} + {size:,}: {fmt_time(results[size][0])} ({repeat} run(s))")
    first = sizes[0]
    for size in sizes:
        wall, grown, peak, runs = results[size]
        row = Row(f"fetch {size:,} + {size:,} receipts", f"{fmt_time(wall)}, {grown / 1e6:.1f} MB written",
                  rss=mib(peak), receipts=f"{2 * size:,} of {2 * size:,}, {runs} run(s)")
        if size == 10_000:
            row.target, row.met = "≤ 5 s, ≤ 50 MB", verdict(wall <= 5 and grown <= 50e6)
        if size != first:
            row.versus, row.theirs = f"fetch {first:,} + {first:,}", fmt_time(results[first][0])
            row.ratio = times(wall, results[first][0])
            row.target = f"linear: ≈ {size / first:g}×"
        ctx.rows.append(row)


def section_add(ctx: Ctx) -> None:
    sizes, data = ctx.args.add, bench_notes.signed_receipt(0).text.encode()
    for size in sizes:
        repo = pygit2.init_repository(str(ctx.work / f"add-{size}"))
        tip = bench_notes.notes_commit(repo, None, {bench_notes._id(i, "commit"): data for i in range(size)})
        repo.references.create(NOTES_REF, tip, force=True)
    found: dict[int, list[dict]] = {size: [] for size in sizes}
    for round_no in range(ctx.args.rounds):
        shift = round_no % len(sizes)
        for size in sizes[shift:] + sizes[:shift]:
            found[size].append(worker(sys.executable, ADD_WORKER,
                                      {"repo": str(ctx.work / f"add-{size}"), "calls": ctx.args.calls * 4,
                                       "bench_dir": str(HERE)}, ctx.work, ctx.env))
    medians = {size: statistics.median(r["first"] for r in runs) for size, runs in found.items()}
    warm = {size: statistics.median(statistics.median(r["times"]) for r in runs) for size, runs in found.items()}
    for size in sizes:
        runs = found[size]
        trees = max(r["trees"] for r in runs)
        limit = 1 + math.ceil(math.log(size + 1, 256))
        counted = [r["counted"] for r in runs]
        for value in counted:
            of(value, size + 1)
        row = Row(f"NotesStore.add at {size:,} notes", f"{fmt_time(medians[size])}, {trees} trees written",
                  f"O(log n) trees: ≤ {limit}", verdict(trees <= limit), rss=mib(max(r["maxrss"] for r in runs)),
                  receipts=f"{size + 1:,} of {size + 1:,} ×{len(runs)}")
        if size != sizes[0]:
            row.versus, row.theirs = f"add at {sizes[0]:,} notes", fmt_time(medians[sizes[0]])
            row.ratio = times(medians[size], medians[sizes[0]])
        ctx.rows.append(row)
    ctx.notes.append("NotesStore.add: the figure is the first add in a fresh worker process (one a recording "
                     f"run), median of {ctx.args.rounds}; repeated adds in the same process: " +
                     ", ".join(f"{fmt_time(m)} at {s:,}" for s, m in warm.items()))


# -- recording -------------------------------------------------------------------------------------


@dataclass
class RssBench(bench_recording.Bench):
    """bench_recording's runs, timed as there; the untimed ones through the launcher, for their peak RSS."""

    peaks: dict[str, list[int]] = field(default_factory=dict)

    def profile(self, run: bench_recording.Run) -> None:
        proc = spawn(run.argv, self.repo, self.run_env(run), rss=True)
        assert proc.maxrss is not None
        self.peaks.setdefault(run.name, []).append(proc.maxrss)
        self.last = (run, subprocess.CompletedProcess(run.argv, proc.returncode, proc.stdout, proc.stderr))

    def keep(self, runs: list[bench_recording.Run]) -> None:
        """One more run of each, whose receipts stay (the verify section reads them)."""
        self.settle()
        for run in runs:
            self.profile(run)
            assert self.last is not None
            self._check(*self.last)  # exactly one new receipt, or it stops
            self.last = None


def section_recording(ctx: Ctx) -> None:
    args = ctx.args
    work = ctx.work / "recording"
    work.mkdir()
    ctx.say(f"  {args.tests:,} trivial tests ...")
    repo = bench_recording.make_repo(work, args.tests, 50)
    bench = RssBench(repo, args.tests, work / "peer-receipt.json", ctx.env)
    bench.runs = bench_recording.gitproof_runs()
    if ctx.peer is not None:
        bench.runs += bench_recording.peer_runs(ctx.peer, repo, bench.peer_out)
    cases = {run.name: Case(run.name, lambda run=run: bench.execute(run), setup=bench.settle, number=1)
             for run in bench.runs}
    ctx.say("  warm-up: one run of each, through the launcher for its peak RSS ...")
    for run in bench.runs:
        bench.settle()
        bench.profile(run)
    bench.settle()
    for run in bench.runs:
        run.receipts = 0
    ctx.say(f"  {len(cases)} runs x {args.recording_repeat} rounds ...")
    measure(list(cases.values()), args.recording_repeat, progress=False)
    bench.settle()
    counted = {run.name: run.receipts for run in bench.runs}  # one a timed run, each checked
    by_name = {run.name: run for run in bench.runs}
    ours = by_name["pytest --gpu-proof"]
    peer = by_name.get("pytest --gpu-proof-enable (peer)")
    bench.keep([ours] + ([peer] if peer is not None else []))  # for the verify section; a second RSS sample
    ctx.recorded["repo"] = repo
    if peer is not None:
        ctx.recorded["peer_receipt"] = bench.peer_out
    ctx.recorded["keys"] = repo / ".git" / "demo-key" / "id_ed25519.pub"

    median = {name: case.median for name, case in cases.items()}
    peak = {name: max(values) for name, values in bench.peaks.items()}
    peer_extra = bench_recording.overhead(cases, peer) if peer else None
    for name, target in bench_recording.TARGETS.items():
        run = by_name[name]
        extra = bench_recording.overhead(cases, run) or 0.0
        base = run.baseline or ""
        label = f"`{name}`, {args.tests:,} trivial tests"
        receipts = f"{counted[name]} of {args.recording_repeat} (one a run)"
        ctx.rows.append(Row(label, f"{fmt_time(median[name])} ({extra:+.1f} %)", f"≤ +{target:g} %",
                            verdict(extra <= target), base, fmt_time(median[base]),
                            times(median[name], median[base]), mib(peak[name]), mib(peak[base]), receipts))
        if peer is not None and peer_extra is not None:
            ctx.rows.append(Row("  the same, vs the peer", f"{extra:+.1f} % over its baseline",
                                "≤ the peer's overhead", verdict(extra <= peer_extra),
                                "pytest --gpu-proof-enable (peer)",
                                f"{fmt_time(median[peer.name])} ({peer_extra:+.1f} %)",
                                times(median[name], median[peer.name]), mib(peak[name]), mib(peak[peer.name]),
                                f"peer: {counted[peer.name]} of {args.recording_repeat}"))
    plain = {run.name: run for run in bench.runs if run.baseline and not run.receipt}
    for plain_name, plain_run in plain.items():
        loaded = plain_run.baseline or ""
        recorders = [r for r in bench.runs if r.receipt and r.baseline == loaded]
        over = ", ".join(f"{r.name} {(median[r.name] / median[plain_name] - 1) * 100:+.1f} %" for r in recorders)
        ctx.notes.append(f"recording, over pytest with no plugin at all ({plain_name}, "
                         f"{fmt_time(median[plain_name])}): {over}; loading the plugin alone "
                         f"{(median[loaded] / median[plain_name] - 1) * 100:+.1f} %")
    if peer is not None and ours.size and peer.size:
        ctx.notes.append(f"receipt size, {args.tests:,} tests: gitproof {ours.size:,} B, peer {peer.size:,} B "
                         f"({ours.size / peer.size:.2f}×)")


# -- status, verify, show on a big checkout ---------------------------------------------------------


CHECKOUT_PYPROJECT = """\
[project]
name = "bench"
version = "0"

[tool.pytest.ini_options]
markers = ["gpu_proof: a GPU test the receipt covers"]

[tool.gpu_proof]
fingerprint_paths = ["src", "tests"]
allowed_signers = ".gpu-proof/allowed_signers"
"""


def git(root: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True, check=True).stdout


def notes_on(root: Path, rev: str = "HEAD") -> int:
    shown = subprocess.run(["git", "notes", "--ref=gpu-proof", "show", rev], cwd=root, capture_output=True,
                           text=True, check=False)
    return shown.stdout.count(SIGNATURE_START) if shown.returncode == 0 else 0


def peer_tests(receipt: Path) -> int:
    data = json.loads(receipt.read_text())
    return len(data["tests"]) if data.get("signature") else 0


def build_checkout(ctx: Ctx, root: Path) -> tuple[Path, Path]:
    """The big clean checkout with a receipt of each tool on HEAD; (peer receipt, public key)."""
    args = ctx.args
    started = time.perf_counter()
    info = bench_fingerprint.generate(root, args.files, args.mb)
    key = root / ".git" / "bench-key" / "id_ed25519"
    key.parent.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(key)], check=True,
                   capture_output=True)
    public = key.with_suffix(".pub").read_text().split()
    (root / ".gpu-proof").mkdir()
    (root / ".gpu-proof" / "allowed_signers").write_text(f"{PRINCIPAL} {public[0]} {public[1]}\n")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\ngpu-proof.json\n")
    (root / "pyproject.toml").write_text(CHECKOUT_PYPROJECT)
    (root / "tests" / "test_gpu.py").write_text(bench_recording.module_source(0, GPU_TESTS))
    git(root, "config", "user.email", PRINCIPAL)
    git(root, "config", "user.signingKey", str(key))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "GPU tests")
    time.sleep(1.1)  # past the files' mtimes, then a settled index (see bench_fingerprint)
    git(root, "status", "--porcelain")
    flags = [*bench_recording.PYTEST_FLAGS]
    ours = spawn([sys.executable, "-m", "pytest", *flags, "-p", "gitproof.plugin", "--gpu-proof",
                  "tests/test_gpu.py"], root, ctx.env)
    if ours.returncode != 0 or notes_on(root) != 1:
        raise SystemExit(f"gitproof could not record on the checkout:\n{(ours.stdout + ours.stderr)[-3000:]}")
    receipt = root / "gpu-proof.json"
    if ctx.peer is not None:
        theirs = spawn([str(ctx.peer), "-m", "pytest", *flags, "-p", "pytest_gpu_proof.plugin",
                        "--gpu-proof-enable", f"--gpu-proof-out={receipt}", f"--gpu-proof-key={key}",
                        "--gpu-proof-github-user=demo", "tests/test_gpu.py"],
                       root, peer_env(ctx, key.with_suffix(".pub")))
        if theirs.returncode != 0 or peer_tests(receipt) != GPU_TESTS:
            raise SystemExit(f"the peer could not record on the checkout:\n{(theirs.stdout + theirs.stderr)[-3000:]}")
    git(root, "status", "--porcelain")
    ctx.say(f"  {info['files']:,} files, {info['bytes'] / 1e6:,.0f} MB, both receipts recorded, "
            f"in {time.perf_counter() - started:.0f} s")
    return receipt, key.with_suffix(".pub")


def section_checkout(ctx: Ctx) -> None:
    args = ctx.args
    root = ctx.work / "checkout"
    receipt, keys = build_checkout(ctx, root)
    env = ctx.env
    clean = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    if clean.strip():
        raise SystemExit(f"the checkout is not clean:\n{clean[:2000]}")
    head_ok = status_validated(root, env)
    cmds = {
        "git status": Cmd("git status", ["git", "status"], root, env),
        "status": Cmd("git gpu-proof status", ["git", "gpu-proof", "status"], root, env),
        "verify": Cmd("git gpu-proof verify", ["git", "gpu-proof", "verify"], root, env),
        "show": Cmd("git gpu-proof show HEAD", ["git", "gpu-proof", "show", "HEAD"], root, env),
    }
    if ctx.peer is not None:
        penv = peer_env(ctx, keys)
        cmds["peer verify"] = Cmd("gpu-proof verify (peer)", [str(ctx.peer), "-c", PEER_CLI, "verify", "--receipt",
                                                             str(receipt), "--repo", "."], root, penv,
                                  expect=peer_verified)
        cmds["peer status"] = Cmd("gpu-proof status FILE (peer)", [str(ctx.peer.parent / "gpu-proof"), "status",
                                                                  str(receipt)], root, penv)
    ctx.say(f"  {len(cmds)} commands x {args.repeat} rounds ...")
    measure_cmds(list(cmds.values()), args.repeat)
    med = {key: cmd.median for key, cmd in cmds.items()}
    git_status = cmds["git status"]
    size = f"{args.files:,}-file checkout"
    counted = f"{notes_on(root)} on HEAD" + (f"; peer: {peer_tests(receipt)} tests" if ctx.peer else "")
    for key, label in (("status", "status"), ("verify", "verify of HEAD"), ("show", "show HEAD")):
        cmd = cmds[key]
        ratio = med[key] / med["git status"]
        ctx.rows.append(Row(f"whole-process {label}, {size}", fmt_time(med[key]), "≤ 3× git status",
                            verdict(ratio <= 3), "git status", fmt_time(med["git status"]),
                            times(med[key], med["git status"]), mib(cmd.peak), mib(git_status.peak),
                            counted if key != "show" else ""))
        if ctx.peer is not None and key in ("status", "verify"):
            peer = cmds["peer verify"]
            ctx.rows.append(Row("  the same, vs the peer", fmt_time(med[key]), versus="gpu-proof verify (peer)",
                                theirs=fmt_time(med["peer verify"]), ratio=times(med[key], med["peer verify"]),
                                rss=mib(cmd.peak), rss_theirs=mib(peer.peak)))
        if ctx.peer is not None and key == "status":
            peer = cmds["peer status"]
            ctx.rows.append(Row("  the same, vs the peer's status", fmt_time(med[key]),
                                versus="gpu-proof status FILE (peer; no tree check)",
                                theirs=fmt_time(med["peer status"]), ratio=times(med[key], med["peer status"]),
                                rss=mib(cmd.peak), rss_theirs=mib(peer.peak)))
    ctx.notes.append(f"checkout: HEAD validated per `status --json`: {head_ok}; the peer's verify hashed "
                     f"{args.mb:g} MB of tracked files under src/ and tests/ each run")


def status_validated(root: Path, env: dict[str, str]) -> bool:
    proc = spawn(["git", "gpu-proof", "status", "--json"], root, env)
    data = json.loads(proc.stdout)
    if data["head"]["state"] != "validated" or not data["worktree_matches_head"]:
        raise SystemExit(f"status: HEAD is {data['head']['state']}, worktree matches: {data['worktree_matches_head']}")
    return True


def peer_verified(proc: Proc) -> str | None:
    return None if proc.returncode == 0 and "Receipt verified successfully" in proc.stdout else "not verified"


# -- verify of one big receipt: whole process, and in process ------------------------------------


def recorded_repo(ctx: Ctx) -> None:
    """The recording repository with one kept receipt of each tool, when the recording section did not run."""
    if "repo" in ctx.recorded:
        return
    work = ctx.work / "recording"
    work.mkdir()
    repo = bench_recording.make_repo(work, ctx.args.tests, 50)
    bench = RssBench(repo, ctx.args.tests, work / "peer-receipt.json", ctx.env)
    runs = [run for run in bench_recording.gitproof_runs() if run.name == "pytest --gpu-proof"]
    if ctx.peer is not None:
        runs += [run for run in bench_recording.peer_runs(ctx.peer, repo, bench.peer_out) if run.receipt]
        ctx.recorded["peer_receipt"] = bench.peer_out
    bench.keep(runs)
    ctx.recorded["repo"] = repo
    ctx.recorded["keys"] = repo / ".git" / "demo-key" / "id_ed25519.pub"


def section_verify(ctx: Ctx) -> None:
    args = ctx.args
    recorded_repo(ctx)
    repo, keys = ctx.recorded["repo"], ctx.recorded["keys"]
    receipt = ctx.recorded.get("peer_receipt")
    tests = f"one {args.tests:,}-test receipt"
    notes = notes_on(repo)
    counted = f"{of(notes, 1)} on HEAD" + (f"; peer: {peer_tests(receipt):,} tests" if receipt else "")
    ours = Cmd("git gpu-proof verify", ["git", "gpu-proof", "verify"], repo, ctx.env)
    cmds = [ours]
    if receipt is not None:
        theirs = Cmd("gpu-proof verify (peer)", [str(ctx.peer), "-c", PEER_CLI, "verify", "--receipt", str(receipt),
                                                 "--repo", "."], repo, peer_env(ctx, keys), expect=peer_verified)
        cmds.append(theirs)
    ctx.say(f"  whole process: {len(cmds)} commands x {args.repeat} rounds ...")
    measure_cmds(cmds, args.repeat)
    row = Row(f"whole-process verify of HEAD, {tests}", fmt_time(ours.median), rss=mib(ours.peak), receipts=counted)
    if receipt is not None:
        row.versus, row.theirs, row.ratio = theirs.name, fmt_time(theirs.median), times(ours.median, theirs.median)
        row.rss_theirs = mib(theirs.peak)
    ctx.rows.append(row)

    ctx.say(f"  in process: {args.rounds} rounds of {args.calls} calls per worker, the workers taking turns ...")
    found: dict[str, list[dict]] = {"gitproof": [], "peer": []}
    for round_no in range(args.rounds):
        order = ["gitproof", "peer"][:: 1 if round_no % 2 == 0 else -1]
        for who in order:
            if who == "gitproof":
                result = worker(sys.executable, GITPROOF_VERIFY_WORKER, {"repo": str(repo), "calls": args.calls},
                                repo, ctx.env)
            elif receipt is not None:
                result = worker(ctx.peer, PEER_VERIFY_WORKER, {"repo": str(repo), "receipt": str(receipt),
                                                               "calls": args.calls}, repo, peer_env(ctx, keys))
            else:
                continue
            if not result["ok"] or result["verdicts"] != args.calls + 1:
                raise SystemExit(f"in-process verify ({who}) did not validate every time: {result}")
            found[who].append(result)
    med = {who: statistics.median(statistics.median(r["times"]) for r in runs) for who, runs in found.items() if runs}
    peak = {who: max(r["maxrss"] for r in runs) for who, runs in found.items() if runs}
    at_5000 = args.tests == 5000
    row = Row(f"in-process verify of {tests}", fmt_time(med["gitproof"]),
              "≤ 20 ms" if at_5000 else "(≤ 20 ms at 5,000 tests)",
              verdict(med["gitproof"] <= 0.020) if at_5000 else "", rss=mib(peak["gitproof"]),
              receipts=f"{sum(r['verdicts'] for r in found['gitproof']):,} verdicts, all validated")
    if "peer" in med:
        row.versus, row.theirs = "verify_receipt (peer, in process)", fmt_time(med["peer"])
        row.ratio, row.rss_theirs = times(med["gitproof"], med["peer"]), mib(peak["peer"])
    ctx.rows.append(row)


# -- log ---------------------------------------------------------------------------------------------


def section_log(ctx: Ctx) -> None:
    args, count = ctx.args, ctx.args.log_commits
    root = ctx.work / "log"
    ctx.say(f"  building {count:,} commits, a receipt on every 10th ...")
    info = bench_verify_history.build(root, count, 10, 50, 200)
    receipts = int(info["receipts"])
    ctx.say(f"  built in {info['objects_s'] + info['receipts_s']:.0f} s")
    listed = spawn(["git", "gpu-proof", "log", "-n", str(count), "--json"], root, ctx.env)
    states: dict[str, int] = {}
    for commit in json.loads(listed.stdout)["commits"]:
        states[commit["state"]] = states.get(commit["state"], 0) + 1
    of(states.get("validated", 0), receipts)
    of(sum(states.values()), count)
    of(bench_notes.count(pygit2.Repository(str(root))), receipts)
    ours = Cmd(f"git gpu-proof log -n {count}", ["git", "gpu-proof", "log", "-n", str(count)], root, ctx.env)
    plain = Cmd(f"git log --notes=gpu-proof -n {count}", ["git", "log", "--notes=gpu-proof", "-n", str(count)],
                root, ctx.env)
    measure_cmds([ours, plain], args.repeat)
    at_10k = count == 10_000
    ctx.rows.append(Row(f"`log -n {count:,}`", fmt_time(ours.median), "≤ 0.4 s" if at_10k else "(≤ 0.4 s at 10,000)",
                        verdict(ours.median <= 0.4) if at_10k else "", plain.name, fmt_time(plain.median),
                        times(ours.median, plain.median), mib(ours.peak), mib(plain.peak),
                        f"{receipts:,} receipts: " +
                        ", ".join(f"{n:,} {state}" for state, n in sorted(states.items()))))


# -- the pre-push hook ------------------------------------------------------------------------------


def hook_sent(proc: Proc) -> str | None:
    return None if proc.returncode == 0 and "receipts sent to origin" in proc.stderr else "the hook sent no receipts"


def hook_checked(proc: Proc) -> str | None:
    good = proc.returncode == 0 and "1 ref(s) with GPU changes validated" in proc.stderr
    return None if good and "receipts sent" not in proc.stderr else "the hook did not validate the push"


def section_hook(ctx: Ctx) -> None:
    args, count = ctx.args, ctx.args.hook_commits
    root = ctx.work / "hook"
    root.mkdir()
    hb = bench_hook.Bench(root)
    hb.build()
    hb.add_branch(count)
    hb.check(count)  # bench_hook's checks: validates and sends, --no-verify sends none, refuses an unvalidated tip
    push = ["git", "push", "-q"]
    hooked = Cmd("git push (hook)", [*push, "origin", f"bench-{count}:{bench_hook.BRANCH}"], hb.work, hb.env,
                 expect=hook_sent)
    plain = Cmd("git push --no-verify", [*push, "--no-verify", "origin", f"bench-{count}:{bench_hook.BRANCH}"],
                hb.work, hb.env)
    ctx.say(f"  tip mode, {count:,} commits: 2 pushes x {args.repeat} rounds ...")
    measure_cmds([plain, hooked], args.repeat, setup=hb.reset)  # the hooked push last: its receipts are counted
    sent = of(bench_notes.count(pygit2.Repository(str(hb.remote))), bench_notes.count(pygit2.Repository(str(hb.work))))
    hb.reset()
    cost = hooked.median - plain.median
    limit = bench_hook.TARGETS.get(count)
    ctx.rows.append(Row(f"pre-push hook, tip mode, {count:,} commits", f"+{fmt_time(cost)} a push",
                        f"< {limit:g} s (§4)" if limit else DASH, verdict(cost < limit) if limit else "",
                        plain.name, fmt_time(plain.median), times(hooked.median, plain.median), mib(hooked.peak),
                        mib(plain.peak), f"{sent} sent with the push"))

    every_root = ctx.work / "every"
    ctx.say(f"  building {count:,} commits, each changing src/ and carrying a receipt ...")
    info = bench_verify_history.build(every_root, count, 1, 50, 200)
    ctx.say(f"  built in {info['objects_s'] + info['receipts_s']:.0f} s")
    remote = ctx.work / "every-remote.git"
    git(ctx.work, "init", "-q", "--bare", str(remote))
    git(every_root, "remote", "add", "origin", str(remote))
    repo = pygit2.Repository(str(every_root))
    changing = 0
    for commit in repo.walk(repo.head.target):
        trees = commit_trees(repo, commit, bench_verify_history.PATHS)
        parent = commit_trees(repo, commit.parents[0], bench_verify_history.PATHS) if commit.parents else None
        changing += trees != parent
    receipts = of(len(list(NotesStore(repo).annotated_commits())), count)
    of(changing, count)
    stdin = (f"refs/heads/main {repo.head.target} refs/heads/feature {ZERO}\n"
             f"{NOTES_REF} {repo.references[NOTES_REF].target} {NOTES_REF} {ZERO}\n")
    hook = ["git-gpu-proof", "hook", "pre-push", "--mode"]
    every = Cmd("hook pre-push --mode every", [*hook, "every", "origin", str(remote)], every_root, hb.env, stdin,
                expect=hook_checked)
    tip = Cmd("hook pre-push --mode tip", [*hook, "tip", "origin", str(remote)], every_root, hb.env, stdin,
              expect=hook_checked)
    ctx.say(f"  push_check = every, {count:,} commits: 2 hook runs x {args.repeat} rounds ...")
    measure_cmds([every, tip], args.repeat)
    added = every.median - tip.median
    at_1000 = count == 1000
    ctx.rows.append(Row(f"pre-push hook, push_check = \"every\", {count:,} commits",
                        f"+{fmt_time(added)} over tip ({fmt_time(added / count)} a commit)",
                        "≤ 300 ms over tip" if at_1000 else "(≤ 300 ms at 1,000)",
                        verdict(added <= 0.3) if at_1000 else "", "the same hook, tip mode", fmt_time(tip.median),
                        times(every.median, tip.median), mib(every.peak), mib(tip.peak),
                        f"{receipts} receipts, {changing:,} commits checked"))
    ctx.notes.append(f"push_check = \"every\", {count:,} commits: the whole hook process {fmt_time(every.median)}, "
                     f"tip mode {fmt_time(tip.median)} (both check only: git's stdin lists the notes ref too)")


# -- main --------------------------------------------------------------------------------------------


def peer_python(args: argparse.Namespace, work: Path) -> Path | None:
    if args.no_peer:
        return None
    target = Path(args.peer_venv) if args.peer_venv else work / "peer-venv"
    python = target / "bin" / "python"
    if python.exists():
        print(f"using the peer's virtualenv {target}", flush=True)
    else:
        print(f"installing pytest-gpu-proof=={PEER_VERSION} into a throwaway virtualenv {target} ...", flush=True)
        made = bench_recording.make_peer_venv(target, PEER_VERSION)
        if made is None:
            return None
    asked = "import importlib.metadata as m; print(m.version('pytest-gpu-proof'))"
    version = subprocess.run([str(python), "-c", asked], capture_output=True, text=True, check=False).stdout.strip()
    if version != PEER_VERSION:
        raise SystemExit(f"{target} holds pytest-gpu-proof {version or 'nothing'}, not {PEER_VERSION}")
    return python


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds (a test of the script)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections: {', '.join(SECTIONS)}")
    parser.add_argument("--fetch", type=int, nargs="+", metavar="N", help="fetch N + N receipts (default 10000 20000)")
    parser.add_argument("--fetch-repeat", type=int, help="fetches per size (default 3)")
    parser.add_argument("--add", type=int, nargs="+", metavar="N",
                        help="NotesStore.add at N notes (default 1000 10000)")
    parser.add_argument("--tests", type=int, help="trivial tests recorded, and tests in the verified receipt (5000)")
    parser.add_argument("--files", type=int, help="files in the big checkout (default 20000)")
    parser.add_argument("--mb", type=float, help="MB of file content in the big checkout (default 200)")
    parser.add_argument("--log-commits", type=int, help="commits in the log (default 10000)")
    parser.add_argument("--hook-commits", type=int, help="commits in the pushed branch (default 1000)")
    parser.add_argument("--repeat", type=int, help="rounds of the whole-process cases (default 15)")
    parser.add_argument("--recording-repeat", type=int, help="rounds of the recording runs (default 5)")
    parser.add_argument("--rounds", type=int, help="rounds of worker processes (default 9)")
    parser.add_argument("--calls", type=int, help="timed calls in each verify worker (default 5; add: 4x)")
    parser.add_argument("--peer-venv", metavar="DIR",
                        help="the peer's virtualenv: used when DIR holds one, else created there and kept")
    parser.add_argument("--no-peer", action="store_true", help="measure gitproof alone")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway directory")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> int:
    args = parse_args()
    print_machine()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    sizes = {key: getattr(args, key) for key in FULL}
    print("sizes and rounds: " + ", ".join(f"{key} {value}" for key, value in sizes.items()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="gitproof-side-by-side-"))
    started = time.perf_counter()
    try:
        ctx = Ctx(args, work, child_env())
        FLOOR.append(max(spawn(["true"], work, ctx.env, rss=True).maxrss or 0 for _ in range(3)))
        print(f"RSS floor: the launcher alone (running `true`) peaks at {FLOOR[0] / 1024:.1f} MiB; "
              "a command that needs less shows as ≤ that", flush=True)
        if {"recording", "checkout", "verify"} & set(args.only):
            ctx.peer = peer_python(args, work)
        runners = {"fetch": section_fetch, "add": section_add, "recording": section_recording,
                   "checkout": section_checkout, "verify": section_verify, "log": section_log, "hook": section_hook}
        for name in SECTIONS:
            if name in args.only:
                begun = time.perf_counter()
                print(f"\n[{name}]", flush=True)
                runners[name](ctx)
                print(f"  ({time.perf_counter() - begun:.0f} s)", flush=True)
        print(f"\nall sections in {time.perf_counter() - started:.0f} s; medians; ratio = gitproof / comparison, "
              "measured in the same run, interleaved; RSS = peak resident set (largest process of the tree)\n")
        print(table([row.cells() for row in ctx.rows], HEADER))
        if ctx.notes:
            print()
            for note in ctx.notes:
                print(f"- {note}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
