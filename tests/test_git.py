"""gitproof.git: the repository plumbing, against real repositories made with git."""
from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from gitproof import git as plumbing
from tests.helpers import commit_all, git, write_files


def test_a_repository_is_found_from_a_subdirectory(repo):
    found = plumbing.open_repository(repo / "src")
    assert Path(found.workdir).resolve() == repo.resolve()
    assert plumbing.discover(repo / "src") is not None


def test_outside_a_repository_there_is_none(tmp_path):
    assert plumbing.discover(tmp_path) is None
    with pytest.raises(plumbing.NotARepositoryError, match=f"{tmp_path} is not inside a git repository"):
        plumbing.open_repository(tmp_path)


def test_a_repository_without_commits_opens(tmp_path):
    git(tmp_path, "init", "-q", "empty")
    assert plumbing.open_repository(tmp_path / "empty").head_is_unborn


def test_the_current_directory_is_the_default(repo, monkeypatch):
    monkeypatch.chdir(repo / "tests")
    assert Path(plumbing.open_repository().workdir).resolve() == repo.resolve()


def test_hooks_live_in_the_common_dir_of_a_linked_worktree(repo, tmp_path):
    git(repo, "worktree", "add", "-q", str(tmp_path / "linked"))
    linked = plumbing.open_repository(tmp_path / "linked")
    assert plumbing.git_dir(linked) != plumbing.common_dir(linked)
    assert plumbing.common_dir(linked) == (repo / ".git").resolve()
    assert plumbing.hooks_dir(linked) == (repo / ".git" / "hooks").resolve()


@pytest.mark.parametrize("value, expected", [
    (".githooks", "{root}/.githooks"),
    ("{tmp}/shared-hooks", "{tmp}/shared-hooks"),
    ("", "{root}/.git/hooks"),
])
def test_core_hooks_path_is_taken_from_the_top_of_the_working_tree(repo, tmp_path, value, expected):
    git(repo, "config", "core.hooksPath", value.format(tmp=tmp_path))
    found = plumbing.hooks_dir(plumbing.open_repository(repo / "src"))
    assert found == Path(expected.format(root=repo.resolve(), tmp=tmp_path))


def test_a_bare_repository_takes_a_relative_hooks_path_from_its_git_dir(tmp_path):
    git(tmp_path, "init", "-q", "--bare", "remote.git")
    git(tmp_path / "remote.git", "config", "core.hooksPath", "my-hooks")
    bare = plumbing.open_repository(tmp_path / "remote.git")
    assert plumbing.hooks_dir(bare) == (tmp_path / "remote.git" / "my-hooks").resolve()


def test_config_values_and_where_they_come_from(repo):
    opened = plumbing.open_repository(repo)
    assert plumbing.config_value(opened, "gitproof.nothing") is None
    git(repo, "config", "--add", "notes.rewriteRef", "refs/notes/a")
    git(repo, "config", "--add", "notes.rewriteRef", "refs/notes/b")
    git(repo, "config", "Notes.Gpu-Proof.MergeStrategy", "union")
    assert plumbing.config_value(opened, "notes.rewriteRef") == "refs/notes/b"  # the last one wins
    assert [value for value, _ in plumbing.config_entries(opened, "notes.rewriteRef")] == [
        "refs/notes/a", "refs/notes/b"]
    assert plumbing.config_entries(opened, "notes.Gpu-Proof.mergestrategy") == [
        ("union", plumbing.ConfigLevel.LOCAL)]
    assert plumbing.config_level(opened, "notes.rewriteRef") == plumbing.ConfigLevel.LOCAL
    assert plumbing.config_level(opened, "notes.displayRef") is None


@pytest.mark.parametrize("value, expected", [("false", False), ("yes", True), ("maybe", None), (None, None)])
def test_config_bool(repo, value, expected):
    if value is not None:
        git(repo, "config", "notes.rewrite.amend", value)
    assert plumbing.config_bool(plumbing.open_repository(repo), "notes.rewrite.amend") is expected


def test_sha256_repositories_are_told_apart(repo):
    opened = plumbing.open_repository(repo)
    assert not plumbing.uses_sha256(opened)
    opened.config["extensions.objectformat"] = "sha256"  # what `git init --object-format=sha256` sets
    assert plumbing.uses_sha256(opened)


def test_revisions_name_commits_or_nothing(repo):
    opened = plumbing.open_repository(repo)
    head = git(repo, "rev-parse", "HEAD")
    blob = git(repo, "rev-parse", "HEAD:src/kernels.py")
    assert str(plumbing.find_commit(opened, "HEAD").id) == head
    assert str(plumbing.find_commit(opened, head[:12]).id) == head
    for nothing in ("no-such-branch", blob, "HEAD~5", "x" * 40, "HEAD^{tree}", ":/"):
        assert plumbing.find_commit(opened, nothing) is None
    with pytest.raises(plumbing.UnknownRevisionError, match="unknown revision 'no-such-branch'"):
        plumbing.resolve_commit(opened, "no-such-branch")


def test_commits_in_a_range_newest_first(repo):
    first = git(repo, "rev-parse", "HEAD")
    for n in range(3):
        write_files(repo, {f"src/f{n}.py": "x = 1\n"})
        commit_all(repo, f"change {n}\n\nbody")
    opened = plumbing.open_repository(repo)
    everything = plumbing.commits_in(opened, "HEAD", 10)
    assert [plumbing.subject(c) for c in everything[:3]] == ["change 2", "change 1", "change 0"]
    assert str(everything[-1].id) == first
    assert [plumbing.subject(c) for c in plumbing.commits_in(opened, f"{first}..", 10)] == [
        "change 2", "change 1", "change 0"]
    assert len(plumbing.commits_in(opened, "HEAD", 2)) == 2
    with pytest.raises(plumbing.UnknownRevisionError):
        plumbing.commits_in(opened, "nothing..HEAD", 10)


def test_subject_of_a_commit_without_a_message(repo):
    opened = plumbing.open_repository(repo)
    signature = pygit2.Signature("t", "t@example.com")
    empty = opened.create_commit(None, signature, signature, "", opened.head.peel().tree.id, [])
    assert plumbing.subject(opened[empty]) == ""


def test_the_default_remote_is_the_upstream_of_the_branch(repo):
    opened = plumbing.open_repository(repo)
    assert plumbing.default_remote(opened) == "origin"
    branch = opened.head.shorthand
    git(repo, "config", f"branch.{branch}.remote", "upstream")
    assert plumbing.default_remote(opened) == "upstream"
    git(repo, "checkout", "-q", "--detach")
    assert plumbing.default_remote(plumbing.open_repository(repo)) == "origin"
