from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from gitproof.fingerprint import (FingerprintError, changed_fingerprint_paths, commit_trees,
                                  normalize_path, require_some_present, worktree_state)
from tests.helpers import commit_all, git, write_files

PATHS = ["src", "tests"]


def test_clean_checkout_trees_are_exactly_git_rev_parse(repo: Path):
    r = pygit2.Repository(str(repo))
    trees = commit_trees(r, r.head.peel(), PATHS)
    assert trees == {p: git(repo, "rev-parse", f"HEAD:{p}") for p in PATHS}
    state = worktree_state(r, PATHS)
    assert state.matches_head and state.trees == trees and not state.dirty_outside


def test_dirty_tree_fingerprint_is_what_a_commit_would_record(repo: Path):
    write_files(repo, {"src/new.py": "x = 1\n", "src/build.log": "ignored\n", ".gitignore": "*.log\n"})
    (repo / "src" / "kernels.py").write_text("changed\n")
    index_before = (repo / ".git" / "index").read_bytes()
    state = worktree_state(pygit2.Repository(str(repo)), PATHS)
    assert (repo / ".git" / "index").read_bytes() == index_before, "the real index must be untouched"
    assert not state.matches_head
    assert state.changed_paths == ["src/kernels.py", "src/new.py"]
    assert state.dirty_outside  # .gitignore is new and outside src/ and tests/
    commit_all(repo, "record it")
    assert state.trees == {p: git(repo, "rev-parse", f"HEAD:{p}") for p in PATHS}


def test_untracked_bytecode_caches_are_not_code(repo: Path):
    write_files(repo, {"tests/__pycache__/test_kernels.cpython-311.pyc": "bytecode",
                       "src/.pytest_cache/v/x": "cache", "src/stray.pyc": "bytecode"})
    state = worktree_state(pygit2.Repository(str(repo)), PATHS)
    assert state.matches_head and state.changed_paths == []
    write_files(repo, {"src/new.py": "y = 1\n"})
    state = worktree_state(pygit2.Repository(str(repo)), PATHS)
    assert state.changed_paths == ["src/new.py"]
    git(repo, "add", "src/new.py")
    git(repo, "commit", "-qm", "new file only")
    assert state.trees["src"] == git(repo, "rev-parse", "HEAD:src")


def test_deleted_file_changes_the_fingerprint(repo: Path):
    (repo / "src" / "kernels.py").unlink()
    (repo / "src" / "other.py").write_text("y = 2\n")
    state = worktree_state(pygit2.Repository(str(repo)), PATHS)
    commit_all(repo, "delete")
    assert state.trees["src"] == git(repo, "rev-parse", "HEAD:src")


def test_change_outside_paths_is_recorded_but_does_not_change_trees(repo: Path):
    (repo / "README.md").write_text("docs only\n")
    state = worktree_state(pygit2.Repository(str(repo)), PATHS)
    assert state.matches_head and state.dirty_outside and state.changed_paths == []


def test_missing_path_is_recorded_as_absent_and_all_missing_is_an_error(repo: Path):
    r = pygit2.Repository(str(repo))
    trees = commit_trees(r, r.head.peel(), ["src", "cuda"])
    assert trees["cuda"] is None and trees["src"]
    require_some_present(trees)
    with pytest.raises(FingerprintError, match="fingerprint_paths"):
        require_some_present(commit_trees(r, r.head.peel(), ["nope", "cuda"]))


@pytest.mark.parametrize("bad", ["", "/", "../x", "a/../../b", "..", "./src", "src/./k", "src//k", "src\\k"])
def test_paths_outside_the_repository_are_refused(bad):
    with pytest.raises(FingerprintError):
        normalize_path(bad)


def test_changed_paths_name_the_files(repo: Path):
    r = pygit2.Repository(str(repo))
    before = commit_trees(r, r.head.peel(), PATHS)
    (repo / "src" / "kernels.py").write_text("changed\n")
    commit_all(repo)
    after = commit_trees(r, r.head.peel(), PATHS)
    assert changed_fingerprint_paths(r, before, after) == ["src/kernels.py"]
    assert changed_fingerprint_paths(r, before, {**after, "tests": None}) == ["src/kernels.py", "tests/ (removed)"]


@pytest.mark.parametrize("flag", ["--skip-worktree", "--assume-unchanged"])
def test_changes_hidden_from_git_status_are_refused(repo: Path, flag):
    git(repo, "update-index", flag, "src/kernels.py")
    (repo / "src" / "kernels.py").write_text("edited but hidden\n")
    with pytest.raises(FingerprintError, match="hidden from git status"):
        worktree_state(pygit2.Repository(str(repo)), PATHS)


def test_symlinked_fingerprint_path_is_refused(repo: Path):
    git(repo, "mv", "src", "realsrc")
    (repo / "src").symlink_to("realsrc")
    commit_all(repo, "link")
    r = pygit2.Repository(str(repo))
    with pytest.raises(FingerprintError, match="symbolic link"):
        commit_trees(r, r.head.peel(), PATHS)


def test_dirty_submodule_under_the_paths_is_refused(repo: Path, tmp_path: Path):
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    write_files(lib, {"k.cu": "kernel\n"})
    commit_all(lib, "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "src/lib")
    commit_all(repo, "submodule")
    assert worktree_state(pygit2.Repository(str(repo)), PATHS).matches_head
    (repo / "src" / "lib" / "k.cu").write_text("edited inside the submodule\n")
    with pytest.raises(FingerprintError, match="submodule src/lib"):
        worktree_state(pygit2.Repository(str(repo)), PATHS)


def test_links_inside_the_fingerprint_paths_are_fine_and_links_out_of_them_are_named(repo: Path):
    from gitproof.fingerprint import links_leaving

    (repo / "lib").mkdir()
    (repo / "lib" / "real.py").write_text("def k():\n    return 1\n")
    (repo / "src" / "inner.py").symlink_to("kernels.py")
    (repo / "src" / "out.py").symlink_to("../lib/real.py")
    (repo / "src" / "abs.py").symlink_to("/etc/hostname")
    (repo / "tests" / "to_src.py").symlink_to("../src/kernels.py")
    commit_all(repo, "links")
    r = pygit2.Repository(str(repo))
    trees = commit_trees(r, r.head.peel(pygit2.Commit), ["src", "tests"])
    assert sorted(links_leaving(r, trees)) == ["src/abs.py -> /etc/hostname", "src/out.py -> ../lib/real.py"]
    assert links_leaving(r, commit_trees(r, r.head.peel(pygit2.Commit), ["tests"])) == [
        "tests/to_src.py -> ../src/kernels.py"]  # src is not fingerprinted there


def test_run_refuses_to_record_over_a_link_that_leads_outside(cli_project: Path):
    from tests.remotes import gp

    (cli_project / "lib").mkdir()
    (cli_project / "lib" / "real.py").write_text("def k():\n    return 1\n")
    (cli_project / "src" / "kernel.py").symlink_to("../lib/real.py")
    commit_all(cli_project, "kernel lives outside src")
    refused = gp(cli_project, "run", "--unsigned")
    assert refused.returncode == 4
    assert "symbolic links under the fingerprint paths lead outside them: src/kernel.py -> ../lib/real.py" \
        in refused.stdout + refused.stderr
    assert gp(cli_project, "show").returncode == 1  # nothing recorded


def test_a_link_to_an_ignored_file_inside_the_paths_is_named_too(repo: Path):
    from gitproof.fingerprint import links_leaving

    write_files(repo, {".gitignore": "src/_gen/\n", "src/_gen/real.py": "x = 1\n"})
    (repo / "src" / "k.py").symlink_to("_gen/real.py")
    commit_all(repo, "a link into an ignored folder")
    r = pygit2.Repository(str(repo))
    trees = commit_trees(r, r.head.peel(pygit2.Commit), ["src", "tests"])
    assert links_leaving(r, trees) == ["src/k.py -> _gen/real.py"]
