"""What the pre-push hook adds to a real ``git push`` to a bare remote on local disk.

Setup (not timed): a working clone with ``[tool.gpu_proof]`` and an
allowed_signers file holding a fresh ed25519 key, its ``main`` pushed to a bare
remote, which is then copied aside as the *pristine* remote state. After that,
``git gpu-proof install`` puts the hooks in the clone. For every size in
``--commits`` (default 10 and 1,000) a branch ``bench-N`` is written on top of
``main`` with ``git fast-import``: N commits, each rewriting one file under
``src/`` (so every commit changes the GPU code). Only the tip gets a receipt
(50 test lines, the tip's real fingerprint trees, signed by the real
``ssh-keygen -Y sign -n gpu-proof``, attached with ``NotesStore.add``), which
is what the hook's default ``tip`` mode needs.

Timed, per size, side by side (every round runs each case once, the starting
case rotating; the figure is the median over rounds). Before every timed call,
untimed, the bare remote is replaced by a copy of the pristine state and the
clone's ``refs/remotes/origin/feature`` is deleted, so every push is a new
branch with all N commits to send and a remote without receipts:

* ``git push origin bench-N:refs/heads/feature``: with the hook;
* the same with ``--no-verify``: no hook, so no receipts are sent;
* ``--no-verify`` pushing the branch *and* ``refs/notes/gpu-proof`` in one
  push: the same data the hooked push delivers, without the hook;
* ``git-gpu-proof hook pre-push origin URL`` alone, fed the stdin line git
  would send (``refs/heads/bench-N <sha> refs/heads/feature 000...``): the
  check plus the hook's own push of the notes ref;
* the same with a second stdin line for ``refs/notes/gpu-proof`` (as when the
  outer push already carries the notes), so the hook only checks;
* ``python -c "import pygit2, gitproof.hook, gitproof.sync,
  gitproof.verify"``: the imports the hook needs;
* ``python -c pass``: interpreter start, for scale.

Each timed call is a fresh process, as in real use. Everything runs with
``HOME`` pointing at a temporary directory (a minimal ``.gitconfig``) and
``GIT_CONFIG_NOSYSTEM=1``, so no personal or system git configuration
(hooks, credential helpers) takes part. The venv's ``bin`` is first on PATH,
so the installed hook finds ``git-gpu-proof``. ``PYTHONDONTWRITEBYTECODE`` is
removed from the child processes' environment, so the checks below (untimed)
leave byte-code caches behind as a normal installation has them; with it set
and no ``.pyc`` files, every run compiles the missing modules again.

Run:

    python benchmarks/bench_hook.py
    python benchmarks/bench_hook.py --commits 10 1000 --repeat 21
    python benchmarks/bench_hook.py --profile      # also: -X importtime and cProfile of one hook run

Options: ``--commits`` (sizes, default ``10 1000``), ``--repeat`` (rounds,
default 15), ``--profile`` (after timing, profile the hook once per size),
``--keep`` (leave the directory in place and print its path).
"""
from __future__ import annotations

import argparse
import io
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

from _common import Case, fmt_time, measure_and_show, print_machine, signed_receipt, table

from gitproof.notes import NOTES_REF, NotesStore

PRINCIPAL = "alice@example.com"
PATHS = ["src", "tests"]
ZERO = "0" * 40
BRANCH = "refs/heads/feature"
TRACKING = "refs/remotes/origin/feature"
TARGETS = {10: 0.3, 1000: 1.0}  # seconds of hook overhead the project aims for
PYPROJECT = ('[project]\nname = "bench"\nversion = "0"\n\n[tool.gpu_proof]\n'
             'fingerprint_paths = ["src", "tests"]\nallowed_signers = ".gpu-proof/allowed_signers"\n')
HOOK_IMPORTS = "import pygit2, gitproof.hook, gitproof.sync, gitproof.verify"


class Bench:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.remote = root / "remote.git"
        self.pristine = root / "pristine.git"
        home = root / "home"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = alice@example.com\n"
                                         "[init]\n\tdefaultBranch = main\n")
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
                    "XDG_CONFIG_HOME": str(home / ".config"), "GIT_TERMINAL_PROMPT": "0",
                    "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
        self.env.pop("GITPROOF_SYNC", None)
        # Byte-code caches as an installed package has them (some sandboxes set this variable).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.key = root / "key"
        self.repo: pygit2.Repository | None = None
        self.tips: dict[int, str] = {}

    # -- building -------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None, data: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=cwd or self.work, env=self.env, input=data,
                                capture_output=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result

    def build(self) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(self.key)],
                       check=True, capture_output=True)
        public = self.key.with_suffix(".pub").read_text().split()
        self.git("init", "-q", "--bare", "-b", "main", str(self.remote), cwd=self.root)
        self.git("init", "-q", "-b", "main", str(self.work), cwd=self.root)
        files = {
            "pyproject.toml": PYPROJECT,
            ".gpu-proof/allowed_signers": f'{PRINCIPAL} namespaces="gpu-proof" {public[0]} {public[1]}\n',
            ".gitignore": "__pycache__/\n.pytest_cache/\n",
            "src/kernels.py": "def add(a, b):\n    return a + b\n",
            "tests/test_kernels.py": ("import pytest\n\n@pytest.mark.gpu_proof\n"
                                      "def test_add():\n    assert 1 + 1 == 2\n"),
        }
        for rel, text in files.items():
            (self.work / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.work / rel).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "initial")
        self.git("config", "user.signingKey", str(self.key))
        self.git("remote", "add", "origin", str(self.remote))
        self.git("push", "-q", "origin", "main")
        shutil.copytree(self.remote, self.pristine, symlinks=True)
        self.git("gpu-proof", "install")
        self.repo = pygit2.Repository(str(self.work))

    def add_branch(self, commits: int) -> str:
        """``bench-N``: N commits on main, each changing a file under src/, via fast-import."""
        base = self.git("rev-parse", "main").stdout.decode().strip()
        ref = f"refs/heads/bench-{commits}"
        stream = io.BytesIO()
        start = 1_767_225_600  # 2026-01-01
        for i in range(commits):
            message = f"bench-{commits}: GPU change {i}\n".encode()
            content = f"def f(x):\n    return x + {i}\n".encode()
            stream.write(f"commit {ref}\nmark :{i + 1}\n".encode())
            stream.write(f"committer Bench <bench@example.com> {start + i} +0000\n".encode())
            stream.write(f"data {len(message)}\n".encode() + message)
            stream.write((f"from {base}\n" if i == 0 else f"from :{i}\n").encode())
            path = f"src/gen/mod_{i % 50}.py"
            stream.write(f"M 100644 inline {path}\ndata {len(content)}\n".encode() + content + b"\n")
        self.git("fast-import", "--quiet", data=stream.getvalue())
        tip = self.git("rev-parse", ref).stdout.decode().strip()
        self._sign_tip(tip)
        self.tips[commits] = tip
        return tip

    def _sign_tip(self, tip: str) -> None:
        assert self.repo is not None
        NotesStore(self.repo).add(tip, signed_receipt(self.repo, tip, self.key, PRINCIPAL, PATHS, "feature"))

    # -- the timed operations --------------------------------------------------

    def reset(self) -> None:
        """Fresh remote state: the pristine bare repository, and no tracking ref for it."""
        shutil.rmtree(self.remote)
        shutil.copytree(self.pristine, self.remote, symlinks=True)
        assert self.repo is not None
        if TRACKING in self.repo.references:
            self.repo.references.delete(TRACKING)

    def push(self, commits: int, *extra: str) -> subprocess.CompletedProcess:
        return self.git("push", "-q", *extra, "origin", f"bench-{commits}:{BRANCH}", check=False)

    def hook_input(self, commits: int, with_notes: bool) -> str:
        lines = [f"refs/heads/bench-{commits} {self.tips[commits]} {BRANCH} {ZERO}"]
        if with_notes:
            notes = self.git("rev-parse", NOTES_REF).stdout.decode().strip()
            lines.append(f"{NOTES_REF} {notes} {NOTES_REF} {ZERO}")
        return "\n".join(lines) + "\n"

    def hook(self, commits: int, with_notes: bool, prefix: tuple[str, ...] = ("git-gpu-proof",)
             ) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, "hook", "pre-push", "origin", str(self.remote)], cwd=self.work,
                              env=self.env, input=self.hook_input(commits, with_notes),
                              capture_output=True, text=True)

    def python(self, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True)

    # -- checks before timing ----------------------------------------------------

    def check(self, commits: int) -> None:
        """Every timed operation does what it claims, or the figures would mean nothing."""
        tip = self.tips[commits]
        self.reset()
        hooked = self.push(commits)
        err = hooked.stderr.decode()
        assert hooked.returncode == 0, err
        assert "1 ref(s) with GPU changes validated; receipts sent to origin" in err, err
        assert self.git("rev-parse", BRANCH, cwd=self.remote).stdout.decode().strip() == tip
        assert self.git("rev-parse", NOTES_REF, cwd=self.remote, check=False).returncode == 0
        count = self.git("rev-list", "--count", f"main..{BRANCH}", cwd=self.remote).stdout.decode().strip()
        assert int(count) == commits, count

        self.reset()
        plain = self.push(commits, "--no-verify")
        assert plain.returncode == 0, plain.stderr.decode()
        assert self.git("rev-parse", NOTES_REF, cwd=self.remote, check=False).returncode != 0

        self.reset()
        alone = self.hook(commits, with_notes=False)
        assert alone.returncode == 0 and "receipts sent to origin" in alone.stderr, alone.stderr
        self.reset()
        check_only = self.hook(commits, with_notes=True)
        assert check_only.returncode == 0 and "receipts sent" not in check_only.stderr, check_only.stderr
        assert "GPU changes validated" in check_only.stderr, check_only.stderr

        # And the hook does refuse when the tip has no receipt (one commit past it).
        self.reset()
        assert self.hook_refused(commits), "an unvalidated tip must be refused"
        self.reset()

    def hook_refused(self, commits: int) -> bool:
        # A commit past the receipted tip with a changed src/ file: no receipt covers it.
        assert self.repo is not None
        tip = self.repo[self.tips[commits]]
        blob = self.repo.create_blob(b"def f(x):\n    return -x\n")
        builder = self.repo.TreeBuilder(tip.tree)
        src = self.repo.TreeBuilder(tip.tree["src"])
        src.insert("extra.py", blob, pygit2.enums.FileMode.BLOB)
        builder.insert("src", src.write(), pygit2.enums.FileMode.TREE)
        sig = pygit2.Signature("Bench", "bench@example.com", 1_767_300_000, 0)
        child = self.repo.create_commit(None, sig, sig, "unvalidated\n", builder.write(), [tip.id])
        line = f"refs/heads/x {child} {BRANCH} {ZERO}\n"
        result = subprocess.run(["git-gpu-proof", "hook", "pre-push", "origin", str(self.remote)],
                                cwd=self.work, env=self.env, input=line, capture_output=True, text=True)
        return result.returncode == 1 and "push refused" in result.stderr


def profile(bench: Bench, commits: int) -> None:
    """Where one hook run spends its time: imports (-X importtime) and cProfile."""
    print(f"\nprofile, {commits:,} commits")
    bench.reset()
    result = bench.hook(commits, True, (sys.executable, "-X", "importtime", "-m", "gitproof"))
    rows = []  # (cumulative us, depth, module) in import order
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)) // 2, match.group(4)))
    total = sum(r[0] for r in rows if r[1] == 0)
    print(f"  -X importtime, check-only run: {total / 1e3:,.1f} ms of imports in all; "
          "modules over 4 ms, 3 levels deep (cumulative, nested under the line above):")
    for cumulative, depth, name in reversed(rows):  # importtime prints children first
        if depth <= 2 and cumulative >= 4000:
            print(f"    {cumulative / 1e3:8.1f} ms  {'  ' * depth}{name}")
    stats_file = bench.root / f"hook-{commits}.prof"
    bench.reset()
    started = time.perf_counter()
    bench.hook(commits, False, (sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "gitproof"))
    wall = time.perf_counter() - started
    stats = pstats.Stats(str(stats_file), stream=io.StringIO())
    entries = []
    for (path, line, func), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if ("/gitproof/" in path and func != "<module>") or (path.endswith("subprocess.py") and func == "run"):
            entries.append((cumulative, f"{Path(path).parent.name}/{Path(path).name}:{line} {func}"))
    entries.sort(reverse=True)
    print(f"  cProfile, run that also pushes the notes ({wall * 1e3:,.0f} ms wall with the profiler): "
          "gitproof functions and subprocess.run by cumulative time:")
    for cumulative, where in entries[:14]:
        print(f"    {cumulative * 1e3:8.1f} ms  {where}")
    bench.reset()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print_machine()
    print(f"  command        {' '.join([Path(sys.executable).name, *sys.argv])}")
    root = Path(tempfile.mkdtemp(prefix="bench-hook-"))
    bench = Bench(root)
    try:
        t0 = time.perf_counter()
        bench.build()
        for n in args.commits:
            t1 = time.perf_counter()
            bench.add_branch(n)
            print(f"built bench-{n}: {n:,} commits + receipt on the tip in {time.perf_counter() - t1:.2f} s")
        print(f"setup total {time.perf_counter() - t0:.2f} s in {root}")
        for n in args.commits:
            bench.check(n)
        print("checks passed: hooked push validates and sends receipts; --no-verify sends none; "
              "the hook refuses an unvalidated tip\n")

        results: dict[int, dict[str, Case]] = {}
        scale = [Case("python -c pass", lambda: bench.python("pass"), setup=bench.reset, number=1),
                 Case("python: the hook's imports", lambda: bench.python(HOOK_IMPORTS),
                      setup=bench.reset, number=1)]
        for n in args.commits:
            cases = {
                "hook": Case(f"{n:,}: git push (hook)", lambda n=n: bench.push(n), setup=bench.reset, number=1),
                "plain": Case(f"{n:,}: git push --no-verify", lambda n=n: bench.push(n, "--no-verify"),
                              setup=bench.reset, number=1),
                "plain+notes": Case(f"{n:,}: git push --no-verify, branch + notes",
                                    lambda n=n: bench.git("push", "-q", "--no-verify", "origin",
                                                          f"bench-{n}:{BRANCH}", NOTES_REF, check=False),
                                    setup=bench.reset, number=1),
                "alone": Case(f"{n:,}: hook alone (check + notes push)", lambda n=n: bench.hook(n, False),
                              setup=bench.reset, number=1),
                "check": Case(f"{n:,}: hook alone (check only)", lambda n=n: bench.hook(n, True),
                              setup=bench.reset, number=1),
            }
            results[n] = cases
        every = [c for cases in results.values() for c in cases.values()] + scale
        measure_and_show(every, args.repeat)

        print("\nhook overhead = median(git push with hook) - median(git push --no-verify):")
        summary = []
        for n, cases in results.items():
            hooked, plain = cases["hook"].median, cases["plain"].median
            with_notes = cases["plain+notes"].median
            target = TARGETS.get(n)
            overhead = hooked - plain
            verdict = "" if target is None else ("meets" if overhead < target else "MISSES") + f" < {target:g} s"
            summary.append([f"{n:,} commits", fmt_time(hooked), fmt_time(plain), fmt_time(overhead),
                            f"{hooked / plain:.2f}x", fmt_time(hooked - with_notes), verdict])
        print(table(summary, ["push", "with hook", "--no-verify", "overhead", "ratio",
                              "vs branch+notes", "target"]))

        if args.profile:
            for n in args.commits:
                profile(bench, n)
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
