"""Reliability: several clones and processes against one real bare remote, with concurrent
pushes, deletions by plain git, newer-format receipts and kill -9 at random points of
`run`, `fetch` and `push`. After every case: no receipt lost, refs readable, `git fsck` clean.

The randomness is seeded, so a failure replays.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NOTES_REF, NotesStore
from gitproof.sync import fetch, push_notes
from tests.helpers import git
from tests.receipts import attach_receipt
from tests.remotes import World, tool_env

SEED = 20261129
PRINCIPALS = ("alice@example.com", "bob@example.com", "carol@example.com")
FUTURE = b"gpu-proof receipt v2\nverdict: passed\nsomething: new\n"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def entries_on(root: Path) -> set[bytes]:
    """Every note entry on HEAD of this clone, as exact bytes."""
    from gitproof.receipt import raw_entries

    repo = pygit2.Repository(str(root))
    store = NotesStore(repo)
    index = store.index()
    blob = index.get(str(repo.head.target))
    return {e.strip() for e in raw_entries(repo[blob[0]].data)} if blob else set()


def killed_at_random(root: Path, args: list[str], rng: random.Random) -> None:
    """Start `git gpu-proof ARGS` and kill -9 its whole process group after a random delay."""
    proc = subprocess.Popen(["git", "gpu-proof", *args], cwd=root, env=tool_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.0, 0.6))
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def assert_healthy(*repos: Path) -> None:
    for root in repos:
        check = subprocess.run(["git", "fsck", "--no-progress"], cwd=root, capture_output=True, text=True)
        assert check.returncode == 0, f"{root}: {check.stdout}{check.stderr}"
        assert not list(Path(root).rglob("gpu-proof.lock")), f"{root}: a lock file was left behind"


def test_kill_9_during_fetch_and_push_loses_nothing(world):
    rng = random.Random(SEED)
    clones = [world.clone(f"c{i}", PRINCIPALS[i], hook=False) for i in range(3)]
    mine: list[set[bytes]] = [set() for _ in clones]
    for round_ in range(4):
        for i, clone in enumerate(clones):
            mine[i].add(attach_receipt(clone, world.key(PRINCIPALS[i]), principal=PRINCIPALS[i],
                                       pytest_args=[f"round-{round_}"]).text.strip().encode())
            killed_at_random(clone, rng.choice([["push", "origin", NOTES_REF], ["fetch", "origin"]]), rng)
            assert mine[i] <= entries_on(clone), "a killed fetch or push took a local receipt"
    made = set().union(*mine)
    for clone in clones:  # converge: each fetches and pushes once, undisturbed
        assert push_notes(pygit2.Repository(str(clone)), "origin").pushed
    checker = world.clone("checker", hook=False)
    fetch(pygit2.Repository(str(checker)), "origin")
    assert made <= entries_on(checker), "a receipt was lost"
    assert_healthy(world.remote, checker, *clones)


def test_kill_9_during_run_leaves_notes_whole_and_the_next_run_records(world):
    rng = random.Random(SEED + 1)
    clone = world.clone("runner", hook=False)
    for _ in range(5):
        killed_at_random(clone, ["run", "--unsigned", "--", "-q", "-p", "no:cacheprovider"], rng)
        assert_healthy(clone)
        tip = git(clone, "rev-parse", "-q", "--verify", NOTES_REF, check=False)
        if tip:  # whatever the kill left, it is a readable notes commit
            assert pygit2.Repository(str(clone))[tip].type_str == "commit"
    done = subprocess.run(["git", "gpu-proof", "run", "--unsigned", "--", "-q", "-p", "no:cacheprovider"],
                          cwd=clone, env=tool_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(b"UNSIGNED" in e or b"unsigned" in e for e in entries_on(clone))


def test_concurrent_pushes_deletions_by_plain_git_and_newer_formats_lose_nothing(world):
    rng = random.Random(SEED + 2)
    clones = [world.clone(f"w{i}", PRINCIPALS[i], hook=False) for i in range(3)]
    vandal = world.clone("vandal", hook=False)
    made: set[bytes] = set()
    for round_ in range(3):
        procs = []
        for i, clone in enumerate(clones):
            made.add(attach_receipt(clone, world.key(PRINCIPALS[i]), principal=PRINCIPALS[i],
                                    pytest_args=[f"r{round_}"]).text.strip().encode())
            procs.append(subprocess.Popen(["git", "gpu-proof", "push", "origin", NOTES_REF], cwd=clone,
                                          env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
        # plain git removes the note on the remote (a fast-forward, no force), or adds a future entry
        git(vandal, "fetch", "-q", "origin", f"+{NOTES_REF}:{NOTES_REF}")
        if rng.random() < 0.5:
            git(vandal, "notes", "--ref=gpu-proof", "remove", "HEAD")
        else:
            future = world.root / "future.txt"
            current = subprocess.run(["git", "notes", "--ref=gpu-proof", "show", "HEAD"], cwd=vandal,
                                     capture_output=True).stdout
            future.write_bytes(current + b"\n" + FUTURE)
            git(vandal, "notes", "--ref=gpu-proof", "add", "-f", "-F", str(future), "HEAD")
            made.add(FUTURE.strip())
        git(vandal, "push", "-q", "origin", NOTES_REF)
    for clone in clones:
        assert push_notes(pygit2.Repository(str(clone)), "origin").pushed
    checker = world.clone("checker", hook=False)
    fetch(pygit2.Repository(str(checker)), "origin")
    assert made <= entries_on(checker), "a receipt was lost"
    assert_healthy(world.remote, checker, *clones)
