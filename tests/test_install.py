"""`git gpu-proof install / uninstall` and the shipped hooks, with real git."""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gitproof import install as setup
from gitproof.git import open_repository as open_repo
from gitproof.notes import NOTES_REF
from tests.helpers import commit_all, generate_key, git, make_project_repo, write_files
from tests.receipts import attach_receipt, trust

ROOT = Path(__file__).resolve().parent.parent
BIN = str(Path(sys.executable).parent)

FAKE_GITPROOF = """#!/bin/sh
# stands in for the real command: records what the hook passed, exits as told
printf '%s\\n' "$*" >> "$RECORD/gitproof.args"
cat >> "$RECORD/gitproof.stdin"
exit "${FAKE_GITPROOF_STATUS:-0}"
"""

FOREIGN_HOOK = """#!/bin/sh
# someone else's hook
printf '%s\\n' "$*" >> "$RECORD/foreign.args"
cat >> "$RECORD/foreign.stdin"
exit "${FOREIGN_STATUS:-0}"
"""


# -- helpers -------------------------------------------------------------------------


def path_without_gitproof() -> str:
    """PATH minus every directory holding a git-gpu-proof command."""
    dirs = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not (Path(d) / "git-gpu-proof").exists())


@pytest.fixture
def record(tmp_path: Path) -> Path:
    directory = tmp_path / "record"
    directory.mkdir()
    return directory


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    directory = tmp_path / "fake-bin"
    directory.mkdir()
    script = directory / "git-gpu-proof"
    script.write_text(FAKE_GITPROOF)
    script.chmod(0o755)
    return directory


def env_with(record: Path, bin_dir: Path | None, **extra: str) -> dict[str, str]:
    path = path_without_gitproof()
    if bin_dir is not None:
        path = str(bin_dir) + os.pathsep + path
    return {**os.environ, "PATH": path, "RECORD": str(record), **extra}


def run_git(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def gp(cwd: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path or BIN + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    if not directory.exists():
        return {}
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.lstat().st_mode)) for p in sorted(directory.iterdir())}


def state(root: Path) -> tuple[dict, bytes]:
    return snapshot(root / ".git" / "hooks"), (root / ".git" / "config").read_bytes()


def add_foreign_hook(hooks: Path, name: str = "pre-push", text: str = FOREIGN_HOOK) -> Path:
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def bare_remote(repo: Path, tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    return remote


# -- the shipped scripts ---------------------------------------------------------------------


@pytest.mark.parametrize("name", setup.HOOK_NAMES)
def test_shipped_hooks_are_the_repository_hooks_folder(name):
    shipped = ROOT / "gitproof" / "hook_scripts" / name
    assert (ROOT / "hooks" / name).read_bytes() == shipped.read_bytes() == setup.hook_script(name)
    assert os.access(ROOT / "hooks" / name, os.X_OK) and os.access(shipped, os.X_OK)
    lines = setup.hook_script(name).decode().splitlines()
    assert lines[0] == "#!/bin/sh" and lines[1] == setup.MARKER


@pytest.mark.parametrize("name", setup.HOOK_NAMES)
def test_hooks_are_posix_sh(name):
    shells = [s for s in ("sh", "dash") if subprocess.run(["which", s], capture_output=True).returncode == 0]
    for shell in shells:
        assert subprocess.run([shell, "-n", str(ROOT / "hooks" / name)]).returncode == 0


def test_pre_commit_manifest():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    entries = re.findall(r"^- id: (\S+)$", text, re.M)
    assert entries == ["gpu-proof"]
    fields = dict(re.findall(r"^  (\w+): (.+)$", text, re.M))
    assert fields["entry"] == "git-gpu-proof hook pre-push"
    assert fields["language"] == "python"
    assert fields["stages"] == "[pre-push]"
    assert fields["pass_filenames"] == "false"
    assert fields["always_run"] == "true"
    assert fields["require_serial"] == "true"
    try:
        import yaml
    except ImportError:
        return
    (hook,) = yaml.safe_load(text)
    assert hook["stages"] == ["pre-push"] and hook["pass_filenames"] is False


# -- install ---------------------------------------------------------------------------------


def test_install_into_a_fresh_repository(tmp_path):
    root = tmp_path / "fresh"
    git(tmp_path, "init", "-q", str(root))  # no commit yet: setting up comes first
    result = gp(root, "install")
    assert result.returncode == 0, result.stderr
    for name in setup.HOOK_NAMES:
        hook = root / ".git" / "hooks" / name
        assert hook.read_bytes() == setup.hook_script(name)
        assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    assert git(root, "config", "--get-all", "notes.displayRef", check=False) == ""  # git log stays short
    # receipts are found by their trees: git's own copy on rewrite is not needed, and it raced
    assert git(root, "config", "--get-all", "notes.rewriteRef", check=False) == ""
    assert git(root, "config", "notes.gpu-proof.mergeStrategy") == "union"
    assert "pre-push      installed" in result.stdout


def test_install_twice_changes_nothing(repo):
    first = setup.install(open_repo(repo))
    assert first.changed and [h.outcome for h in first.hooks] == [setup.INSTALLED, setup.INSTALLED]
    before = state(repo)
    second = setup.install(open_repo(repo))
    assert state(repo) == before
    assert not second.changed
    assert {h.outcome for h in second.hooks} == {c.outcome for c in second.config} == {setup.UNCHANGED}
    data = json.loads(gp(repo, "install", "--json").stdout)
    assert data["changed"] is False and state(repo) == before


def test_users_own_values_stay(repo):
    git(repo, "config", "--add", "notes.displayRef", "refs/notes/*")
    git(repo, "config", "--add", "notes.rewriteRef", "refs/notes/*")
    report = setup.install(open_repo(repo))
    assert [(c.key, c.outcome) for c in report.config] == [(setup.MERGE_STRATEGY_KEY, setup.SET)]
    assert git(repo, "config", "--get-all", "notes.displayRef") == "refs/notes/*"  # the user's own
    assert git(repo, "config", "--get-all", "notes.rewriteRef") == "refs/notes/*"


def test_install_removes_the_rewrite_ref_an_older_install_set(repo):
    git(repo, "config", "--add", "notes.rewriteRef", "refs/notes/commits")  # the user's own
    git(repo, "config", "--add", "notes.rewriteRef", NOTES_REF)
    report = setup.install(open_repo(repo))
    removed = [c for c in report.config if c.outcome == setup.REMOVED]
    assert [c.key for c in removed] == ["notes.rewriteRef"] and "found by their trees" in removed[0].detail
    assert git(repo, "config", "--get-all", "notes.rewriteRef") == "refs/notes/commits"
    assert not setup.install(open_repo(repo)).changed


def test_other_merge_strategy_is_left_alone_with_a_warning(repo):
    git(repo, "config", "notes.gpu-proof.mergeStrategy", "cat_sort_uniq")
    report = setup.install(open_repo(repo))
    assert report.config[-1].outcome == setup.CONFLICT
    assert any("scrambles" in w for w in report.warnings)
    setup.uninstall(open_repo(repo))
    assert git(repo, "config", "notes.gpu-proof.mergeStrategy") == "cat_sort_uniq"


def test_outdated_hook_is_updated_and_keeps_its_chained_hook(repo):
    hooks = repo / ".git" / "hooks"
    foreign = add_foreign_hook(hooks).read_bytes()
    setup.install(open_repo(repo))
    (hooks / "pre-push").write_text(f"#!/bin/sh\n{setup.MARKER}\necho old version\n")
    report = setup.install(open_repo(repo))
    assert report.hooks[0].outcome == setup.UPDATED
    assert (hooks / "pre-push").read_bytes() == setup.hook_script("pre-push")
    assert (hooks / "pre-push.chained").read_bytes() == foreign


def test_hook_that_lost_its_exec_bit_is_repaired(repo):
    setup.install(open_repo(repo))
    (repo / ".git" / "hooks" / "pre-push").chmod(0o644)
    assert setup.install(open_repo(repo)).hooks[0].outcome == setup.UPDATED
    assert os.access(repo / ".git" / "hooks" / "pre-push", os.X_OK)


def test_chained_conflict_is_refused_and_nothing_changes(repo):
    hooks = repo / ".git" / "hooks"
    add_foreign_hook(hooks)
    add_foreign_hook(hooks, "pre-push.chained", "#!/bin/sh\necho an older hook\n")
    before = state(repo)
    with pytest.raises(setup.InstallError, match="pre-push.chained already exists"):
        setup.install(open_repo(repo))
    assert state(repo) == before
    result = gp(repo, "install")
    assert result.returncode == 2 and "already exists" in result.stderr and "Traceback" not in result.stderr
    assert state(repo) == before


def test_identical_chained_copy_is_accepted(repo):
    hooks = repo / ".git" / "hooks"
    foreign = add_foreign_hook(hooks).read_bytes()
    add_foreign_hook(hooks, "pre-push.chained")
    report = setup.install(open_repo(repo))
    assert report.hooks[0].outcome == setup.CHAINED
    assert (hooks / "pre-push.chained").read_bytes() == foreign
    assert setup.is_gitproof_hook(hooks / "pre-push")


def test_husky_directory_is_refused(repo):
    git(repo, "config", "core.hooksPath", ".husky/_")
    with pytest.raises(setup.InstallError, match="husky"):
        setup.install(open_repo(repo))
    assert not (repo / ".husky").exists()


# -- where hooks go ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["relative", "absolute", "home"])
def test_core_hooks_path(repo, tmp_path, kind, record, fake_bin):
    value, expected = {
        "relative": (".githooks", repo / ".githooks"),
        "absolute": (str(tmp_path / "shared-hooks"), tmp_path / "shared-hooks"),
        "home": ("~/gp-hooks", Path.home() / "gp-hooks"),
    }[kind]
    git(repo, "config", "core.hooksPath", value)
    (repo / "src").mkdir(exist_ok=True)
    report = setup.install(open_repo(repo / "src"))  # from a subdirectory too
    assert report.hooks_dir == expected.resolve()
    assert (expected / "pre-push").read_bytes() == setup.hook_script("pre-push")
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    # git really runs it from there
    result = run_git(repo, "commit", "-q", "--allow-empty", "-m", "x", env=env_with(record, fake_bin))
    assert result.returncode == 0, result.stderr
    assert (record / "gitproof.args").read_text() == "hook post-commit\n"


def test_linked_worktree_uses_the_common_hooks_dir(repo, tmp_path, record, fake_bin):
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(worktree))
    report = setup.install(open_repo(worktree))
    assert report.hooks_dir == (repo / ".git" / "hooks").resolve()
    assert setup.is_gitproof_hook(repo / ".git" / "hooks" / "pre-push")
    assert not list((repo / ".git" / "worktrees").glob("*/hooks"))
    assert git(repo, "config", "notes.gpu-proof.mergeStrategy") == "union"
    result = run_git(worktree, "commit", "-q", "--allow-empty", "-m", "x", env=env_with(record, fake_bin))
    assert result.returncode == 0 and (record / "gitproof.args").read_text() == "hook post-commit\n"


def test_submodule_uses_its_own_hooks_dir(repo, tmp_path):
    library = make_project_repo(tmp_path / "library")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "sub")
    report = setup.install(open_repo(repo / "sub"))
    modules_hooks = repo / ".git" / "modules" / "sub" / "hooks"
    assert report.hooks_dir == modules_hooks.resolve()
    assert setup.is_gitproof_hook(modules_hooks / "pre-push")
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    assert git(repo / "sub", "config", "notes.gpu-proof.mergeStrategy") == "union"
    assert git(repo, "config", "--default", "", "notes.gpu-proof.mergeStrategy") == ""


# -- the hooks at work: real pushes and commits ------------------------------------------------


@pytest.mark.parametrize("foreign_status,gitproof_status", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_push_runs_chained_hook_and_gitproof(repo, tmp_path, record, fake_bin,
                                             foreign_status, gitproof_status):
    bare_remote(repo, tmp_path)
    add_foreign_hook(repo / ".git" / "hooks")
    setup.install(open_repo(repo))
    head = git(repo, "rev-parse", "HEAD")
    env = env_with(record, fake_bin, FOREIGN_STATUS=str(foreign_status),
                   FAKE_GITPROOF_STATUS=str(gitproof_status))
    result = run_git(repo, "push", "origin", "main", env=env)
    url = str(tmp_path / "remote.git")
    stdin = f"refs/heads/main {head} refs/heads/main {'0' * 40}\n"
    # both ran, whatever the other's outcome, each with git's arguments and input
    assert (record / "foreign.args").read_text() == f"origin {url}\n"
    assert (record / "gitproof.args").read_text() == f"hook pre-push origin {url}\n"
    assert (record / "foreign.stdin").read_text() == stdin == (record / "gitproof.stdin").read_text()
    pushed = git(tmp_path / "remote.git", "rev-parse", "-q", "--verify", "refs/heads/main", check=False)
    if foreign_status or gitproof_status:
        assert result.returncode != 0 and pushed == ""
    else:
        assert result.returncode == 0 and pushed == head


def test_missing_gitproof_fails_the_push_closed(repo, tmp_path, record):
    bare_remote(repo, tmp_path)
    setup.install(open_repo(repo))
    result = run_git(repo, "push", "origin", "main", env=env_with(record, None))
    assert result.returncode != 0
    assert "gitproof is not installed" in result.stderr and "git gpu-proof uninstall" in result.stderr
    assert git(tmp_path / "remote.git", "rev-parse", "-q", "--verify", "refs/heads/main", check=False) == ""


def test_post_commit_chains_and_only_warns_without_gitproof(repo, record, fake_bin):
    add_foreign_hook(repo / ".git" / "hooks", "post-commit")
    setup.install(open_repo(repo))
    result = run_git(repo, "commit", "-q", "--allow-empty", "-m", "one", env=env_with(record, fake_bin))
    assert result.returncode == 0
    assert (record / "foreign.args").read_text() == "\n"
    assert (record / "gitproof.args").read_text() == "hook post-commit\n"
    result = run_git(repo, "commit", "-q", "--allow-empty", "-m", "two", env=env_with(record, None))
    assert result.returncode == 0 and "gitproof is not installed" in result.stderr
    assert (record / "foreign.args").read_text() == "\n\n"
    assert git(repo, "log", "-1", "--format=%s") == "two"


def test_plain_git_log_stays_short_after_install(repo):
    git(repo, "notes", "--ref=gpu-proof", "add", "-m", "gpu-proof receipt stand-in", "HEAD")
    setup.install(open_repo(repo))
    assert "receipt stand-in" not in git(repo, "log", "-1")
    assert "receipt stand-in" in git(repo, "log", "-1", "--notes=gpu-proof")  # the full audit view


def test_install_removes_the_display_ref_an_older_install_set(repo):
    git(repo, "config", "--add", "notes.displayRef", NOTES_REF)  # what gitproof <= 0.2 wrote
    git(repo, "config", "--add", "notes.displayRef", "refs/notes/commits")  # the user's own
    git(repo, "notes", "--ref=gpu-proof", "add", "-m", "gpu-proof receipt stand-in", "HEAD")
    assert "receipt stand-in" in git(repo, "log", "-1")
    result = gp(repo, "install")
    assert result.returncode == 0, result.stderr
    assert "notes.displayRef = refs/notes/gpu-proof: removed (an older install set it)" in result.stdout
    assert git(repo, "config", "--get-all", "notes.displayRef") == "refs/notes/commits"
    assert "receipt stand-in" not in git(repo, "log", "-1")
    again = json.loads(gp(repo, "install", "--json").stdout)
    assert again["changed"] is False and "notes.displayRef" not in {c["key"] for c in again["config"]}


def test_install_reports_the_display_ref_removal_as_a_change(repo):
    setup.install(open_repo(repo))
    git(repo, "config", "--add", "notes.displayRef", NOTES_REF)
    report = setup.install(open_repo(repo))
    assert report.changed
    assert [(c.key, c.outcome) for c in report.config if c.outcome != setup.UNCHANGED] == [
        ("notes.displayRef", setup.REMOVED)]


@pytest.mark.parametrize("rewrite", [["commit", "--amend", "--allow-empty", "-q", "-m", "amended"],
                                     ["rebase", "-q", "--force-rebase", "HEAD~1"]])
def test_rewritten_commit_is_validated_without_a_copied_note(repo, rewrite, tmp_path):
    """Nothing copies the note any more: the receipt is found by the rewritten commit's trees."""
    key = generate_key(tmp_path / "keys")
    trust(repo, key)
    write_files(repo, {"src/more.py": "x = 1\n"})
    commit_all(repo, "second")
    setup.install(open_repo(repo))
    old = git(repo, "rev-parse", "HEAD")
    attach_receipt(repo, key)
    # a new committer date, so even a same-second rebase makes a new commit
    env = {**os.environ, "GIT_COMMITTER_DATE": "2001-02-03T04:05:06Z"}
    assert run_git(repo, *rewrite, env=env).returncode == 0
    assert git(repo, "rev-parse", "HEAD") != old
    assert git(repo, "notes", "--ref=gpu-proof", "list", "HEAD", check=False) == ""  # no copy was made
    result = gp(repo, "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    validated_by = json.loads(result.stdout)["results"][0]["validated_by"]
    assert validated_by["note_commit"] == old and validated_by["relation"] == "same code"


# -- forced fetch refspecs -------------------------------------------------------------------


@pytest.mark.parametrize("refspec,warned", [
    ("+refs/notes/*:refs/notes/*", True),
    ("+refs/notes/gpu-proof:refs/notes/gpu-proof", True),
    ("refs/notes/*:refs/notes/*", False),
    ("+refs/notes/*:refs/remotes/origin/notes/*", False),
])
def test_forced_fetch_refspec_is_warned_about(repo, tmp_path, refspec, warned):
    bare_remote(repo, tmp_path)
    git(repo, "config", "--add", "remote.origin.fetch", refspec)
    fetch_before = git(repo, "config", "--get-all", "remote.origin.fetch")
    report = setup.install(open_repo(repo))
    assert any("forced" in w and refspec in w for w in report.warnings) is warned
    assert git(repo, "config", "--get-all", "remote.origin.fetch") == fetch_before
    result = gp(repo, "install")
    assert ("git gpu-proof fetch" in result.stderr) is warned


# -- uninstall ---------------------------------------------------------------------------------


def test_uninstall_restores_everything_byte_for_byte(repo):
    hooks = repo / ".git" / "hooks"
    add_foreign_hook(hooks)
    git(repo, "config", "notes.rewriteMode", "concatenate")  # a [notes] section of the user's
    git(repo, "notes", "--ref=gpu-proof", "add", "-m", "keep me", "HEAD")
    before = state(repo)
    setup.install(open_repo(repo))
    assert state(repo) != before
    report = setup.uninstall(open_repo(repo))
    assert [h.outcome for h in report.hooks] == [setup.RESTORED, setup.REMOVED]
    assert state(repo) == before
    assert git(repo, "notes", "--ref=gpu-proof", "show", "HEAD") == "keep me"
    again = gp(repo, "uninstall")
    assert again.returncode == 0 and state(repo) == before
    assert "not installed by gitproof" in again.stdout


def test_uninstall_from_a_fresh_repository_leaves_config_as_it_was(repo):
    before = state(repo)
    setup.install(open_repo(repo))
    result = gp(repo, "uninstall", "--json")
    assert result.returncode == 0
    assert {c["key"]: c["outcome"] for c in json.loads(result.stdout)["config"]} == {
        "notes.displayRef": setup.ABSENT, "notes.rewriteRef": setup.ABSENT,
        setup.MERGE_STRATEGY_KEY: setup.REMOVED}
    assert state(repo) == before


@pytest.mark.parametrize("key", ["notes.displayRef", "notes.rewriteRef"])
def test_uninstall_still_removes_what_an_older_install_set(repo, key):
    before = state(repo)
    setup.install(open_repo(repo))
    git(repo, "config", "--add", key, NOTES_REF)
    report = setup.uninstall(open_repo(repo))
    assert [c.outcome for c in report.config if c.key == key] == [setup.REMOVED]
    assert state(repo) == before


def test_uninstall_leaves_a_users_own_rewrite_ref(repo):
    setup.install(open_repo(repo))
    git(repo, "config", "--add", "notes.rewriteRef", "refs/notes/*")
    report = setup.uninstall(open_repo(repo))
    assert [c.outcome for c in report.config if c.key == "notes.rewriteRef"] == [setup.ABSENT]
    assert git(repo, "config", "--get-all", "notes.rewriteRef") == "refs/notes/*"


def test_uninstall_leaves_a_foreign_hook_alone(repo):
    setup.install(open_repo(repo))
    foreign = add_foreign_hook(repo / ".git" / "hooks").read_bytes()  # another tool took the slot
    report = setup.uninstall(open_repo(repo))
    assert report.hooks[0].outcome == setup.FOREIGN
    assert (repo / ".git" / "hooks" / "pre-push").read_bytes() == foreign


def test_commands_outside_a_repository(tmp_path):
    for command in ("install", "uninstall"):
        result = gp(tmp_path, command)
        assert result.returncode == 2 and "not inside a git repository" in result.stderr
