"""The pre-push hook on scripted histories: real pushes to a real bare remote."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest

from gitproof.attestation_notes import ATTESTATIONS_REF
from gitproof.notes import NOTES_REF
from gitproof.pending import PendingStore
from tests.attestations import attest
from tests.helpers import change_docs, change_kernel, git, write_files
from tests.receipts import attach_receipt
from tests.remotes import World, gp, push, tool_env

ALICE = "alice@example.com"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@pytest.fixture
def clone(world: World) -> Path:
    return world.clone("work")




def remote_has(world: World, ref: str) -> str:
    return git(world.remote, "rev-parse", "-q", "--verify", ref, check=False)


def test_unvalidated_gpu_change_is_refused_with_reason_and_command(world, clone):
    sha = change_kernel(clone, message="kernel: faster add")
    result = push(clone, "origin", "main")
    assert result.returncode != 0
    err = result.stderr
    assert "push refused" in err and sha[:10] in err and "kernel: faster add" in err
    assert "why: no receipt" in err
    assert "GPU paths changed: src/kernels.py" in err
    assert "run: git gpu-proof run" in err
    assert remote_has(world, "refs/heads/main") != sha


def test_after_a_run_the_same_push_succeeds_and_ci_can_verify(world, clone):
    change_kernel(clone)
    assert push(clone, "origin", "main").returncode != 0
    run = gp(clone, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    result = push(clone, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert "1 ref(s) with GPU changes validated; receipts sent to origin" in result.stderr
    assert remote_has(world, NOTES_REF)
    ci = world.root / "ci"
    git(world.root, "clone", "-q", str(world.remote), str(ci))
    verify = gp(ci, "verify", "--fetch", "origin", "--trust-ref", "origin/main")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_docs_only_push_needs_no_new_receipt(world, clone):
    attach_receipt(clone, world.key(ALICE))
    change_docs(clone)
    result = push(clone, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert "without GPU changes" in result.stderr


def test_deletions_and_tags_pass(world, clone):
    assert push(clone, "origin", "main:refs/heads/doomed").returncode == 0
    assert push(clone, "origin", ":refs/heads/doomed").returncode == 0
    assert remote_has(world, "refs/heads/doomed") == ""
    change_kernel(clone)
    git(clone, "tag", "v-unvalidated")
    assert push(clone, "origin", "v-unvalidated").returncode == 0


def test_new_branch_compares_with_what_the_remote_already_has(world, clone):
    git(clone, "switch", "-q", "-c", "feature")
    change_docs(clone)
    assert push(clone, "origin", "feature").returncode == 0
    git(clone, "switch", "-q", "-c", "gpu-feature")
    change_kernel(clone)
    result = push(clone, "origin", "gpu-feature")
    assert result.returncode != 0 and "push refused" in result.stderr


def test_validated_merge_and_unvalidated_merge(world, clone):
    attach_receipt(clone, world.key(ALICE))
    git(clone, "switch", "-q", "-c", "side")
    change_kernel(clone, "return b + a", "side kernel")
    git(clone, "switch", "-q", "main")
    change_docs(clone)
    git(clone, "merge", "-q", "--no-edit", "side")
    assert push(clone, "origin", "main").returncode != 0
    attach_receipt(clone, world.key(ALICE))
    assert push(clone, "origin", "main").returncode == 0


def test_rebase_that_keeps_the_gpu_trees_keeps_the_validation(world, clone):
    attach_receipt(clone, world.key(ALICE))
    change_kernel(clone)
    attach_receipt(clone, world.key(ALICE))
    other = world.clone("other")
    change_docs(other, "upstream docs\n", "upstream docs")
    assert push(other, "origin", "main").returncode == 0
    git(clone, "pull", "-q", "--rebase", "origin", "main")
    # Nothing copies the note to the rebased commit: the receipt is found by its trees.
    assert "gpu-proof receipt v1" not in git(clone, "log", "--notes=gpu-proof", "-1")
    result = push(clone, "origin", "main")
    assert result.returncode == 0, result.stderr


def test_force_push_over_an_unknown_remote_tip(world, clone):
    other = world.clone("other")
    change_docs(other, "theirs\n", "their docs")
    assert push(other, "origin", "main").returncode == 0
    change_kernel(clone, "return a * 1 + b", "my kernel")
    assert push(clone, "--force", "origin", "main").returncode != 0
    attach_receipt(clone, world.key(ALICE))
    result = push(clone, "--force", "origin", "main")
    assert result.returncode == 0, result.stderr
    assert git(world.remote, "rev-parse", "main") == git(clone, "rev-parse", "HEAD")


def test_every_mode_checks_each_gpu_commit(world, clone):
    first = change_kernel(clone, "return a + b + 1", "first change")
    change_kernel(clone, "return a + b + 2", "second change")
    attach_receipt(clone, world.key(ALICE))
    assert push(clone, "origin", "main", "--dry-run").returncode == 0
    (clone / "pyproject.toml").write_text(
        '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\npush_check = "every"\n')
    result = push(clone, "origin", "main")
    assert result.returncode != 0
    assert first[:10] in result.stderr and "first change" in result.stderr


def test_pending_receipt_is_attached_at_commit_time_and_pushed(world, clone):
    write_files(clone, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    assert gp(clone, "run").returncode == 0
    assert PendingStore(pygit2.Repository(str(clone))).list()
    git(clone, "add", "-A")
    committed = subprocess.run(["git", "commit", "-q", "-m", "commit what was tested"], cwd=clone,
                               env=tool_env(), capture_output=True, text=True)
    assert "attached pending receipt (passed)" in committed.stderr  # the post-commit hook did it
    commit = git(clone, "rev-parse", "HEAD")
    assert not PendingStore(pygit2.Repository(str(clone))).list()
    assert "gpu-proof receipt v1" in git(clone, "notes", "--ref=gpu-proof", "show", commit)
    assert push(clone, "origin", "main").returncode == 0


def test_pending_receipt_is_attached_at_push_time_without_the_commit_hook(world, clone):
    write_files(clone, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    assert gp(clone, "run").returncode == 0
    git(clone, "-c", "core.hooksPath=/dev/null", "commit", "-qam", "no hooks")
    assert PendingStore(pygit2.Repository(str(clone))).list()
    result = push(clone, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert "1 pending receipt(s) attached" in result.stderr


def test_hook_input_errors_and_reentry(world, clone):
    bad = gp(clone, "hook", "pre-push", "origin", "url", input="not four fields\n")
    assert bad.returncode == 2 and "pre-push input line 1" in bad.stderr
    reentry = gp(clone, "hook", "pre-push", "origin", "url", input="garbage\n", GITPROOF_SYNC="1")
    assert reentry.returncode == 0


def test_pre_commit_framework_variables_are_read_when_stdin_is_empty(world, clone):
    sha = change_kernel(clone)
    base = git(clone, "rev-parse", "origin/main")
    result = gp(clone, "hook", "pre-push", "origin", input="", PRE_COMMIT_TO_REF=sha,
                PRE_COMMIT_FROM_REF=base, PRE_COMMIT_REMOTE_BRANCH="refs/heads/main",
                PRE_COMMIT_REMOTE_NAME="origin")
    assert result.returncode == 1 and "push refused" in result.stderr


@pytest.mark.parametrize("from_ref, to_ref", [("HEAD~1", "HEAD"), ("origin/main", "main"),
                                               ("refs/remotes/origin/main", "HEAD^{commit}")])
def test_pre_commit_refs_may_be_revisions_not_only_commit_ids(world, clone, from_ref, to_ref):
    """`pre-commit run --hook-stage pre-push --from-ref HEAD~1 --to-ref HEAD` passes them as typed."""
    sha = change_kernel(clone)
    result = gp(clone, "hook", "pre-push", "origin", input="", PRE_COMMIT_FROM_REF=from_ref,
                PRE_COMMIT_TO_REF=to_ref, PRE_COMMIT_REMOTE_BRANCH="refs/heads/main")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "push refused" in result.stderr and sha[:10] in result.stderr
    run = gp(clone, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    accepted = gp(clone, "hook", "pre-push", "origin", input="", PRE_COMMIT_FROM_REF=from_ref,
                  PRE_COMMIT_TO_REF=to_ref, PRE_COMMIT_REMOTE_BRANCH="refs/heads/main")
    assert accepted.returncode == 0, accepted.stderr
    assert "1 ref(s) with GPU changes validated" in accepted.stderr


@pytest.mark.parametrize("variables, named", [
    ({"PRE_COMMIT_FROM_REF": "HEAD~99", "PRE_COMMIT_TO_REF": "HEAD"}, "PRE_COMMIT_FROM_REF='HEAD~99'"),
    ({"PRE_COMMIT_FROM_REF": "no-such-branch", "PRE_COMMIT_TO_REF": "HEAD"},
     "PRE_COMMIT_FROM_REF='no-such-branch'"),
    ({"PRE_COMMIT_TO_REF": "HEAD^{tree}"}, "PRE_COMMIT_TO_REF='HEAD^{tree}'"),
    ({"PRE_COMMIT_LOCAL_BRANCH": "refs/heads/gone"}, "PRE_COMMIT_LOCAL_BRANCH='refs/heads/gone'"),
])
def test_unresolvable_pre_commit_refs_are_a_clear_error(world, clone, variables, named):
    change_kernel(clone)
    result = gp(clone, "hook", "pre-push", "origin", input="",
                PRE_COMMIT_REMOTE_BRANCH="refs/heads/main", **variables)
    assert result.returncode == 2, result.stderr
    assert f"gpu-proof: error: {named} does not name a commit in this repository" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_remote_commit_we_never_fetched_is_not_an_error(world, clone):
    change_kernel(clone)
    result = gp(clone, "hook", "pre-push", "origin", input="", PRE_COMMIT_FROM_REF="ab" * 20,
                PRE_COMMIT_TO_REF="HEAD", PRE_COMMIT_REMOTE_BRANCH="refs/heads/main")
    assert result.returncode == 1 and "push refused" in result.stderr and "Traceback" not in result.stderr


def test_pre_push_input_with_something_else_than_commit_ids_is_refused(world, clone):
    result = gp(clone, "hook", "pre-push", "origin", "url", input="refs/heads/main HEAD~1 refs/heads/main HEAD\n")
    assert result.returncode == 2 and "pre-push input line 1 is not" in result.stderr
    assert "Traceback" not in result.stderr


def test_pre_commit_root_commit_push_falls_back_to_the_local_branch(world, clone):
    change_kernel(clone)
    result = gp(clone, "hook", "pre-push", "origin", input="", PRE_COMMIT_LOCAL_BRANCH="main",
                PRE_COMMIT_REMOTE_BRANCH="refs/heads/fresh", PRE_COMMIT_REMOTE_NAME="origin")
    assert result.returncode == 1 and "push refused" in result.stderr


def test_outer_push_carrying_the_notes_ref_is_not_pushed_twice(world, clone):
    change_kernel(clone)
    attach_receipt(clone, world.key(ALICE))
    result = gp(clone, "push")
    assert result.returncode == 0, result.stderr
    assert "receipts sent to" not in result.stderr
    assert remote_has(world, NOTES_REF) == git(clone, "rev-parse", NOTES_REF)
    assert git(world.remote, "rev-parse", "main") == git(clone, "rev-parse", "HEAD")


def test_garbage_remote_notes_do_not_break_the_hook(world, clone):
    vandal = world.clone("vandal", hook=False)
    git(vandal, "notes", "--ref=gpu-proof", "add", "-m", "junk", "HEAD")
    git(vandal, "push", "-q", "origin", NOTES_REF)
    change_kernel(clone)
    attach_receipt(clone, world.key(ALICE))
    result = push(clone, "origin", "main")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_push_of_only_the_receipts(world, clone):
    attach_receipt(clone, world.key(ALICE))
    result = gp(clone, "push", "origin", NOTES_REF)
    assert result.returncode == 0, result.stderr
    assert remote_has(world, NOTES_REF) == git(clone, "rev-parse", NOTES_REF)


def test_push_with_a_rejected_branch_reports_git_at_once(world, clone):
    other = world.clone("other")
    change_docs(other, "theirs\n", "their docs")
    assert push(other, "origin", "main").returncode == 0
    change_docs(clone, "mine\n", "my docs")
    attach_receipt(clone, world.key(ALICE))
    result = gp(clone, "push")
    assert result.returncode == 1
    assert "kept changing" not in result.stderr and "main" in result.stderr
    assert "non-fast-forward" in result.stderr or "fetch first" in result.stderr


def test_run_with_a_key_file_outside_the_checkout(world, clone):
    change_kernel(clone)
    git(clone, "config", "--unset", "user.signingKey")
    result = gp(clone, "run", "--key", str(world.key(ALICE).private))
    assert result.returncode == 0, result.stdout + result.stderr
    assert push(clone, "origin", "main").returncode == 0


def test_tip_is_compared_with_the_remote_ref_not_any_older_base(world, clone):
    """Going back to older GPU code is a GPU change for that ref, and needs a receipt."""
    base = git(clone, "rev-parse", "HEAD")
    change_kernel(clone)
    assert push(clone, "--no-verify", "origin", "main").returncode == 0
    git(clone, "reset", "-q", "--hard", base)
    change_docs(clone, "back to the old kernel\n", "docs on the old kernel")
    result = push(clone, "--force", "origin", "main")
    assert result.returncode != 0 and "push refused" in result.stderr


# -- a push never takes receipts from the remote --------------------------------------------------

def test_deleting_the_remote_notes_ref_is_refused(world, clone):
    attach_receipt(clone, world.key("alice@example.com"))
    assert gp(clone, "push", "origin", NOTES_REF).returncode == 0
    on_remote = remote_has(world, NOTES_REF)
    refused = push(clone, "origin", f":{NOTES_REF}")
    assert refused.returncode != 0
    assert "push refused: it would lose receipts on origin" in refused.stderr
    assert f"it deletes {NOTES_REF} on the remote" in refused.stderr
    assert remote_has(world, NOTES_REF) == on_remote


def test_deleting_or_replacing_the_remote_attestations_is_refused(world, clone):
    signed = attach_receipt(clone, world.key("alice@example.com"))
    attest(clone, world.key("alice@example.com"), signed)
    assert gp(clone, "push", "origin", NOTES_REF).returncode == 0
    on_remote = remote_has(world, ATTESTATIONS_REF)
    assert on_remote
    refused = push(clone, "origin", f":{ATTESTATIONS_REF}")
    assert refused.returncode != 0
    assert f"it deletes {ATTESTATIONS_REF} on the remote, and every attestation in it" in refused.stderr
    lacking = git(clone, "commit-tree", "-m", "empty attestations",
                  git(clone, "mktree", input=""))  # a notes commit with no envelope at all
    refused = push(clone, "--force", "origin", f"{lacking}:{ATTESTATIONS_REF}")
    assert refused.returncode != 0 and "it drops 1 attestation(s) the remote has" in refused.stderr
    assert remote_has(world, ATTESTATIONS_REF) == on_remote


def test_a_forced_push_of_notes_lacking_the_remotes_receipts_is_refused(world, clone):
    other = world.clone("other", "bob@example.com")
    attach_receipt(other, world.key("bob@example.com"), principal="bob@example.com")
    assert gp(other, "push", "origin", NOTES_REF).returncode == 0
    on_remote = remote_has(world, NOTES_REF)
    attach_receipt(clone, world.key("alice@example.com"))  # never merged with bob's
    git(clone, "fetch", "-q", "origin", f"+{NOTES_REF}:refs/remote-notes/origin/gpu-proof")
    refused = push(clone, "--force", "origin", NOTES_REF)
    assert refused.returncode != 0
    assert "it drops 1 receipt(s) the remote has" in refused.stderr and "git gpu-proof fetch" in refused.stderr
    assert remote_has(world, NOTES_REF) == on_remote
    from gitproof.hook import RefUpdate, receipts_lost

    repo = pygit2.Repository(str(clone))
    blind = RefUpdate(NOTES_REF, git(clone, "rev-parse", NOTES_REF), NOTES_REF, "f" * 40)
    assert "never merged with the remote's own" in receipts_lost(repo, [blind], NOTES_REF)[0]
    assert gp(clone, "fetch", "origin").returncode == 0
    assert push(clone, "origin", NOTES_REF).returncode == 0  # merged: nothing lost, accepted


def test_a_remote_notes_ref_at_a_blob_is_a_clear_refusal_not_a_traceback(world, clone):
    attach_receipt(clone, world.key("alice@example.com"))
    blob = git(world.remote, "hash-object", "-w", "--stdin", input="not notes\n")
    git(world.remote, "update-ref", NOTES_REF, blob)
    git(clone, "fetch", "-q", "origin", f"+{NOTES_REF}:refs/remote-notes/origin/gpu-proof")
    git(clone, "cat-file", "-e", blob)  # the blob is here now
    refused = push(clone, "origin", NOTES_REF)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "is not a notes commit" in refused.stderr
