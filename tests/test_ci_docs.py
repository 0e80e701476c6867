"""The commands of docs/ci.md, run as written, in fresh clones of a real bare remote.

Every clone here is made with plain ``git clone``; the "CI" clones get no hook,
no notes and no key, just like a CPU-only runner. The shell steps that
docs/ci.md shows for the GPU runner are kept below as strings, checked to
appear in the document verbatim, and run with ``bash``.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NOTES_REF, NotesStore
from tests.helpers import change_kernel, commit_all, generate_key, git, write_files
from tests.receipts import attach_receipt
from tests.remotes import World, gp, push, tool_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "ci.md"
ALICE = "alice@example.com"
CI_PRINCIPAL = "ci-gpu@example.org"

# docs/ci.md, "The check": the one command a CPU-only CI job runs.
CI_VERIFY = ("verify", "--fetch", "origin", "--trust-ref", "refs/remotes/origin/main", "HEAD")
# docs/ci.md, GPU runner: write the key from the secret into a file created 0600.
WRITE_KEY = "\n".join([
    'key="$RUNNER_TEMP/gpu-proof-key"',
    "(umask 077 && printf '%s\\n' \"$GPU_PROOF_SSH_KEY\" > \"$key\")",
    'git config user.signingKey "$key"',
])
# docs/ci.md, GPU runner: push only the notes ref, never forced; on rejection fetch and retry.
PUSH_NOTES = "git gpu-proof push origin refs/notes/gpu-proof"
# docs/ci.md, GPU runner: clean up.
REMOVE_KEY = """rm -f "$RUNNER_TEMP/gpu-proof-key"
git config --unset user.signingKey || true"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def shows(snippet: str, text: str) -> bool:
    """``snippet`` appears in ``text`` line for line, whatever the indentation (YAML blocks indent it)."""
    flat = lambda s: "\n".join(line.strip() for line in s.splitlines())  # noqa: E731
    return flat(snippet) in flat(text)


def fresh_clone(world: World, name: str, *extra: str) -> Path:
    """What a CI runner has: a plain clone, no hook, no notes, no signing key."""
    path = world.root / name
    # git ignores --depth for a plain local path; a file:// URL behaves like a network remote.
    source = world.remote.as_uri() if "--depth" in extra else str(world.remote)
    git(world.root, "clone", "-q", *extra, source, str(path))
    return path


def has_ref(root: Path, ref: str) -> bool:
    return bool(git(root, "rev-parse", "-q", "--verify", ref, check=False))



def ci_verify_json(clone: Path, rev: str = "HEAD", trust_ref: bool = True) -> tuple[int, dict]:
    args = ["verify", "--json", "--fetch", "origin"]
    if trust_ref:
        args += ["--trust-ref", "refs/remotes/origin/main"]
    result = gp(clone, *args, rev)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def reason_codes(report: dict) -> list[str]:
    return [r["code"] for r in report["results"][0]["reasons"]]


def bash(cwd: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=tool_env(**env),
                          capture_output=True, text=True, timeout=120)


def log_pushed_refs(world: World) -> Path:
    """A post-receive hook on the bare remote that appends each received ref name, in order."""
    log = world.root / "received.log"
    hook = world.remote / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\nwhile read old new ref; do echo \"$ref\" >> '{log}'; done\n")
    hook.chmod(0o755)
    return log


# -- the document itself --------------------------------------------------------------


def test_the_document_shows_the_commands_these_tests_run():
    text = doc_text()
    assert "git gpu-proof " + " ".join(CI_VERIFY) in text
    for snippet in (WRITE_KEY, PUSH_NOTES, REMOVE_KEY):
        assert shows(snippet, text), snippet
    for needed in ("fetch-depth: 0", "GIT_DEPTH: \"0\"", "github.event.pull_request.head.sha",
                   "git gpu-proof run --mode ci-gpu --principal", "if: always()",
                   'namespaces="gpu-proof"', "git gpu-proof doctor", "--key-env"):
        assert needed in text, needed


# -- developer side, then the CPU-only check ------------------------------------------------


def test_developer_is_refused_then_runs_and_pushes_and_a_fresh_clone_verifies(world):
    received = log_pushed_refs(world)
    dev = world.clone("dev")
    sha = change_kernel(dev, message="kernel: faster add")

    refused = push(dev, "origin", "main")
    assert refused.returncode != 0
    assert "push refused" in refused.stderr and sha[:10] in refused.stderr
    assert git(world.remote, "rev-parse", "main") != sha
    assert world.remote_notes() == ""

    run = gp(dev, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receipt passed" in run.stdout

    pushed = push(dev, "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert "receipts sent to origin" in pushed.stderr
    assert git(world.remote, "rev-parse", "main") == sha
    # The hook pushed the notes ref in its own push, before git sent the branch.
    order = received.read_text().split()
    assert order == [NOTES_REF, "refs/heads/main"], order

    ci = fresh_clone(world, "ci")
    assert not has_ref(ci, NOTES_REF), "a fresh clone has no receipts of its own"
    without_fetch = gp(ci, "verify", "--trust-ref", "refs/remotes/origin/main", "HEAD")
    assert without_fetch.returncode == 1 and "unvalidated" in without_fetch.stdout

    check = gp(ci, *CI_VERIFY)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.split()[:2] == [sha[:10], "validated"], check.stdout
    assert "fast-forwarded to refs/remote-notes/origin/gpu-proof" in check.stderr
    assert git(ci, "rev-parse", NOTES_REF) == world.remote_notes()


def test_git_gpu_proof_push_without_the_hook_also_reaches_ci(world):
    dev = world.clone("dev", hook=False)
    sha = change_kernel(dev)
    attach_receipt(dev, world.key(ALICE))
    result = gp(dev, "push", "origin")
    assert result.returncode == 0, result.stderr
    assert f"pushed main and {NOTES_REF} to origin" in result.stdout
    ci = fresh_clone(world, "ci")
    assert git(ci, "rev-parse", "HEAD") == sha
    check = gp(ci, *CI_VERIFY)
    assert check.returncode == 0, check.stdout + check.stderr


def test_branch_pushed_without_receipts_fails_in_ci_with_no_receipt(world):
    dev = world.clone("dev")
    change_kernel(dev)
    attach_receipt(dev, world.key(ALICE))
    # The receipt stays local: the hook is skipped and git does not push notes by itself.
    assert push(dev, "--no-verify", "origin", "main").returncode == 0
    assert world.remote_notes() == ""
    ci = fresh_clone(world, "ci")
    check = gp(ci, *CI_VERIFY)
    assert check.returncode == 1
    assert "gpu-proof: no receipts at origin" in check.stderr
    assert "unvalidated" in check.stdout and "no receipt" in check.stdout
    # The fix the troubleshooting section gives: push the receipts, then CI passes.
    assert gp(dev, "push", "origin").returncode == 0
    assert gp(ci, *CI_VERIFY).returncode == 0


def test_a_same_tree_ancestor_validates_even_in_a_shallow_clone(world):
    """The receipt is found by its trees, so CI needs the notes, not the history."""
    dev = world.clone("dev")
    holder = change_kernel(dev)
    attach_receipt(dev, world.key(ALICE))
    write_files(dev, {"README.md": "docs only\n"})
    commit_all(dev, "docs only")
    assert push(dev, "origin", "main").returncode == 0

    full = fresh_clone(world, "ci-full")
    check = gp(full, *CI_VERIFY)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.split()[1] == "unchanged" and f"unchanged since {holder[:10]}" in check.stdout

    shallow = fresh_clone(world, "ci-shallow", "--depth", "1")
    assert git(shallow, "rev-parse", "--is-shallow-repository") == "true"
    code, report = ci_verify_json(shallow)
    assert code == 0, report
    # Without the history this clone cannot tell that the holder is an ancestor.
    assert report["results"][0]["validated_by"]["note_commit"] == holder


# -- pull requests cannot pick their own trust roots or policy ---------------------------------


def self_signed_pull_request(world: World) -> Path:
    """A pull request that adds its author's key to allowed_signers and signs its own receipt;
    returns a CI clone with it checked out."""
    contributor = world.clone("contributor", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    mallory = generate_key(world.root / "keys", "ed25519", "mallory")
    with (contributor / ".gpu-proof" / "allowed_signers").open("a") as handle:
        handle.write(f'mallory@example.com namespaces="gpu-proof" {mallory.public_line}\n')
    change_kernel(contributor, "return a - -b", "kernel change, self-signed")
    attach_receipt(contributor, mallory, principal="mallory@example.com")
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    ci = fresh_clone(world, "ci")
    git(ci, "switch", "-q", "--detach", "origin/pr")
    return ci


def test_pr_that_trusts_its_own_key_is_rejected_with_trust_ref(world):
    ci = self_signed_pull_request(world)
    code, report = ci_verify_json(ci)
    assert code == 1 and report["ok"] is False
    assert "signer-not-allowed" in reason_codes(report)

    # The same command without --trust-ref believes the pull request's own file.
    code, report = ci_verify_json(ci, trust_ref=False)
    assert code == 0 and report["results"][0]["receipt"]["signer"] == "mallory@example.com"


def test_pr_that_narrows_fingerprint_paths_is_judged_by_mains_policy(world):
    maintainer = world.clone("maintainer", hook=False)
    attach_receipt(maintainer, world.key(ALICE))  # main's current code is validated
    assert gp(maintainer, "push", "origin").returncode == 0

    contributor = world.clone("contributor", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    (contributor / "pyproject.toml").write_text(
        '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\nfingerprint_paths = ["tests"]\n')
    change_kernel(contributor, "return a + b + 1", "kernel change; only tests/ count now")
    assert push(contributor, "origin", "pr").returncode == 0

    ci = fresh_clone(world, "ci")
    git(ci, "switch", "-q", "--detach", "origin/pr")
    code, report = ci_verify_json(ci, trust_ref=False)
    assert code == 0 and report["results"][0]["state"] == "unchanged", "the dodge works without --trust-ref"

    code, report = ci_verify_json(ci)
    assert code == 1
    assert set(report["results"][0]["trees"]) == {"src", "tests"}
    assert "fingerprint-changed" in reason_codes(report)
    assert "src/kernels.py" in report["results"][0]["reasons"][0]["message"]


def test_pr_from_a_fork_fetches_receipts_from_the_fork(world):
    fork = world.root / "fork.git"
    git(world.root, "clone", "-q", "--bare", str(world.remote), str(fork))
    contributor = world.clone("contributor", hook=False)
    git(contributor, "remote", "set-url", "origin", str(fork))
    sha = change_kernel(contributor)
    attach_receipt(contributor, world.key(ALICE))
    assert gp(contributor, "push", "origin").returncode == 0
    assert world.remote_notes() == "", "the receipts are in the fork, not upstream"

    ci = fresh_clone(world, "ci")
    git(ci, "fetch", "-q", str(fork), "main")  # on GitHub: refs/pull/N/head, on GitLab: the MR ref
    upstream_only = gp(ci, *CI_VERIFY[:-1], sha)
    assert upstream_only.returncode == 1
    # docs/ci.md: fetch the fork's receipts first, then the usual command.
    fetched = gp(ci, "fetch", fork.as_uri())
    assert fetched.returncode == 0 and "fast-forwarded" in fetched.stdout, fetched.stdout + fetched.stderr
    from_fork = gp(ci, *CI_VERIFY[:-1], sha)
    assert from_fork.returncode == 0, from_fork.stdout + from_fork.stderr


def test_trust_ref_must_be_present_in_the_clone(world):
    ci = world.root / "ci"
    git(world.root, "clone", "-q", "--no-checkout", str(world.remote), str(ci))
    git(ci, "update-ref", "-d", "refs/remotes/origin/main")
    git(ci, "checkout", "-q", "--detach", "main")
    missing = gp(ci, *CI_VERIFY)
    assert missing.returncode == 2 and "--trust-ref refs/remotes/origin/main: no such ref" in missing.stderr
    git(ci, "fetch", "-q", "--no-tags", "origin", "+refs/heads/main:refs/remotes/origin/main")
    assert has_ref(ci, "refs/remotes/origin/main")
    assert gp(ci, *CI_VERIFY).returncode == 1  # found now; no receipts yet, so unvalidated, not 2


# -- how the pull request is merged decides whether main stays validated ----------------------


def validated_pr(world: World) -> tuple[Path, str]:
    contributor = world.clone("contributor", hook=False)
    git(contributor, "switch", "-q", "-c", "pr")
    sha = change_kernel(contributor, "return a + b + 2", "kernel change on a branch")
    attach_receipt(contributor, world.key(ALICE))
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    return contributor, sha


def test_merge_commit_of_an_up_to_date_branch_keeps_main_validated(world):
    _, pr_head = validated_pr(world)
    maintainer = world.clone("maintainer", hook=False)
    git(maintainer, "merge", "-q", "--no-ff", "-m", "Merge pull request", "origin/pr")
    assert push(maintainer, "origin", "main").returncode == 0
    ci = fresh_clone(world, "ci")
    code, report = ci_verify_json(ci)
    assert code == 0
    assert report["results"][0]["state"] == "unchanged"
    assert report["results"][0]["receipt"]["note_commit"] == pr_head


# -- GitHub's squash and rebase merges, cherry-picks: new commits, same code, no notes -----------


def advance_main_with_docs(world: World) -> None:
    """main moves on while the pull request waits, with a change outside the GPU code."""
    other = world.clone("other", hook=False)
    write_files(other, {"README.md": "main moved on\n"})
    commit_all(other, "docs on main")
    assert push(other, "origin", "main").returncode == 0


def merged_by_maintainer(world: World, how: str) -> Path:
    """What GitHub's merge button does, done with plain git by someone without gitproof."""
    maintainer = world.clone("maintainer", hook=False)
    git(maintainer, "fetch", "-q", "origin", "pr")
    if how == "squash":
        git(maintainer, "merge", "-q", "--squash", "origin/pr")
        commit_all(maintainer, "kernel change (#1)")
    elif how == "rebase":
        git(maintainer, "switch", "-q", "-c", "rebased", "origin/pr")
        git(maintainer, "rebase", "-q", "--force-rebase", "main")
        git(maintainer, "switch", "-q", "main")
        git(maintainer, "merge", "-q", "--ff-only", "rebased")
    assert push(maintainer, "origin", "main").returncode == 0
    return maintainer


@pytest.mark.parametrize("how", ["squash", "rebase"])
def test_a_squash_or_rebase_merge_keeps_main_validated_with_no_manual_step(world, how):
    contributor, pr_head = validated_pr(world)
    change_kernel(contributor, "return a + b + 2  # second commit of the pull request", "polish")
    pr_head = git(contributor, "rev-parse", "HEAD")
    attach_receipt(contributor, world.key(ALICE))
    assert gp(contributor, "push", "origin", "pr").returncode == 0
    advance_main_with_docs(world)
    merged_by_maintainer(world, how)

    ci = fresh_clone(world, "ci")
    assert git(ci, "notes", "--ref=gpu-proof", "list", "HEAD", check=False) == ""  # nobody copied a note
    code, report = ci_verify_json(ci)
    assert code == 0, report
    result = report["results"][0]
    assert result["state"] == "unchanged"
    assert result["validated_by"]["note_commit"] == result["validated_by"]["made_on"] == pr_head
    assert result["validated_by"]["relation"] == "same code"
    text = gp(ci, *CI_VERIFY)
    assert f"same GPU code as {pr_head[:10]}, where the receipt was made" in text.stdout

    # A real change to the GPU code afterwards is still refused.
    dev = world.clone("dev", hook=False)
    change_kernel(dev, "return a - b", "an untested kernel change")
    assert push(dev, "origin", "main").returncode == 0
    git(ci, "pull", "-q", "origin", "main")
    code, report = ci_verify_json(ci)
    assert code == 1 and reason_codes(report) == ["fingerprint-changed"]


def test_a_cherry_pick_to_a_release_branch_is_validated(world):
    maintainer = world.clone("maintainer", hook=False)
    git(maintainer, "push", "-q", "origin", "main:release")
    _, pr_head = validated_pr(world)
    git(maintainer, "fetch", "-q", "origin", "pr", "release")
    git(maintainer, "switch", "-q", "-c", "release", "origin/release")
    git(maintainer, "cherry-pick", pr_head)
    assert push(maintainer, "origin", "release").returncode == 0

    ci = fresh_clone(world, "ci", "--branch", "release")
    code, report = ci_verify_json(ci)
    assert code == 0, report
    assert report["results"][0]["validated_by"]["note_commit"] == pr_head


def test_an_amend_without_notes_rewrite_ref_keeps_its_receipt(world):
    dev = world.clone("dev")
    assert git(dev, "config", "--get-all", "notes.rewriteRef", check=False) == ""  # install no longer sets it
    old = change_kernel(dev)
    attach_receipt(dev, world.key(ALICE))
    git(dev, "commit", "-q", "--amend", "-m", "kernel change, better message")
    assert git(dev, "rev-parse", "HEAD") != old
    assert gp(dev, "push", "origin", "main").returncode == 0
    code, report = ci_verify_json(fresh_clone(world, "ci"))
    assert code == 0 and report["results"][0]["validated_by"]["note_commit"] == old


# -- the ci-gpu workflow in miniature ------------------------------------------------------------


def add_ci_key_to_main(world: World) -> tuple[Path, str]:
    """The maintainers' one-time step: the CI key's public half in allowed_signers on main."""
    ci_key = generate_key(world.root / "ci-secret", "ed25519", "ci-gpu")
    maintainer = world.clone("maintainer", hook=False)
    with (maintainer / ".gpu-proof" / "allowed_signers").open("a") as handle:
        handle.write(f'{CI_PRINCIPAL} namespaces="gpu-proof" {ci_key.public_line}\n')
    commit_all(maintainer, "trust the CI GPU runner's key")
    assert push(maintainer, "origin", "main").returncode == 0
    secret = ci_key.private.read_text().rstrip("\n")  # CI secrets often lose the final newline
    ci_key.private.unlink()
    return maintainer, secret


def gpu_runner_signs(world: World, secret: str, sha: str, name: str = "gpu-runner") -> Path:
    runner = fresh_clone(world, name)
    git(runner, "checkout", "-q", "--detach", sha)
    temp = world.root / f"{name}-temp"
    temp.mkdir()
    wrote = bash(runner, WRITE_KEY, RUNNER_TEMP=str(temp), GPU_PROOF_SSH_KEY=secret)
    assert wrote.returncode == 0, wrote.stderr
    key_file = temp / "gpu-proof-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert git(runner, "config", "user.signingKey") == str(key_file)
    run = gp(runner, "run", "--mode", "ci-gpu", "--principal", CI_PRINCIPAL)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"signed by {CI_PRINCIPAL} -> note on {sha[:10]}" in run.stdout
    cleaned = bash(runner, REMOVE_KEY, RUNNER_TEMP=str(temp))
    assert cleaned.returncode == 0 and not key_file.exists()
    assert git(runner, "config", "--get", "user.signingKey", check=False) == ""
    return runner


def test_ci_gpu_runner_signs_and_pushes_notes_and_cpu_ci_verifies(world):
    _, secret = add_ci_key_to_main(world)
    dev = world.clone("dev")
    sha = change_kernel(dev, message="kernel change, no GPU here")
    assert push(dev, "--no-verify", "origin", "main").returncode == 0
    ci = fresh_clone(world, "ci-before")
    assert gp(ci, *CI_VERIFY).returncode == 1

    runner = gpu_runner_signs(world, secret, sha)
    branch_before = git(world.remote, "rev-parse", "main")
    pushed = bash(runner, PUSH_NOTES)
    assert pushed.returncode == 0, pushed.stderr
    assert world.remote_notes() == git(runner, "rev-parse", NOTES_REF)
    assert git(world.remote, "rev-parse", "main") == branch_before, "only the notes ref was pushed"

    ci = fresh_clone(world, "ci-after")
    check = gp(ci, *CI_VERIFY)
    assert check.returncode == 0, check.stdout + check.stderr
    show = gp(ci, "show", "--json", sha)
    assert show.returncode == 0, show.stderr
    receipts = json.loads(show.stdout)["receipts"]
    assert [(r["mode"], r["signer"], r["valid"]) for r in receipts] == [("ci-gpu", CI_PRINCIPAL, True)]


def test_ci_gpu_notes_push_is_rejected_not_forced_when_the_remote_moved(world):
    _, secret = add_ci_key_to_main(world)
    dev = world.clone("dev")
    sha = change_kernel(dev)
    assert push(dev, "--no-verify", "origin", "main").returncode == 0

    runner = gpu_runner_signs(world, secret, sha)
    assert gp(runner, "fetch", "origin").returncode == 0
    # Meanwhile a developer pushes their own receipt for the same commit.
    other = world.clone("other", hook=False)
    attach_receipt(other, world.key(ALICE))
    assert gp(other, "push", "origin").returncode == 0
    theirs = world.remote_notes()

    plain = push(runner, "origin", NOTES_REF)
    assert plain.returncode != 0 and "rejected" in plain.stderr
    assert world.remote_notes() == theirs, "a non-forced push never overwrites"

    retried = bash(runner, PUSH_NOTES)
    assert retried.returncode == 0, retried.stderr
    kept = subprocess.run(["git", "merge-base", "--is-ancestor", theirs, world.remote_notes()],
                          cwd=world.remote)
    assert kept.returncode == 0, "the remote's new notes tip builds on the other receipt"
    ci = fresh_clone(world, "ci")
    assert gp(ci, *CI_VERIFY).returncode == 0
    signers = sorted(e.signed.receipt.signer
                     for e in NotesStore(pygit2.Repository(str(ci))).entries(sha) if e.signed)
    assert signers == [ALICE, CI_PRINCIPAL]


def test_key_secret_without_final_newline_needs_the_printf(world, tmp_path):
    _, secret = add_ci_key_to_main(world)
    bare_copy = tmp_path / "as-is"
    fd = os.open(bare_copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)  # no final newline: OpenSSH cannot load it
    runner = fresh_clone(world, "runner")
    git(runner, "config", "user.signingKey", str(bare_copy))
    result = gp(runner, "run", "--mode", "ci-gpu", "--principal", CI_PRINCIPAL)
    assert result.returncode == 4, result.stdout + result.stderr  # refused before any test runs
    assert "-Y sign` failed" in result.stderr
    assert not has_ref(runner, NOTES_REF)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    assert bash(runner, WRITE_KEY, RUNNER_TEMP=str(temp), GPU_PROOF_SSH_KEY=secret).returncode == 0
    result = gp(runner, "run", "--mode", "ci-gpu", "--principal", CI_PRINCIPAL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert has_ref(runner, NOTES_REF)


# -- troubleshooting ---------------------------------------------------------------------------


def test_forced_notes_refspec_loses_local_receipts_and_doctor_flags_it(world):
    dev = world.clone("dev")
    assert gp(dev, "doctor").returncode == 0
    git(dev, "config", "--add", "remote.origin.fetch", "+refs/notes/*:refs/notes/*")
    result = gp(dev, "doctor")
    assert result.returncode == 1
    assert "FAIL  fetch refspecs" in result.stdout and "+refs/notes/*:refs/notes/*" in result.stdout

    mine = attach_receipt(dev, world.key(ALICE))  # made here, not pushed yet
    other = world.clone("other", "bob@example.com", hook=False)
    attach_receipt(other, world.key("bob@example.com"), principal="bob@example.com")
    assert gp(other, "push", "origin").returncode == 0
    git(dev, "fetch", "-q", "origin")
    note = git(dev, "notes", "--ref=gpu-proof", "show", "HEAD")
    assert "signer: bob@example.com" in note and mine.text.strip() not in note, "overwritten by the fetch"


# -- the trusted ref is exactly one ref ------------------------------------------------------------


@pytest.mark.parametrize("shadow", ["refs/tags/origin/main", "refs/heads/origin/main"])
def test_a_tag_or_branch_named_like_the_trusted_ref_cannot_replace_it(world, shadow):
    ci = self_signed_pull_request(world)
    git(ci, "update-ref", shadow, "HEAD")  # the pull request's own commit, under the trusted name
    short = gp(ci, "verify", "--fetch", "origin", "--trust-ref", "origin/main", "HEAD")
    assert short.returncode == 2, short.stdout + short.stderr
    assert "ambiguous" in short.stderr and shadow in short.stderr and "refs/remotes/origin/main" in short.stderr
    code, report = ci_verify_json(ci)  # the full name: main's allowed_signers
    assert code == 1 and "signer-not-allowed" in reason_codes(report)


@pytest.mark.parametrize("name, says", [
    ("origin/main~1", "not a ref name or commit id"),
    ("--output=x", "not a ref name or commit id"),
    ("refs/remotes/origin/nope", "no such ref"),
    ("nope", "no ref by that name"),
    ("abc1234", "an abbreviated commit id is not accepted"),
])
def test_trust_refs_that_are_not_one_ref_are_refused(world, name, says):
    ci = fresh_clone(world, "ci")
    refused = gp(ci, "verify", "--trust-ref", name, "HEAD")
    assert refused.returncode == 2 and says in refused.stderr, refused.stderr


def test_a_full_commit_id_is_a_trust_ref(world):
    ci = fresh_clone(world, "ci")
    main = git(ci, "rev-parse", "refs/remotes/origin/main")
    assert gp(ci, "verify", "--trust-ref", main, "HEAD").returncode == 1  # found: unvalidated, not 2


def test_receipt_fetches_bring_no_tags_and_refuse_option_like_remotes(world):
    maintainer = world.clone("maintainer", hook=False)
    attach_receipt(maintainer, world.key(ALICE))
    assert gp(maintainer, "push", "origin").returncode == 0
    git(maintainer, "tag", "origin/main", NOTES_REF)  # a tag that points into the notes history
    git(maintainer, "push", "-q", "origin", "refs/tags/origin/main")

    ci = fresh_clone(world, "ci", "--no-tags")
    assert gp(ci, "fetch", "origin").returncode == 0
    assert not has_ref(ci, "refs/tags/origin/main")
    marker = world.root / "pwned"
    for command in (("fetch", "--", f"--upload-pack=touch {marker}"),
                    ("verify", "--fetch", f"--upload-pack=touch {marker}")):
        refused = gp(ci, *command)
        assert refused.returncode == 2 and "cannot start with '-'" in refused.stderr, refused.stderr
    assert not marker.exists()
