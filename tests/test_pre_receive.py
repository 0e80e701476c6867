"""The server's pre-receive hook: a real bare repository with hooks/pre-receive, and clones
that push with --no-verify (so only the server can refuse)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from gitproof.attestation_notes import ATTESTATIONS_REF
from gitproof.notes import NOTES_REF
from gitproof import receive
from gitproof.receive import ReceiveInputError, ReceivedUpdate, is_protected, parse_received, read_settings
from tests.attestations import attest
from tests.helpers import change_docs, change_kernel, commit_all, generate_key, git, write_files
from tests.receipts import attach_receipt, trust
from tests.remotes import World, gp, tool_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ALICE = "alice@example.com"
MAIN = "refs/heads/main"
REFUSED = "gpu-proof: push refused"


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = World(tmp_path)
    install_server_hook(world.remote)
    return world


@pytest.fixture
def clone(world: World) -> Path:
    return world.clone("work", hook=False)  # no pre-push hook: only the server checks


def install_server_hook(bare: Path) -> Path:
    hook = bare / "hooks" / "pre-receive"
    shutil.copy(ROOT / "hooks" / "pre-receive", hook)
    hook.chmod(0o755)
    return hook


def push(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``git push --no-verify``: the pusher's own hooks never run."""
    return subprocess.run(["git", "push", "--no-verify", *args], cwd=cwd, env=tool_env(**env),
                          capture_output=True, text=True, timeout=120)


def on_server(world: World, ref: str) -> str:
    return git(world.remote, "rev-parse", "-q", "--verify", ref, check=False)




def said(stderr: str) -> str:
    """What the server said, as the pusher reads it: git's "remote: " prefix and padding removed."""
    return "".join("\n" + line.removeprefix("remote: ").rstrip() for line in stderr.splitlines()) + "\n"


def refused(result: subprocess.CompletedProcess) -> str:
    """The pusher's view of a refusal: git's words and the hook's, never a traceback."""
    assert result.returncode != 0, result.stderr
    assert "pre-receive hook declined" in result.stderr
    assert "Traceback" not in result.stderr
    return said(result.stderr)


def accepted(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return said(result.stderr)


def object_files(bare: Path) -> set[str]:
    return {str(p.relative_to(bare)) for p in (bare / "objects").rglob("*") if p.is_file()}


# -- the shipped script ----------------------------------------------------------------------------


def test_the_script_is_shipped_in_the_package_and_is_posix_sh():
    shipped = resources.files("gitproof") / "hook_scripts" / "pre-receive"
    assert (ROOT / "hooks" / "pre-receive").read_bytes() == shipped.read_bytes()
    assert os.access(ROOT / "hooks" / "pre-receive", os.X_OK)
    assert os.access(ROOT / "gitproof" / "hook_scripts" / "pre-receive", os.X_OK)
    assert shipped.read_text().startswith("#!/bin/sh\n")
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(ROOT / "hooks" / "pre-receive")]).returncode == 0


def test_without_gitproof_on_the_path_the_server_refuses_every_push(world, clone):
    change_docs(clone)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not (Path(p) / "git-gpu-proof").exists())
    result = subprocess.run(["git", "push", "--no-verify", "origin", "main"], cwd=clone, capture_output=True,
                            text=True, env={**tool_env(), "PATH": path})
    err = refused(result)
    assert "the command\n'git-gpu-proof' was not found, so this push is refused" in err
    assert "GPU_PROOF_COMMAND" in err


def test_gpu_proof_command_names_the_command_by_its_path(world, clone):
    change_docs(clone)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not (Path(p) / "git-gpu-proof").exists())
    command = shutil.which("git-gpu-proof", path=tool_env()["PATH"])
    assert command
    result = subprocess.run(["git", "push", "--no-verify", "origin", "main"], cwd=clone, capture_output=True,
                            text=True, env={**tool_env(), "PATH": path, "GPU_PROOF_COMMAND": command})
    assert "1 protected ref(s) without GPU changes" in accepted(result)


# -- the branch ------------------------------------------------------------------------------------


def test_an_unvalidated_gpu_change_is_refused_with_the_pre_push_hooks_words(world, clone):
    before = on_server(world, MAIN)
    objects = object_files(world.remote)
    sha = change_kernel(clone, message="kernel: faster add")
    err = refused(push(clone, "origin", "main"))
    assert "\ngpu-proof: push refused: GPU code without a valid receipt\n" in err
    assert f"\n  {sha[:10]} 'kernel: faster add' -> {MAIN}\n" in err
    assert "\n    why: no receipt\n" in err
    assert "\n    GPU paths changed: src/kernels.py\n" in err
    assert "\n    run: git gpu-proof run\n" in err
    assert "git gpu-proof push <remote> <branch>" in err and "--no-verify does not skip it" in err
    assert on_server(world, MAIN) == before
    assert object_files(world.remote) == objects  # the quarantine went away; the hook wrote no object


@pytest.mark.parametrize("unpack_limit", ["100", "1"], ids=["loose-objects", "pack"])
def test_the_same_change_with_its_receipt_in_the_same_push_is_accepted(world, clone, unpack_limit):
    git(world.remote, "config", "receive.unpackLimit", unpack_limit)  # quarantine holds loose objects or a pack
    sha = change_kernel(clone)
    attach_receipt(clone, world.key(ALICE))
    err = accepted(push(clone, "origin", "main", NOTES_REF))
    assert "\ngpu-proof: 1 protected ref(s) with GPU changes validated\n" in err
    assert on_server(world, MAIN) == sha
    assert on_server(world, NOTES_REF) == git(clone, "rev-parse", NOTES_REF)
    assert not any(p.name.startswith(("tmp_objdir", "incoming")) for p in (world.remote / "objects").iterdir())


def test_a_receipt_already_on_the_server_validates_the_push(world, clone):
    change_kernel(clone)
    attach_receipt(clone, world.key(ALICE))
    accepted(push(clone, "origin", NOTES_REF))  # the receipts alone: no protected ref in this push
    sha = git(clone, "rev-parse", "HEAD")
    err = accepted(push(clone, "origin", "main"))
    assert "with GPU changes validated" in err and on_server(world, MAIN) == sha
    # and a later clone verifies the branch with what the server kept
    ci = world.root / "ci"
    git(world.root, "clone", "-q", str(world.remote), str(ci))
    verify = gp(ci, "verify", "--fetch", "origin", "--trust-ref", "origin/main")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_push_with_the_client_hook_installed_is_accepted(world):
    work = world.clone("hooked", hook=True)
    change_kernel(work)
    attach_receipt(work, world.key(ALICE))
    result = subprocess.run(["git", "push", "origin", "main"], cwd=work, env=tool_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # pre-push sends the receipts first, then the branch
    assert on_server(world, MAIN) == git(work, "rev-parse", "HEAD")


def test_a_push_that_trusts_its_own_key_is_refused(world, clone):
    mallory = generate_key(world.root / "keys", "ed25519", "mallory")
    trust(clone, mallory, "mallory@example.com")  # the pushed commit adds the key to allowed_signers
    change_kernel(clone, "return a + b + 666", "kernel, signed by a key the PR adds")
    attach_receipt(clone, mallory, principal="mallory@example.com")
    assert gp(clone, "verify").returncode == 0  # by the pushed files' own trust, it would pass
    before = on_server(world, MAIN)
    err = refused(push(clone, "origin", "main", NOTES_REF))
    assert "GPU code without a valid receipt" in err and "why: receipt on" in err
    assert "mallory@example.com" in err
    assert f"warning: {MAIN}: this push changes .gpu-proof/allowed_signers" in err
    assert on_server(world, MAIN) == before


def test_docs_only_push_needs_no_receipt(world, clone):
    change_docs(clone)
    err = accepted(push(clone, "origin", "main"))
    assert "1 protected ref(s) without GPU changes" in err


def test_other_branches_and_tags_are_not_checked(world, clone):
    change_kernel(clone)
    git(clone, "tag", "v-unvalidated")
    err = accepted(push(clone, "origin", "main:refs/heads/feature", "v-unvalidated"))
    assert "gpu-proof" not in err  # nothing protected, nothing said
    accepted(push(clone, "origin", ":refs/heads/feature"))
    assert on_server(world, "refs/heads/feature") == ""


def test_every_mode_checks_each_new_commit(world, clone):
    (clone / "pyproject.toml").write_text(
        '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\npush_check = "every"\n')
    commit_all(clone, "policy: every commit")
    accepted(push(clone, "origin", "main"))  # no GPU change: judged by the old policy, accepted
    first = change_kernel(clone, "return a + b + 1", "first change")
    change_kernel(clone, "return a + b + 2", "second change")
    attach_receipt(clone, world.key(ALICE))
    err = refused(push(clone, "origin", "main", NOTES_REF))
    assert first[:10] in err and "first change" in err and "second change" not in err
    attach_receipt(clone, world.key(ALICE), rev="HEAD~1")
    accepted(push(clone, "origin", "main", NOTES_REF))


# -- protected patterns and trust roots -----------------------------------------------------------------


def test_protected_patterns_come_from_the_servers_config(world, clone):
    git(world.remote, "config", "--add", "gpu-proof.protect", "release/*")
    git(world.remote, "config", "--add", "gpu-proof.protect", "refs/tags/v*")
    err = refused(push(clone, "origin", "main:refs/heads/release/1"))  # creation: no trust root
    assert "creating a protected branch" in err
    git(world.remote, "config", "gpu-proof.trustRef", "main")
    accepted(push(clone, "origin", "main:refs/heads/release/1"))  # main's code: no GPU change
    change_kernel(clone)
    git(clone, "tag", "v1.0")
    err = refused(push(clone, "origin", "main:refs/heads/release/1", "v1.0"))
    assert "-> refs/heads/release/1" in err and "-> refs/tags/v1.0" in err
    # main is no longer protected (only the configured patterns are), but it is the trust root now,
    # which a push may move only when it is protected too
    assert "this server's trust root" in refused(push(clone, "origin", "main"))
    git(world.remote, "config", "--unset", "gpu-proof.trustRef")
    accepted(push(clone, "origin", "main"))


def test_creating_a_protected_branch_needs_a_trust_ref(world, clone):
    git(world.remote, "config", "gpu-proof.protect", "release/*")
    change_kernel(clone)
    err = refused(push(clone, "origin", "main:refs/heads/release/2"))
    assert "creating a protected branch" in err and "gpu-proof.trustRef" in err
    git(world.remote, "config", "gpu-proof.trustRef", "main")
    err = refused(push(clone, "origin", "main:refs/heads/release/2"))
    assert "why: no receipt" in err
    attach_receipt(clone, world.key(ALICE))
    accepted(push(clone, "origin", "main:refs/heads/release/2", NOTES_REF))
    git(world.remote, "config", "gpu-proof.trustRef", "refs/heads/nowhere")
    change_kernel(clone, "return a - b")
    err = refused(push(clone, "origin", "main:refs/heads/release/2"))
    assert "gpu-proof.trustRef names refs/heads/nowhere, which names no commit" in err


def test_an_empty_repository_is_bootstrapped_on_the_server(tmp_path, world):
    bare = tmp_path / "fresh.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    install_server_hook(bare)
    seed = world.root / "seed"  # World's first clone: main with the policy and allowed_signers
    err = refused(push(seed, str(bare), "main"))
    assert "creating a protected branch" in err
    git(bare, "fetch", "-q", str(seed), "main:main")  # an administrator, on the server: no hook runs
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    change_kernel(work)
    refused(push(work, "origin", "main"))
    attach_receipt(work, world.key(ALICE))
    accepted(push(work, "origin", "main", NOTES_REF))


def test_a_branch_whose_tip_has_no_allowed_signers_takes_no_gpu_change(tmp_path, world):
    bare = tmp_path / "bare.git"
    project = tmp_path / "project"
    git(tmp_path, "init", "-q", "-b", "main", str(project))
    write_files(project, {"src/kernels.py": "x = 1\n", "README.md": "r\n"})
    commit_all(project, "no gitproof yet")
    git(tmp_path, "clone", "-q", "--bare", str(project), str(bare))
    install_server_hook(bare)
    git(project, "remote", "add", "origin", str(bare))
    change_kernel(project)
    err = refused(push(project, "origin", "main"))
    assert "it changes GPU code, and the allowed signers at refs/heads/main" in err
    git(project, "reset", "-q", "--hard", "HEAD~1")
    trust(project, world.key(ALICE))  # the trust files, in a push without GPU changes: accepted
    commit_all(project, "adopt gitproof")
    err = accepted(push(project, "origin", "main"))
    assert f"warning: {MAIN}: this push changes pyproject.toml; the server judges pushes by them" in err
    change_kernel(project)
    attach_receipt(project, world.key(ALICE))
    accepted(push(project, "origin", "main", NOTES_REF))


def test_a_broken_policy_on_the_server_refuses_with_a_reason(world, clone):
    (clone / "pyproject.toml").write_text("[tool.gpu_proof]\nfingerprint_paths = 3\n")
    commit_all(clone, "broken policy")
    accepted(push(clone, "origin", "main"))  # judged by the policy before it
    change_docs(clone)
    err = refused(push(clone, "origin", "main"))
    assert "the policy at refs/heads/main" in err and "cannot be read" in err


# -- receipts on the server are never lost ---------------------------------------------------------------


def test_deleting_the_notes_ref_is_refused(world, clone):
    attach_receipt(clone, world.key(ALICE))
    accepted(push(clone, "origin", NOTES_REF))
    before = on_server(world, NOTES_REF)
    err = refused(push(clone, "origin", f":{NOTES_REF}"))
    assert "gpu-proof: push refused: it would lose receipts on this server" in err
    assert f"it deletes {NOTES_REF}" in err
    assert on_server(world, NOTES_REF) == before


def test_a_notes_rewrite_that_drops_receipts_is_refused_and_one_that_keeps_them_is_not(world, clone):
    other = world.clone("other", "bob@example.com", hook=False)
    attach_receipt(other, world.key("bob@example.com"), principal="bob@example.com")
    accepted(push(other, "origin", NOTES_REF))
    before = on_server(world, NOTES_REF)
    attach_receipt(clone, world.key(ALICE))  # never merged with bob's
    err = refused(push(clone, "--force", "origin", NOTES_REF))
    assert "it drops 1 receipt(s)" in err and "git gpu-proof fetch" in err
    assert on_server(world, NOTES_REF) == before
    # the same receipts in a rewritten history (one squashed notes commit): nothing lost, accepted
    tree = git(other, "rev-parse", f"{NOTES_REF}^{{tree}}")
    squashed = git(other, "commit-tree", "-m", "squashed notes", tree)
    accepted(push(other, "--force", "origin", f"{squashed}:{NOTES_REF}"))
    assert on_server(world, NOTES_REF) == squashed


def test_the_attestations_ref_is_guarded_too(world, clone):
    signed = attach_receipt(clone, world.key(ALICE))
    attest(clone, world.key(ALICE), signed)
    accepted(push(clone, "origin", NOTES_REF, ATTESTATIONS_REF))
    before = on_server(world, ATTESTATIONS_REF)
    err = refused(push(clone, "origin", f":{ATTESTATIONS_REF}"))
    assert f"it deletes {ATTESTATIONS_REF}" in err
    empty = git(clone, "commit-tree", "-m", "no envelopes", git(clone, "mktree", input=""))
    err = refused(push(clone, "--force", "origin", f"{empty}:{ATTESTATIONS_REF}"))
    assert "it drops 1 attestation(s)" in err
    assert on_server(world, ATTESTATIONS_REF) == before


def test_a_notes_ref_that_is_not_notes_is_refused(world, clone):
    err = refused(push(clone, "origin", f"main:{NOTES_REF}"))  # a code commit as the notes
    assert f"{NOTES_REF}: " in err and "is not a notes commit" in err
    blob = git(clone, "hash-object", "-w", "--stdin", input="not notes\n")
    git(clone, "update-ref", "refs/tags/blob", blob)
    err = refused(push(clone, "origin", f"refs/tags/blob:{NOTES_REF}"))
    assert "is not a notes commit" in err
    assert on_server(world, NOTES_REF) == ""


def test_a_garbage_note_is_a_refusal_with_a_reason(world, clone):
    change_kernel(clone)
    git(clone, "notes", "--ref=gpu-proof", "add", "-m", "gpu-proof receipt v1\n\x01garbage\n\n" + "x" * 300, "HEAD")
    err = refused(push(clone, "origin", "main", NOTES_REF))
    assert "GPU code without a valid receipt" in err and "why: " in err


# -- the command itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stdin", ["garbage\n", f"{'0' * 40} {'1' * 40}\n", f"{'a' * 39} {'b' * 40} {MAIN}\n"])
def test_input_that_is_not_gits_is_refused_in_one_line(world, stdin):
    result = gp(world.remote, "hook", "pre-receive", input=stdin)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("gpu-proof: error: pre-receive input line 1 is not")
    assert len(result.stderr.splitlines()) == 1


def test_outside_a_repository_is_a_clear_error(tmp_path):
    result = gp(tmp_path, "hook", "pre-receive", input=f"{'0' * 40} {'1' * 40} {MAIN}\n",
                GIT_CEILING_DIRECTORIES=str(tmp_path.parent))
    assert result.returncode == 2 and "not a git repository" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_pushed_objects_fail_closed(world):
    old = on_server(world, MAIN)
    result = gp(world.remote, "hook", "pre-receive", input=f"{old} {'1' * 40} {MAIN}\n")
    assert result.returncode == 1 and "is not a commit" in result.stderr


def test_help_lists_the_command():
    result = subprocess.run(["git", "gpu-proof", "hook", "pre-receive", "--help"], env=tool_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "2 cannot check (refuses too)" in " ".join(result.stdout.split())


# -- the library -------------------------------------------------------------------------------------------


def test_parse_received():
    old, new = "a" * 40, "B" * 64
    assert parse_received(f"{old} {new} {MAIN}\n\n") == [ReceivedUpdate(old, new.lower(), MAIN)]
    assert ReceivedUpdate("0" * 40, old, MAIN).is_creation and ReceivedUpdate(old, "0" * 40, MAIN).is_deletion
    with pytest.raises(ReceiveInputError, match="line 2"):
        parse_received(f"{old} {new} {MAIN}\n{old} {new} main with spaces\n")


def test_settings_from_the_servers_git_config(tmp_path):
    bare = tmp_path / "r.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(bare))
    env = {**os.environ, "GIT_DIR": str(bare)}
    assert read_settings(env) == receive.Settings(("refs/heads/trunk",))
    git(bare, "symbolic-ref", "HEAD", "refs/tags/odd")
    assert read_settings(env).protect == ("refs/heads/*",)  # HEAD not on a branch: every branch (fail closed)
    git(bare, "config", "--add", "gpu-proof.protect", "main")
    git(bare, "config", "--add", "gpu-proof.protect", "refs/heads/release/*")
    settings = read_settings(env)
    assert settings.protect == ("refs/heads/main", "refs/heads/release/*") and settings.trust_ref is None
    assert settings.protects("refs/heads/release/1/hotfix") and not settings.protects("refs/heads/mainline")
    assert is_protected("refs/heads/main", settings.protect)
    git(bare, "config", "gpu-proof.trustRef", "main")
    assert read_settings(env).trust_ref == MAIN
    git(bare, "config", "gpu-proof.trustRef", "")
    with pytest.raises(ReceiveInputError, match="gpu-proof.trustRef"):
        read_settings(env)
    git(bare, "config", "--unset", "gpu-proof.trustRef")
    (bare / "config").write_text((bare / "config").read_text() + "[gpu-proof]\n\tprotect\n")  # no value
    with pytest.raises(ReceiveInputError, match="gpu-proof.protect has an empty value"):
        read_settings(env)
    (bare / "config").write_text("[broken\n")
    with pytest.raises(ReceiveInputError, match="git symbolic-ref failed|git config failed"):
        read_settings(env)


def test_the_notes_ref_names_are_gitproofs():
    from gitproof.attestation_notes import ATTESTATIONS_REF as attestations
    from gitproof.notes import NOTES_REF as notes

    assert (receive.NOTES_REF, receive.ATTESTATIONS_REF) == (notes, attestations)


def test_a_push_to_an_unprotected_branch_never_imports_pygit2(world):
    code = ("import sys\nfrom gitproof.cli.hook import pre_receive\n"
            f"code = pre_receive('{'0' * 40} {'1' * 40} refs/heads/feature\\n')\n"
            "print(code, 'pygit2' in sys.modules, 'gitproof.verify' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=world.remote, env=tool_env(GIT_DIR="."),
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False", "False"], out.stderr


# -- docs/hooks.md, as written ------------------------------------------------------------------------------

DOC = ROOT / "docs" / "hooks.md"
VENV = Path(sys.executable).parent.parent
# "Installing: plain git over SSH": the hook script, with the command's full path written in.
WRITE_HOOK = (
    """script=$("$venv/bin/python" -c 'from importlib.resources import files; """
    """print(files("gitproof") / "hook_scripts" / "pre-receive")')\n"""
    """sed "s|GPU_PROOF_COMMAND:-git-gpu-proof|GPU_PROOF_COMMAND:-$venv/bin/git-gpu-proof|" "$script" > "$hook"\n"""
    """chmod 755 "$hook\""""
)
LINK_PLAIN = 'ln -s "$hook" "$repo/hooks/pre-receive"'
CONFIGURE = """git -C "$repo" config --add gpu-proof.protect main
git -C "$repo" config --add gpu-proof.protect 'release/*'
git -C "$repo" config gpu-proof.trustRef refs/heads/main"""
BOOTSTRAP = 'git -C "$repo" fetch "$clone" main:main'
TRUST_REF = """git -C "$repo" update-ref refs/gpu-proof/trust refs/heads/main
git -C "$repo" config receive.hideRefs refs/gpu-proof/
git -C "$repo" config gpu-proof.trustRef refs/gpu-proof/trust"""
GITEA_LINK = 'ln -s "$hook" "$repo/hooks/pre-receive.d/gpu-proof"'
GITEA_UI = "#!/bin/sh\nexec /usr/local/libexec/gpu-proof-pre-receive"
GITLAB_TARBALL = """mkdir -p custom_hooks/pre-receive.d
cp "$hook" custom_hooks/pre-receive.d/gpu-proof
tar -cf custom_hooks.tar custom_hooks"""
# A stand-in for the servers that own hooks/pre-receive and run every executable in a .d folder
# (Gitea: hooks/pre-receive.d; Gitaly: custom_hooks/pre-receive.d), each with the same input.
DELEGATING = """#!/bin/sh
input=$(cat)
for hook in "$PWD/{folder}"/*; do
    [ -f "$hook" ] && [ -x "$hook" ] || continue
    printf '%s\\n' "$input" | "$hook" || exit $?
done
"""


def shows(snippet: str, text: str) -> bool:
    """``snippet`` appears in ``text`` line for line, whatever the indentation."""
    flat = lambda s: "\n".join(line.strip() for line in s.splitlines())  # noqa: E731
    return flat(snippet) in flat(text)


def sh(script: str, cwd: Path, **variables: str) -> None:
    result = subprocess.run(["sh", "-ec", script], cwd=cwd, env={**tool_env(), **variables},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def without_gitproof_on_path() -> str:
    return os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not (Path(p) / "git-gpu-proof").exists())


def push_from_anywhere(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A push whose server finds no git-gpu-proof on its PATH: only a full path in the hook works."""
    return subprocess.run(["git", "push", "--no-verify", *args], cwd=cwd, capture_output=True, text=True,
                          env={**tool_env(), "PATH": without_gitproof_on_path(), **env}, timeout=120)


@pytest.fixture
def bare_world(tmp_path: Path) -> World:
    return World(tmp_path)  # no hook yet: the document's commands install it


@pytest.fixture
def written_hook(tmp_path: Path) -> Path:
    hook = tmp_path / "gpu-proof-pre-receive"
    sh(WRITE_HOOK, tmp_path, venv=str(VENV), hook=str(hook))
    return hook


def test_the_document_shows_the_commands_these_tests_run():
    text = DOC.read_text(encoding="utf-8")
    for snippet in (WRITE_HOOK, LINK_PLAIN, CONFIGURE, BOOTSTRAP, TRUST_REF, GITEA_LINK, GITEA_UI, GITLAB_TARBALL):
        assert shows(snippet, text), snippet
    assert "hook=/usr/local/libexec/gpu-proof-pre-receive" in text  # the path GITEA_UI runs


def test_plain_git_install_as_documented(bare_world, written_hook):
    repo = bare_world.remote
    sh(LINK_PLAIN, repo, hook=str(written_hook), repo=str(repo))
    clone = bare_world.clone("work", hook=False)
    change_kernel(clone)
    refused(push_from_anywhere(clone, "origin", "main"))
    attach_receipt(clone, bare_world.key(ALICE))
    assert "with GPU changes validated" in accepted(push_from_anywhere(clone, "origin", "main", NOTES_REF))
    sh(CONFIGURE, repo, repo=str(repo))
    assert git(repo, "config", "--get-all", "gpu-proof.protect").split() == ["main", "release/*"]
    accepted(push_from_anywhere(clone, "origin", "main:refs/heads/release/1"))  # created, trusted from main
    change_kernel(clone, "return a - b")
    err = refused(push_from_anywhere(clone, "origin", "main:refs/heads/release/1"))
    assert "-> refs/heads/release/1" in err


def test_bootstrap_fetch_as_documented(tmp_path, bare_world, written_hook):
    repo = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(repo))
    sh(LINK_PLAIN, repo, hook=str(written_hook), repo=str(repo))
    seed = bare_world.root / "seed"
    assert "creating a protected branch" in refused(push_from_anywhere(seed, str(repo), "main"))
    sh(BOOTSTRAP, tmp_path, repo=str(repo), clone=str(seed))
    assert git(repo, "rev-parse", "main") == git(seed, "rev-parse", "main")


def test_a_trust_ref_only_the_server_moves(bare_world, written_hook):
    repo = bare_world.remote
    sh(LINK_PLAIN + "\n" + TRUST_REF, repo, hook=str(written_hook), repo=str(repo))
    mallory = generate_key(bare_world.root / "keys", "ed25519", "mallory")
    clone = bare_world.clone("work", hook=False)
    trust(clone, mallory, "mallory@example.com")
    commit_all(clone, "trust mallory")
    accepted(push_from_anywhere(clone, "origin", "main"))  # no GPU change: accepted
    change_kernel(clone)
    attach_receipt(clone, mallory, principal="mallory@example.com")
    err = refused(push_from_anywhere(clone, "origin", "main", NOTES_REF))  # judged by the trust ref
    assert "signer not allowed" in err and "mallory@example.com" in err
    hidden = push_from_anywhere(clone, "origin", "main:refs/gpu-proof/trust")
    assert hidden.returncode != 0 and "hidden ref" in hidden.stderr
    # Without it, main's own tip is the trust root, and that tip now trusts mallory: the two-step
    # change the document warns about goes through.
    git(repo, "config", "--unset", "gpu-proof.trustRef")
    accepted(push_from_anywhere(clone, "origin", "main", NOTES_REF))


@pytest.mark.parametrize("how", ["link", "web-ui"])
def test_gitea_layout_as_documented(bare_world, written_hook, how):
    repo = bare_world.remote
    delegating = repo / "hooks" / "pre-receive"
    delegating.write_text(DELEGATING.format(folder="hooks/pre-receive.d"))
    delegating.chmod(0o755)
    (repo / "hooks" / "pre-receive.d").mkdir()
    if how == "link":
        sh(GITEA_LINK, repo, hook=str(written_hook), repo=str(repo))
    else:
        ui = repo / "hooks" / "pre-receive.d" / "pre-receive"
        ui.write_text(GITEA_UI.replace("/usr/local/libexec/gpu-proof-pre-receive", str(written_hook)) + "\n")
        ui.chmod(0o755)
    clone = bare_world.clone("work", hook=False)
    change_kernel(clone)
    assert "GPU code without a valid receipt" in refused(push_from_anywhere(clone, "origin", "main"))
    attach_receipt(clone, bare_world.key(ALICE))
    accepted(push_from_anywhere(clone, "origin", "main", NOTES_REF))


def test_gitlab_custom_hooks_tarball_as_documented(tmp_path, bare_world, written_hook):
    work = tmp_path / "tarball"
    work.mkdir()
    sh(GITLAB_TARBALL, work, hook=str(written_hook))
    listing = subprocess.run(["tar", "-tvf", str(work / "custom_hooks.tar")], capture_output=True, text=True,
                             check=True).stdout
    line = next(entry for entry in listing.splitlines() if entry.endswith("custom_hooks/pre-receive.d/gpu-proof"))
    assert line.startswith("-rwx")
    repo = bare_world.remote
    subprocess.run(["tar", "-xf", str(work / "custom_hooks.tar"), "-C", str(repo)], check=True)  # as Gitaly does
    delegating = repo / "hooks" / "pre-receive"
    delegating.write_text(DELEGATING.format(folder="custom_hooks/pre-receive.d"))
    delegating.chmod(0o755)
    clone = bare_world.clone("work", hook=False)
    change_kernel(clone)
    err = refused(push_from_anywhere(clone, "origin", "main", GL_PROTOCOL="web"))
    assert "\nGL-HOOK-ERR: gpu-proof: " in err and "has GPU code without a valid receipt: no receipt" in err
    attach_receipt(clone, bare_world.key(ALICE))
    accepted(push_from_anywhere(clone, "origin", "main", NOTES_REF))


def test_run_by_hand_on_a_terminal_it_says_what_it_is_for(world):
    from tests.terminal import in_terminal

    tool = str(Path(sys.executable).parent / "git-gpu-proof")
    result = in_terminal([tool, "hook", "pre-receive"], world.remote, tool_env())
    assert result.status == 2 and "reads git's '<old id> <new id> <ref>' lines" in result.text


# -- found by an adversarial review --------------------------------------------------------------


def test_a_symbolic_ref_to_the_protected_branch_is_judged_as_that_branch(world):
    """A server-side alias left by a rename (master -> main): git reports the push under the alias's
    name and writes through it, so it is judged as the branch it moves."""
    git(world.remote, "symbolic-ref", "refs/heads/master", MAIN)
    clone = world.clone("work", hook=False)
    before = on_server(world, MAIN)
    change_kernel(clone, message="kernel: untested")
    through_alias = push(clone, "origin", "HEAD:refs/heads/master")
    assert through_alias.returncode != 0 and "refs/heads/main" in through_alias.stderr
    assert on_server(world, MAIN) == before
    attach_receipt(clone, world.key("alice@example.com"))
    with_receipt = push(clone, "--atomic", "origin", "HEAD:refs/heads/master", "refs/notes/gpu-proof")
    assert with_receipt.returncode == 0, with_receipt.stderr
    assert on_server(world, MAIN) == git(clone, "rev-parse", "HEAD")


def test_a_dangling_symbolic_ref_cannot_create_the_protected_branch(world):
    git(world.remote, "config", "gpu-proof.protect", "refs/heads/release")
    git(world.remote, "symbolic-ref", "refs/heads/rel", "refs/heads/release")  # release does not exist yet
    clone = world.clone("work", hook=False)
    change_kernel(clone, message="kernel: untested")
    created = push(clone, "origin", "HEAD:refs/heads/rel")
    assert created.returncode != 0 and "creating a protected branch" in created.stderr
    assert on_server(world, "refs/heads/release") == ""


def test_every_mode_verifies_the_tip_whatever_another_protected_branch_accepted(world):
    """release/old still trusts a key main has dropped; a commit it accepted under that trust must
    not reach main unverified by main's own trust."""
    seed = world.clone("seed-every", hook=False)
    with (seed / "pyproject.toml").open("a") as handle:
        handle.write('push_check = "every"\n')
    commit_all(seed, "every mode")
    assert push(seed, "origin", "main").returncode == 0
    mallory = generate_key(world.root / "keys", "ed25519", "mallory")
    git(seed, "switch", "-q", "-c", "release/old")
    with (seed / ".gpu-proof" / "allowed_signers").open("a") as handle:
        handle.write(f'mallory@example.com namespaces="gpu-proof" {mallory.public_line}\n')
    commit_all(seed, "release/old trusts mallory")
    git(world.remote, "fetch", "-q", str(seed), "release/old:release/old")  # made on the server: no hook
    git(world.remote, "config", "--add", "gpu-proof.protect", "main")
    git(world.remote, "config", "--add", "gpu-proof.protect", "release/*")
    attacker = world.clone("attacker", hook=False)
    git(attacker, "switch", "-q", "-c", "x", "origin/main")
    change_kernel(attacker, body="return 'mallory'", message="kernel by mallory")
    attach_receipt(attacker, mallory, principal="mallory@example.com")
    to_release = push(attacker, "--atomic", "origin", "+HEAD:refs/heads/release/old", "refs/notes/gpu-proof")
    assert to_release.returncode == 0, to_release.stderr  # judged by release/old's own allowed_signers
    to_main = push(attacker, "origin", "HEAD:refs/heads/main")
    err = refused(to_main)
    assert "kernel by mallory' -> refs/heads/main" in err and "mallory@example.com" in err


def test_a_trust_ref_that_is_not_protected_cannot_be_pushed(world):
    git(world.remote, "update-ref", "refs/gpu-proof/trust", MAIN)
    git(world.remote, "config", "gpu-proof.trustRef", "refs/gpu-proof/trust")  # and no receive.hideRefs
    mallory = generate_key(world.root / "keys", "ed25519", "mallory")
    attacker = world.clone("attacker", hook=False)
    git(attacker, "switch", "-q", "-c", "t")
    with (attacker / ".gpu-proof" / "allowed_signers").open("a") as handle:
        handle.write(f'mallory@example.com namespaces="gpu-proof" {mallory.public_line}\n')
    commit_all(attacker, "trust mallory")
    moved = push(attacker, "origin", "HEAD:refs/gpu-proof/trust")
    assert moved.returncode != 0 and "trust root" in moved.stderr
    assert on_server(world, "refs/gpu-proof/trust") == on_server(world, MAIN)


def test_a_symbolic_ref_chain_is_followed_to_its_end_and_a_loop_refused(world):
    git(world.remote, "symbolic-ref", "refs/heads/b", MAIN)
    git(world.remote, "symbolic-ref", "refs/heads/a", "refs/heads/b")
    zero, tip = "0" * 40, on_server(world, MAIN)
    env = {**tool_env(), "GIT_DIR": str(world.remote)}
    [update] = receive.through_symbolic_refs([ReceivedUpdate(tip, zero, "refs/heads/a")], env)
    assert update.ref == MAIN
    git(world.remote, "symbolic-ref", "refs/heads/x", "refs/heads/y")
    git(world.remote, "symbolic-ref", "refs/heads/y", "refs/heads/x")
    with pytest.raises(ReceiveInputError, match="a chain of symbolic refs too long to follow"):
        receive.through_symbolic_refs([ReceivedUpdate(tip, zero, "refs/heads/x")], env)
