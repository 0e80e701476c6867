"""Receipts between clones: real bare remotes on disk, real git transport."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from gitproof.attestation_notes import ATTESTATIONS_REF
from gitproof.notes import NOTES_REF, NotesStore
from gitproof.sync import SyncError, fetch, push_notes, tracking_ref
from tests.attestations import attest
from tests.factories import make_receipt
from tests.helpers import commit_all, git, write_files
from tests.receipts import attach_receipt
from tests.remotes import World, gp, push


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def signers_on(root: Path, rev: str = "HEAD") -> list[str]:
    repo = pygit2.Repository(str(root))
    commit = str(repo.revparse_single(rev).peel(pygit2.Commit).id)
    return sorted(e.signed.receipt.signer for e in NotesStore(repo).entries(commit) if e.signed)


def test_two_clones_receipts_on_the_same_commit_both_survive(world):
    a = world.clone("a", "alice@example.com", hook=False)
    b = world.clone("b", "bob@example.com", hook=False)
    attach_receipt(a, world.key("alice@example.com"), principal="alice@example.com")
    attach_receipt(b, world.key("bob@example.com"), principal="bob@example.com")
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    result = push_notes(pygit2.Repository(str(b)), "origin")
    assert result.pushed and result.attempts == 2 and result.merges[0].kind == "merge"
    fetch(pygit2.Repository(str(a)), "origin")
    assert signers_on(a) == signers_on(b) == ["alice@example.com", "bob@example.com"]
    fresh = world.clone("fresh", hook=False)
    fetch(pygit2.Repository(str(fresh)), "origin")
    assert signers_on(fresh) == ["alice@example.com", "bob@example.com"]
    assert gp(fresh, "verify").returncode == 0


def test_fetch_goes_to_a_tracking_ref_outside_refs_notes(world):
    a = world.clone("a", hook=False)
    attach_receipt(a, world.key("alice@example.com"))
    push_notes(pygit2.Repository(str(a)), "origin")
    b = world.clone("b", hook=False)
    result = fetch(pygit2.Repository(str(b)), "origin")
    assert result.kind == "fast-forward"
    assert git(b, "rev-parse", tracking_ref("origin")) == git(b, "rev-parse", NOTES_REF)
    assert fetch(pygit2.Repository(str(b)), "origin").kind == "up-to-date"


def test_fetch_from_a_remote_without_receipts_is_not_an_error(world):
    a = world.clone("a", hook=False)
    assert fetch(pygit2.Repository(str(a)), "origin").kind == "none"
    with pytest.raises(SyncError, match="cannot fetch receipts from nowhere"):
        fetch(pygit2.Repository(str(a)), "nowhere")


def test_merge_is_a_union_and_never_rewrites_either_side(world):
    a = world.clone("a", hook=False)
    b = world.clone("b", "bob@example.com", hook=False)
    mine = attach_receipt(a, world.key("alice@example.com"))
    attach_receipt(b, world.key("bob@example.com"), principal="bob@example.com")
    push_notes(pygit2.Repository(str(b)), "origin")
    before = git(a, "rev-parse", NOTES_REF)
    fetch(pygit2.Repository(str(a)), "origin")
    after = git(a, "rev-parse", NOTES_REF)
    parents = git(a, "rev-list", "--parents", "-n", "1", after).split()[1:]
    assert before in parents and git(a, "rev-parse", tracking_ref("origin")) in parents
    note = git(a, "notes", "--ref=gpu-proof", "show", "HEAD")
    assert note.startswith(mine.text.rstrip("\n")), "our receipt's bytes stay first and unchanged"


def _push_rounds(args):
    root, rounds, worker = args
    repo = pygit2.Repository(root)
    observed = []
    commit = str(repo.head.target)
    for round_ in range(rounds):
        receipt = make_receipt(signer=f"w{worker}-{round_}@x")
        from gitproof.receipt import SignedReceipt, serialize_payload
        signed = SignedReceipt(receipt, serialize_payload(receipt),
                               "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")
        NotesStore(repo).add(commit, signed)
        push_notes(repo, "origin", attempts=60)
        observed.append(str(NotesStore(repo).tip().id))
    return observed


def test_eight_clones_pushing_concurrently_lose_nothing(world):
    clones = [str(world.clone(f"c{i}", hook=False)) for i in range(8)]
    rounds = 4
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        observed = pool.map(_push_rounds, [(c, rounds, i) for i, c in enumerate(clones)])
    final = world.remote_notes()
    remote = pygit2.Repository(str(world.remote))
    for tip in (t for tips in observed for t in tips):
        assert tip == final or remote.descendant_of(final, tip), "the remote notes ref was rewritten"
    checker = world.clone("checker", hook=False)
    fetch(pygit2.Repository(str(checker)), "origin")
    expected = sorted(f"w{w}-{r}@x" for w in range(8) for r in range(rounds))
    assert signers_on(checker) == expected


def test_push_killed_midway_leaves_local_receipts_and_the_next_push_completes(world):
    a = world.clone("a", hook=False)
    signed = attach_receipt(a, world.key("alice@example.com"))
    local_tip = git(a, "rev-parse", NOTES_REF)
    gate = world.root / "gate"
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\ntouch {gate}\nsleep 60\n")
    hook.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-c",
                             "import pygit2, sys; from gitproof.sync import push_notes; "
                             "push_notes(pygit2.Repository(sys.argv[1]), 'origin')", str(a)],
                            start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not gate.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert gate.exists(), "the push never reached the remote"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    subprocess.run(["pkill", "-f", "sleep 60"], check=False)
    assert git(a, "rev-parse", NOTES_REF) == local_tip
    assert world.remote_notes() == ""
    hook.unlink()
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    assert world.remote_notes() == local_tip
    assert signers_on(a) == [signed.receipt.signer]


def test_garbage_and_foreign_notes_on_the_remote_do_not_break_anything(world):
    vandal = world.clone("vandal", hook=False)
    git(vandal, "notes", "--ref=gpu-proof", "add", "-m", "this is not a receipt", "HEAD")
    write_files(vandal, {"docs.md": "x\n"})
    commit_all(vandal, "docs")
    junk = world.root / "junk.bin"
    junk.write_bytes(b"\x00binary\xff\x01junk\n")
    git(vandal, "notes", "--ref=gpu-proof", "add", "-F", str(junk), "HEAD")
    git(vandal, "push", "-q", "origin", "main", NOTES_REF)
    a = world.clone("a", hook=False)
    git(a, "reset", "-q", "--hard", "HEAD~1")
    attach_receipt(a, world.key("alice@example.com"))
    result = fetch(pygit2.Repository(str(a)), "origin")
    assert result.kind == "merge" and len(result.bad_entries) >= 1
    assert any("kept an entry this version cannot read" in bad for bad in result.bad_entries)
    repo = pygit2.Repository(str(a))
    junk_note = repo[NotesStore(repo).tip().tree[git(a, "rev-parse", "origin/main")].id].data
    assert junk_note == junk.read_bytes()  # not ours to read, not ours to delete: kept byte for byte
    verify = gp(a, "verify", "HEAD", "origin/main")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    show = gp(a, "show", "origin/main~0")
    assert "Traceback" not in show.stderr
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed


# -- sync never loses a receipt -----------------------------------------------------------------

def note_bytes(root: Path, rev: str = "HEAD") -> bytes:
    return subprocess.run(["git", "notes", "--ref=gpu-proof", "show", rev], cwd=root, capture_output=True,
                          check=True).stdout


def test_a_receipt_removed_on_the_remote_by_plain_git_comes_back(world):
    a = world.clone("a", hook=False)
    attach_receipt(a, world.key("alice@example.com"))
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    kept = note_bytes(a)
    vandal = world.clone("vandal", hook=False)
    git(vandal, "fetch", "-q", "origin", f"{NOTES_REF}:{NOTES_REF}")
    git(vandal, "notes", "--ref=gpu-proof", "remove", "HEAD")
    git(vandal, "push", "-q", "origin", NOTES_REF)  # a fast-forward: no force needed
    assert git(world.remote, "notes", "--ref=gpu-proof", "list", check=False) == ""

    result = fetch(pygit2.Repository(str(a)), "origin")
    assert result.kind == "merge", result.describe()  # not a fast-forward to the loss
    assert note_bytes(a) == kept
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    assert git(world.remote, "notes", "--ref=gpu-proof", "show", "HEAD").encode() + b"\n" == kept


FUTURE = (b"gpu-proof receipt v2\nverdict: passed\nsomething: new\n-----BEGIN SSH SIGNATURE-----\n"
          b"U1NIU0lH\n-----END SSH SIGNATURE-----\n")


def test_a_receipt_of_a_newer_format_is_kept_byte_for_byte_through_merge_and_push(world):
    newer = world.clone("newer", hook=False)
    attach_receipt(newer, world.key("alice@example.com"))
    note = world.root / "future.txt"
    note.write_bytes(note_bytes(newer) + b"\n" + FUTURE)
    git(newer, "notes", "--ref=gpu-proof", "add", "-f", "-F", str(note), "HEAD")
    git(newer, "push", "-q", "origin", NOTES_REF)

    older = world.clone("older", "bob@example.com", hook=False)
    attach_receipt(older, world.key("bob@example.com"), principal="bob@example.com")
    result = fetch(pygit2.Repository(str(older)), "origin")
    assert result.kind == "merge"
    assert FUTURE in note_bytes(older) and signers_on(older) == ["alice@example.com", "bob@example.com"]
    assert push_notes(pygit2.Repository(str(older)), "origin").pushed
    on_remote = subprocess.run(["git", "notes", "--ref=gpu-proof", "show", "HEAD"], cwd=world.remote,
                               capture_output=True, check=True).stdout
    assert FUTURE in on_remote


@pytest.mark.parametrize("target", ["blob", "code commit"])
def test_a_remote_notes_ref_that_is_not_notes_is_an_error_and_touches_nothing(world, target):
    a = world.clone("a", hook=False)
    attach_receipt(a, world.key("alice@example.com"))
    before = git(a, "rev-parse", NOTES_REF)
    thing = (git(world.remote, "hash-object", "-w", "--stdin", input="not notes\n") if target == "blob"
             else git(world.remote, "rev-parse", "refs/heads/main"))
    git(world.remote, "update-ref", NOTES_REF, thing)
    with pytest.raises(SyncError) as refused:
        fetch(pygit2.Repository(str(a)), "origin")
    assert "local receipts are untouched" in str(refused.value)
    assert git(a, "rev-parse", NOTES_REF) == before
    via_cli = gp(a, "fetch", "origin")
    assert via_cli.returncode == 2 and "Traceback" not in via_cli.stderr and "not" in via_cli.stderr


def test_a_receipt_buried_in_other_text_is_not_held(world):
    a = world.clone("a", hook=False)
    signed = attach_receipt(a, world.key("alice@example.com"))
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    vandal = world.clone("vandal", hook=False)
    git(vandal, "fetch", "-q", "origin", f"+{NOTES_REF}:{NOTES_REF}")
    buried = world.root / "buried.txt"
    buried.write_bytes(b"x" + signed.text.encode())  # still contains every byte, no longer a receipt
    git(vandal, "notes", "--ref=gpu-proof", "add", "-f", "-F", str(buried), "HEAD")
    git(vandal, "push", "-q", "origin", NOTES_REF)  # a fast-forward
    result = fetch(pygit2.Repository(str(a)), "origin")
    assert result.kind == "merge"
    assert signers_on(a) == ["alice@example.com"]
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    checker = world.clone("checker", hook=False)
    fetch(pygit2.Repository(str(checker)), "origin")
    assert signers_on(checker) == ["alice@example.com"]


def test_a_second_note_for_the_same_commit_that_would_shadow_the_first_is_refused(world):
    a = world.clone("a", hook=False)
    attach_receipt(a, world.key("alice@example.com"))
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    remote = pygit2.Repository(str(world.remote))
    tip = remote.references[NOTES_REF].peel(pygit2.Commit)
    [(commit_id, (blob, path))] = __import__("gitproof.notes", fromlist=["walk_notes_tree"]).walk_notes_tree(
        tip.tree, "", "").items()
    builder = remote.TreeBuilder(tip.tree)  # the receipt in fan-out, junk under the flat name
    fanout = remote.TreeBuilder()
    fanout.insert(commit_id[2:], remote[blob].id, pygit2.enums.FileMode.BLOB)
    builder.insert(commit_id[:2], fanout.write(), pygit2.enums.FileMode.TREE)
    builder.insert(commit_id, remote.create_blob(b"junk\n"), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("v", "v@example.com")
    remote.create_commit(NOTES_REF, sig, sig, "shadow", builder.write(), [tip.id])
    b = world.clone("b", "bob@example.com", hook=False)
    with pytest.raises(SyncError, match="two notes for one commit"):
        fetch(pygit2.Repository(str(b)), "origin")


# -- in-toto attestations travel with the receipts ------------------------------------------------

def attestation_lines(root: Path, rev: str = "HEAD") -> list[bytes]:
    shown = subprocess.run(["git", "notes", f"--ref={ATTESTATIONS_REF}", "show", rev], cwd=root,
                           capture_output=True)
    return [line for line in shown.stdout.split(b"\n") if line.strip()] if shown.returncode == 0 else []


def test_attestations_reach_a_fresh_clone_that_verifies_them(world):
    a = world.clone("a", hook=False)
    key = world.key("alice@example.com")
    line = attest(a, key, attach_receipt(a, key))
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    assert attestation_lines(world.remote) == [line]
    fresh = world.clone("fresh", hook=False)
    verify = gp(fresh, "verify", "--fetch", "origin", "--attestations")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert git(fresh, "rev-parse", tracking_ref("origin", ATTESTATIONS_REF)) == \
        git(fresh, "rev-parse", ATTESTATIONS_REF)


def test_attestations_from_two_clones_merge_as_a_union(world):
    a = world.clone("a", hook=False)
    b = world.clone("b", "bob@example.com", hook=False)
    alice, bob = world.key("alice@example.com"), world.key("bob@example.com")
    mine = attest(a, alice, attach_receipt(a, alice))
    theirs = attest(b, bob, attach_receipt(b, bob, principal="bob@example.com"))
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    result = push_notes(pygit2.Repository(str(b)), "origin")
    assert result.pushed and result.merges[0].attestations.kind == "merge"
    assert sorted(attestation_lines(world.remote)) == sorted([mine, theirs])
    merged = fetch(pygit2.Repository(str(a)), "origin")
    assert merged.attestations.kind == "fast-forward" and "attestations" in merged.to_json()
    assert attestation_lines(b) == attestation_lines(a) == [theirs, mine]  # b's merge kept its own first


def test_an_attestation_removed_on_the_remote_comes_back(world):
    a = world.clone("a", hook=False)
    key = world.key("alice@example.com")
    line = attest(a, key, attach_receipt(a, key))
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    vandal = world.clone("vandal", hook=False)
    git(vandal, "fetch", "-q", "origin", f"{ATTESTATIONS_REF}:{ATTESTATIONS_REF}")
    git(vandal, "notes", f"--ref={ATTESTATIONS_REF}", "remove", "HEAD")
    git(vandal, "push", "-q", "origin", ATTESTATIONS_REF)
    assert attestation_lines(world.remote) == []
    assert fetch(pygit2.Repository(str(a)), "origin").attestations.kind == "merge"
    assert attestation_lines(a) == [line]
    assert push_notes(pygit2.Repository(str(a)), "origin").pushed
    assert attestation_lines(world.remote) == [line]


def test_a_remote_without_attestations_is_fine_and_a_broken_one_never_stops_the_receipts(world):
    a = world.clone("a", hook=False)
    attach_receipt(a, world.key("alice@example.com"))
    push_notes(pygit2.Repository(str(a)), "origin")
    b = world.clone("b", hook=False)
    result = fetch(pygit2.Repository(str(b)), "origin")
    assert result.kind == "fast-forward" and result.attestations is None
    blob = git(world.remote, "hash-object", "-w", "--stdin", input="not notes\n")
    git(world.remote, "update-ref", ATTESTATIONS_REF, blob)
    c = world.clone("c", hook=False)
    result = fetch(pygit2.Repository(str(c)), "origin")
    assert result.kind == "fast-forward" and result.attestations.kind == "refused"
    assert "attestations: not merged" in result.describe() and signers_on(c) == ["alice@example.com"]
    assert git(c, "rev-parse", "-q", "--verify", ATTESTATIONS_REF, check=False) == ""


def test_git_gpu_proof_push_carries_attestations_with_the_branch(world):
    a = world.clone("a", hook=False)
    write_files(a, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    commit_all(a, "swap")
    key = world.key("alice@example.com")
    line = attest(a, key, attach_receipt(a, key))
    pushed = gp(a, "push", "origin")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert attestation_lines(world.remote) == [line]


def test_a_remote_attestations_ref_that_is_not_notes_never_holds_back_the_receipts_or_the_branch(world):
    a = world.clone("a")
    key = world.key("alice@example.com")
    line = attest(a, key, attach_receipt(a, key))
    code = git(world.remote, "rev-parse", "refs/heads/main")
    git(world.remote, "update-ref", ATTESTATIONS_REF, code)  # a code commit, not a notes history
    write_files(a, {"README.md": "docs\n"})
    commit_all(a, "docs")
    hooked = push(a, "origin", "main")
    assert hooked.returncode == 0, hooked.stderr
    assert hooked.stderr.count(f"warning: {ATTESTATIONS_REF} was left out of the push to origin") == 1
    assert "is not a notes history" in hooked.stderr and "git push --force origin" in hooked.stderr
    assert git(world.remote, "rev-parse", "refs/heads/main") == git(a, "rev-parse", "HEAD")
    assert world.remote_notes() == git(a, "rev-parse", NOTES_REF)
    assert git(world.remote, "rev-parse", ATTESTATIONS_REF) == code
    write_files(a, {"README.md": "more docs\n"})
    commit_all(a, "more docs")
    attach_receipt(a, key)
    pushed = gp(a, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stderr.count(f"{ATTESTATIONS_REF} was left out") == 1
    assert git(world.remote, "rev-parse", "refs/heads/main") == git(a, "rev-parse", "HEAD")
    assert world.remote_notes() == git(a, "rev-parse", NOTES_REF)
    repaired = push(a, "--force", "origin", ATTESTATIONS_REF)  # what the warning says to do
    assert repaired.returncode == 0, repaired.stderr
    assert attestation_lines(world.remote, "HEAD~2") == [line]


def test_a_remote_that_refuses_the_attestations_ref_still_gets_the_receipts(world):
    a = world.clone("a", hook=False)
    key = world.key("alice@example.com")
    attest(a, key, attach_receipt(a, key))
    hook = world.remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nif grep -q {ATTESTATIONS_REF}; then echo no attestations; exit 1; fi\n")
    hook.chmod(0o755)
    result = push_notes(pygit2.Repository(str(a)), "origin")
    assert result.pushed and world.remote_notes() == git(a, "rev-parse", NOTES_REF)
    [warning] = result.warnings
    assert "origin refused it (pre-receive hook declined)" in warning and "ask whoever runs origin" in warning
    assert git(world.remote, "rev-parse", "-q", "--verify", ATTESTATIONS_REF, check=False) == ""


def test_attestations_that_go_through_give_no_warning(world):
    a = world.clone("a", hook=False)
    key = world.key("alice@example.com")
    attest(a, key, attach_receipt(a, key))
    result = push_notes(pygit2.Repository(str(a)), "origin")
    assert result.pushed and result.warnings == []
