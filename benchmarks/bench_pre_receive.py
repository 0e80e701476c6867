"""What the server's pre-receive hook adds to a real ``git push`` to a bare repository.

Setup (not timed): a working clone with ``[tool.gpu_proof]`` and an allowed_signers
file holding a fresh ed25519 key; two bare repositories on local disk, ``hooked.git``
(the shipped ``hooks/pre-receive``, which runs ``git-gpu-proof hook pre-receive``)
and ``plain.git`` (no hook), both given ``main`` and a notes ref of N receipts.
Those N notes sit on made-up commit ids, each a copy of one real receipt with its
own ``commit`` and ``tree`` lines, so each is indexed by the verifier's tree index
and none matches the pushed code (the hook reads them all when it builds the index,
and judges only receipts for the pushed trees). In the clone: branch ``docs`` (main
plus a README change) and branch ``gpu`` (main plus a change under ``src/``, with a
receipt signed by the real ``ssh-keygen -Y sign -n gpu-proof`` on its tip, attached
on top of the N notes).

Timed, per N in ``--notes`` (default 100 and 10,000), side by side (every round runs
each case once, the starting case rotating; the figure is the median over rounds).
Before every timed call, untimed, both servers get their refs back (``main`` and
the notes ref as set up, no ``feature``), so each push sends the same objects and
moves the same refs:

* ``gpu:refs/heads/feature``: a branch that is not protected (the hook's lean path:
  ``git config`` and ``git symbolic-ref`` are run, pygit2 is never imported);
* ``docs:main``: a protected branch, no GPU change (policy and trust are read, no verify);
* ``gpu:main`` and ``refs/notes/gpu-proof`` in one push: a GPU change with its
  receipt in the same push (the notes update is checked for losses and shape, the
  receipt read from the pushed notes commit and its signature checked);
* the same, with the server's tree-index cache deleted first (``cold``): the index
  is rebuilt from the N notes, as on the first push after an install;
* ``git-gpu-proof hook pre-receive`` alone in ``hooked.git``, fed the two lines
  git would send for the third case (the objects are already there);
* ``python -c pass`` and the hook's imports, for scale: what a push that touches no
  protected ref and no notes ref imports (no pygit2: the settings come from two
  ``git`` commands), and what a push to a protected ref imports.

Each of the first three runs against ``hooked.git`` and ``plain.git``; the overhead
is the difference of the medians. Each timed call is a fresh process, as in real
use. Everything runs with ``HOME`` pointing at a temporary directory (a minimal
``.gitconfig``) and ``GIT_CONFIG_NOSYSTEM=1``; the venv's ``bin`` is first on PATH,
so the hook finds ``git-gpu-proof``. Before timing, untimed checks make sure every
case does what it claims (the GPU push is accepted and validated, and refused
without its receipt).

Run:

    python benchmarks/bench_pre_receive.py
    python benchmarks/bench_pre_receive.py --notes 100 10000 --repeat 15

Options: ``--notes`` (server receipts, default ``100 10000``), ``--repeat`` (rounds,
default 11), ``--keep`` (leave the directory in place and print its path).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pygit2

from _common import Case, fmt_time, measure_and_show, print_machine, signed_receipt, table

from gitproof.notes import NOTES_REF, NotesStore, tree_with_notes
from gitproof.receipt import SignedReceipt

PRINCIPAL = "alice@example.com"
PATHS = ["src", "tests"]
MAIN = "refs/heads/main"
FEATURE = "refs/heads/feature"
PYPROJECT = ('[project]\nname = "bench"\nversion = "0"\n\n[tool.gpu_proof]\n'
             'fingerprint_paths = ["src", "tests"]\nallowed_signers = ".gpu-proof/allowed_signers"\n')
LEAN_IMPORTS = "import gitproof.cli.main, gitproof.cli.hook, gitproof.receive"  # no pygit2
FULL_IMPORTS = LEAN_IMPORTS + ", pygit2, gitproof.hook, gitproof.notes, gitproof.verify"
HOOK_SCRIPT = Path(__file__).resolve().parent.parent / "hooks" / "pre-receive"


class Bench:
    def __init__(self, root: Path, notes: int) -> None:
        self.root, self.notes = root, notes
        self.work = root / "work"
        self.servers = {"hooked": root / "hooked.git", "plain": root / "plain.git"}
        home = root / "home"
        home.mkdir(parents=True)
        (home / ".gitconfig").write_text("[user]\n\tname = Bench\n\temail = alice@example.com\n"
                                         "[init]\n\tdefaultBranch = main\n")
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
                    "XDG_CONFIG_HOME": str(home / ".config"), "GIT_TERMINAL_PROMPT": "0",
                    "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # byte-code caches, as an installed package has them
        self.key = root / "key"
        self.repo: pygit2.Repository | None = None
        self.base = self.server_notes = self.gpu = self.docs = self.pushed_notes = ""

    def git(self, *args: str, cwd: Path | None = None, data: bytes | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["git", *args], cwd=cwd or self.work, env=self.env, input=data,
                                capture_output=True)
        if check and result.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result

    def rev(self, name: str, cwd: Path | None = None) -> str:
        return self.git("rev-parse", name, cwd=cwd).stdout.decode().strip()

    # -- building -------------------------------------------------------------

    def build(self) -> None:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", PRINCIPAL, "-f", str(self.key)],
                       check=True, capture_output=True)
        public = self.key.with_suffix(".pub").read_text().split()
        self.git("init", "-q", "-b", "main", str(self.work), cwd=self.root)
        self.write({
            "pyproject.toml": PYPROJECT,
            ".gpu-proof/allowed_signers": f'{PRINCIPAL} namespaces="gpu-proof" {public[0]} {public[1]}\n',
            "src/kernels.py": "def add(a, b):\n    return a + b\n",
            "tests/test_kernels.py": ("import pytest\n\n@pytest.mark.gpu_proof\n"
                                      "def test_add():\n    assert 1 + 1 == 2\n"),
            "README.md": "bench\n",
        })
        self.commit("initial")
        self.base = self.rev("HEAD")
        self.repo = pygit2.Repository(str(self.work))
        signed = self.signed(self.base)
        self.write_server_notes(signed)
        for bare in self.servers.values():
            self.git("init", "-q", "--bare", "-b", "main", str(bare), cwd=self.root)
            self.git("push", "-q", str(bare), "main", NOTES_REF)
        shutil.copy(HOOK_SCRIPT, self.servers["hooked"] / "hooks" / "pre-receive")
        self.git("switch", "-q", "-c", "docs")
        self.write({"README.md": "bench, with more words\n"})
        self.docs = self.commit("docs")
        self.git("switch", "-q", "-c", "gpu", "main")
        self.write({"src/kernels.py": "def add(a, b):\n    return b + a\n"})
        self.gpu = self.commit("kernel")
        NotesStore(self.repo).add(self.gpu, self.signed(self.gpu))
        self.pushed_notes = self.rev(NOTES_REF)

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            (self.work / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.work / rel).write_text(text)

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.rev("HEAD")

    def signed(self, rev: str) -> SignedReceipt:
        assert self.repo is not None
        return signed_receipt(self.repo, rev, self.key, PRINCIPAL, PATHS, "main")

    def write_server_notes(self, model: SignedReceipt) -> None:
        """N notes on made-up commits, each the model receipt with its own commit and tree lines."""
        assert self.repo is not None
        text = model.text
        notes = {}
        for i in range(self.notes):
            fake = hashlib.sha1(f"bench commit {i}".encode()).hexdigest()
            tree = hashlib.sha1(f"bench tree {i}".encode()).hexdigest()
            body = re.sub(r"^commit: [0-9a-f]+$", f"commit: {fake}", text, count=1, flags=re.M)
            body = re.sub(r"^tree: [0-9a-f]+ src$", f"tree: {tree} src", body, count=1, flags=re.M)
            notes[fake] = body.encode()
        tree_id = tree_with_notes(self.repo, None, notes)
        sig = pygit2.Signature("Bench", "bench@example.com", 1_767_225_600, 0)
        self.server_notes = str(self.repo.create_commit(NOTES_REF, sig, sig, "bench notes\n", tree_id, []))

    # -- the timed operations --------------------------------------------------

    def reset(self, cold: bool = False) -> None:
        """Both servers as set up: main at the first commit, the N notes, no feature branch."""
        for bare in self.servers.values():
            repo = pygit2.Repository(str(bare))
            repo.references.create(MAIN, self.base, force=True)
            repo.references.create(NOTES_REF, self.server_notes, force=True)
            if FEATURE in repo.references:
                repo.references.delete(FEATURE)
        if cold:
            shutil.rmtree(self.servers["hooked"] / "gpu-proof", ignore_errors=True)

    def push(self, server: str, *refspecs: str) -> subprocess.CompletedProcess:
        return self.git("push", "-q", "--no-verify", str(self.servers[server]), *refspecs, check=False)

    def hook_alone(self) -> subprocess.CompletedProcess:
        lines = (f"{self.base} {self.gpu} {MAIN}\n"
                 f"{self.server_notes} {self.pushed_notes} {NOTES_REF}\n")
        return subprocess.run(["git-gpu-proof", "hook", "pre-receive"], cwd=self.servers["hooked"],
                              env={**self.env, "GIT_DIR": "."}, input=lines, capture_output=True, text=True)

    def python(self, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True)

    # -- checks before timing ----------------------------------------------------

    def check(self) -> None:
        """Every timed operation does what it claims, or the figures would mean nothing."""
        hooked = self.servers["hooked"]
        self.reset()
        refused = self.push("hooked", "gpu:main")
        err = refused.stderr.decode()
        assert refused.returncode != 0 and "GPU code without a valid receipt" in err, err
        for cold in (False, True):
            self.reset(cold)
            result = self.push("hooked", "gpu:main", NOTES_REF)
            err = result.stderr.decode()
            assert result.returncode == 0 and "1 protected ref(s) with GPU changes validated" in err, err
            assert self.rev(MAIN, hooked) == self.gpu and self.rev(NOTES_REF, hooked) == self.pushed_notes
        self.reset()
        docs = self.push("hooked", "docs:main")
        assert docs.returncode == 0 and "without GPU changes" in docs.stderr.decode(), docs.stderr
        self.reset()
        feature = self.push("hooked", f"gpu:{FEATURE}")
        assert feature.returncode == 0 and b"gpu-proof" not in feature.stderr, feature.stderr
        for refspecs in (("gpu:main", NOTES_REF), ("docs:main",), (f"gpu:{FEATURE}",)):
            self.reset()
            assert self.push("plain", *refspecs).returncode == 0
        self.reset()
        alone = self.hook_alone()
        assert alone.returncode == 0 and "GPU changes validated" in alone.stderr, alone.stderr
        self.reset()

    def cases(self) -> dict[str, Case]:
        n = f"{self.notes:,}"
        cases = {}
        for server in self.servers:
            cases[f"feature-{server}"] = Case(f"{n}: feature branch, {server}",
                                              lambda s=server: self.push(s, f"gpu:{FEATURE}"),
                                              setup=self.reset, number=1)
            cases[f"docs-{server}"] = Case(f"{n}: main, docs only, {server}",
                                           lambda s=server: self.push(s, "docs:main"), setup=self.reset, number=1)
            cases[f"gpu-{server}"] = Case(f"{n}: main + receipt, {server}",
                                          lambda s=server: self.push(s, "gpu:main", NOTES_REF),
                                          setup=self.reset, number=1)
        cases["gpu-cold"] = Case(f"{n}: main + receipt, hooked, cold index",
                                 lambda: self.push("hooked", "gpu:main", NOTES_REF),
                                 setup=lambda: self.reset(cold=True), number=1)
        cases["alone"] = Case(f"{n}: hook alone (main + receipt)", self.hook_alone, setup=self.reset, number=1)
        return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print_machine()
    print(f"  command        {' '.join([Path(sys.executable).name, *sys.argv])}")
    root = Path(tempfile.mkdtemp(prefix="bench-pre-receive-"))
    try:
        benches = []
        for n in args.notes:
            t0 = time.perf_counter()
            bench = Bench(root / f"notes-{n}", n)
            bench.build()
            bench.check()
            benches.append(bench)
            print(f"built and checked: {n:,} server receipts in {time.perf_counter() - t0:.2f} s")
        print("checks passed: GPU push accepted with its receipt (warm and cold index) and refused "
              "without; docs push accepted; feature branch passes silently\n")

        per_size = {bench.notes: bench.cases() for bench in benches}
        first = benches[0]
        scale = [Case("python -c pass", lambda: first.python("pass"), number=1),
                 Case("python: lean imports (feature branch)", lambda: first.python(LEAN_IMPORTS), number=1),
                 Case("python: full imports (protected ref)", lambda: first.python(FULL_IMPORTS), number=1)]
        every = [c for cases in per_size.values() for c in cases.values()] + scale
        measure_and_show(every, args.repeat)

        print("\ncost per push = median(push to hooked.git) - median(the same push to plain.git):")
        summary = []
        for n, cases in per_size.items():
            for key, what in (("feature", "feature branch (not protected)"), ("docs", "main, docs only"),
                              ("gpu", "main + receipt in the same push")):
                hooked, plain = cases[f"{key}-hooked"].median, cases[f"{key}-plain"].median
                summary.append([f"{n:,} receipts", what, fmt_time(hooked), fmt_time(plain),
                                fmt_time(hooked - plain)])
            cold = cases["gpu-cold"].median
            summary.append([f"{n:,} receipts", "main + receipt, cold tree index", fmt_time(cold),
                            fmt_time(cases["gpu-plain"].median), fmt_time(cold - cases["gpu-plain"].median)])
        print(table(summary, ["server", "push", "hooked", "plain", "cost"]))
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
