"""The code fingerprint: git's own tree ids for the fingerprint paths.

For a commit this is a handful of tree lookups, whatever the repository's
size. For a working tree it is the trees those paths would have if
committed now: tracked changes plus untracked files that are not ignored.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pygit2

from gitproof.errors import GitproofError
from gitproof.git import lookup

Trees = dict[str, str | None]


class FingerprintError(GitproofError):
    """The fingerprint cannot be computed; the message says what to change."""


ROOT = "."  # the whole repository: its root tree


def normalize_path(path: str) -> str:
    """A repository path as git names it in trees: ``a/b``, or ``.`` for the root tree.

    Anything git would never find (``./src``, ``src//k``, ``src\\k``, ``..``)
    is refused rather than silently recorded as absent forever.
    """
    if path.strip() in (ROOT, "./"):
        return ROOT
    cleaned = path.strip().strip("/")
    parts = cleaned.split("/")
    if not cleaned or "\\" in cleaned or any(part in ("", ".", "..") for part in parts):
        raise FingerprintError(f"fingerprint path {path!r} must be a plain path inside the repository, "
                               "such as \"src\" or \"src/kernels\"")
    return cleaned


def tree_trees(tree: pygit2.Tree, paths: list[str]) -> Trees:
    """Object id of each path inside ``tree``; ``None`` where the path is absent."""
    trees: Trees = {}
    for path in paths:
        if path == ROOT:
            trees[path] = str(tree.id)
            continue
        try:
            entry = tree[path]
        except KeyError:
            trees[path] = None
            continue
        if entry.filemode == pygit2.enums.FileMode.LINK:
            raise FingerprintError(f"fingerprint path {path!r} is a symbolic link: its id would cover "
                                   "the link text, not the code; list the real directory instead")
        trees[path] = str(entry.id)
    return trees


def commit_trees(repo: pygit2.Repository, commit: pygit2.Commit, paths: list[str]) -> Trees:
    return tree_trees(commit.tree, paths)


def links_leaving(repo: pygit2.Repository, trees: Trees) -> list[str]:
    """Symbolic links in the fingerprinted trees whose targets lie outside every fingerprint path.

    A tree id covers a link's text, not what it points to: ``src/k.py -> ../lib/real.py``
    lets the tested code change while the fingerprint stays the same. Links that stay
    inside the fingerprint paths are fine, since their targets are covered too.
    """
    found: list[str] = []
    for path, tree_id in trees.items():
        tree = lookup(repo, tree_id) if tree_id else None
        if isinstance(tree, pygit2.Tree):
            _collect_links(repo, tree, path, trees, found)
    return found


def _fingerprinted(repo: pygit2.Repository, trees: Trees, path: str) -> bool:
    """Is ``path`` an entry of the fingerprinted trees (not merely under their folders: a
    git-ignored file there is outside the fingerprint)?"""
    for root, tree_id in trees.items():
        if tree_id is None or not _under(path, [root]):
            continue
        tree = lookup(repo, tree_id)
        if path == root:
            return True
        try:
            return isinstance(tree, pygit2.Tree) and tree[_inside(root, path)] is not None
        except KeyError:
            return False
    return False


def _collect_links(repo: pygit2.Repository, tree: pygit2.Tree, where: str, trees: Trees,
                   found: list[str]) -> None:
    for entry in tree:
        name = _joined(where, cast(str, entry.name))  # stubs: Optional; a tree's entries have names
        if entry.filemode == pygit2.enums.FileMode.LINK:
            target = cast(pygit2.Blob, repo[entry.id]).data.decode("utf-8", errors="surrogateescape")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../") \
                    or not _fingerprinted(repo, trees, resolved):
                found.append(f"{name} -> {target}")
        elif entry.type_str == "tree":
            _collect_links(repo, cast(pygit2.Tree, repo[entry.id]), name, trees, found)


def require_some_present(trees: Trees) -> None:
    if all(tree is None for tree in trees.values()):
        names = ", ".join(trees) or "(none)"
        raise FingerprintError(
            f"none of the fingerprint paths exist ({names}); set "
            "[tool.gpu_proof] fingerprint_paths in pyproject.toml to the directories "
            "holding your GPU code and tests"
        )


@dataclass(frozen=True)
class WorktreeState:
    """What the working tree holds, compared with HEAD."""

    trees: Trees
    head_trees: Trees
    changed_paths: list[str]
    dirty_outside: bool

    @property
    def matches_head(self) -> bool:
        return self.trees == self.head_trees


def _under(path: str, prefixes: list[str]) -> bool:
    return any(p == ROOT or path == p or path.startswith(p + "/") for p in prefixes)


def _joined(folder: str, name: str) -> str:
    return name if folder == ROOT else f"{folder}/{name}"


def _inside(root: str, path: str) -> str:
    """``path`` relative to the fingerprint path ``root`` that holds it."""
    return path if root == ROOT else path[len(root) + 1:]


def worktree_state(repo: pygit2.Repository, paths: list[str]) -> WorktreeState:
    """Fingerprint of the working tree as it would be committed now."""
    if repo.is_bare:
        raise FingerprintError("this is a bare repository; run inside a working tree")
    head = repo.head.peel(pygit2.Commit)
    head_trees = commit_trees(repo, head, paths)
    _refuse_hidden_changes(repo, paths)
    status = repo.status(untracked_files="all", ignored=False)
    caches = [p for p, f in status.items() if f & pygit2.enums.FileStatus.WT_NEW and _is_bytecode_cache(p)]
    for path in caches:
        del status[path]
    changed = sorted(p for p in status if _under(p, paths))
    dirty_outside = any(not _under(p, paths) for p in status)
    if not changed:
        return WorktreeState(head_trees, head_trees, [], dirty_outside)
    deleted = [p for p in changed if status[p] & pygit2.enums.FileStatus.WT_DELETED]
    leave_out = deleted + [p for p in caches if _under(p, paths)]
    return WorktreeState(_staged_trees(repo, paths, leave_out), head_trees, changed, dirty_outside)


_ASSUME_VALID = 0x8000  # git_index_entry.flags: `git update-index --assume-unchanged`
_SKIP_WORKTREE = 0x4000  # git_index_entry.flags_extended: `--skip-worktree`, sparse checkout


def _refuse_hidden_changes(repo: pygit2.Repository, paths: list[str]) -> None:
    """Changes that git status cannot see must not be taken for committed code.

    pygit2's IndexEntry does not expose the index flags, so they are read
    through pygit2's own libgit2 bindings.
    """
    hidden: list[str] = []
    submodules: list[str] = []
    index = repo.index
    get, gitlink = pygit2.C.git_index_get_byindex, int(pygit2.enums.FileMode.COMMIT)
    for position in range(pygit2.C.git_index_entrycount(index._index)):
        raw = get(index._index, position)
        concealed = raw.flags & _ASSUME_VALID or raw.flags_extended & _SKIP_WORKTREE
        if not concealed and raw.mode != gitlink:
            continue  # nearly every entry: its path is never decoded (20,000 entries: 40 ms less)
        path = pygit2.ffi.string(raw.path).decode("utf-8", errors="replace")
        if not _under(path, paths):
            continue
        (hidden if concealed else submodules).append(path)
    if hidden:
        raise FingerprintError("files under the fingerprint paths are hidden from git status "
                               f"(assume-unchanged or skip-worktree): {', '.join(hidden[:5])}; clear it with "
                               "`git update-index --no-assume-unchanged --no-skip-worktree <file>`")
    for path in submodules:
        _refuse_dirty_submodule(repo, path)


def _refuse_dirty_submodule(repo: pygit2.Repository, path: str) -> None:
    try:
        sub = pygit2.Repository(str(Path(repo.workdir) / path))
    except pygit2.GitError:
        return  # not checked out: nothing in it can differ
    recorded = repo.index[path].id
    if sub.head_is_unborn or sub.head.target != recorded or sub.status(untracked_files="all", ignored=False):
        raise FingerprintError(f"submodule {path} under the fingerprint paths has changes its gitlink does "
                               "not record; commit them in the submodule and update the gitlink first")


def _is_bytecode_cache(path: str) -> bool:
    """Python's caches, which the test run itself writes: never part of the code.

    Only untracked ones are skipped, as if they were in .gitignore."""
    parts = path.split("/")
    return "__pycache__" in parts or ".pytest_cache" in parts or path.endswith((".pyc", ".pyo"))


def _staged_trees(repo: pygit2.Repository, paths: list[str], leave_out: list[str]) -> Trees:
    """Trees of ``paths`` if everything there were added now.

    Stages into the in-memory index only and rereads the index file
    afterwards, so the user's real staging area is never touched.
    """
    index = repo.index
    try:
        index.add_all(paths)
        for path in leave_out:  # deleted files (add_all usually drops them) and caches
            if path in index:
                index.remove(path)
        root = cast(pygit2.Tree, repo[index.write_tree()])
        return tree_trees(root, paths)
    finally:
        index.read(True)


def changed_fingerprint_paths(repo: pygit2.Repository, old: Trees, new: Trees) -> list[str]:
    """Files that differ between two fingerprints, for telling people why."""
    changed: list[str] = []
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path), new.get(path)
        if before == after:
            continue
        if before is None or after is None:
            changed.append(f"{path}/ ({'added' if before is None else 'removed'})")
            continue
        changed += _diff_objects(repo, path, before, after)
    return changed


def _diff_objects(repo: pygit2.Repository, path: str, before: str, after: str) -> list[str]:
    old_obj, new_obj = lookup(repo, before), lookup(repo, after)
    if not isinstance(old_obj, pygit2.Tree) or not isinstance(new_obj, pygit2.Tree):
        return [path]
    diff = repo.diff(old_obj, new_obj)  # type: ignore[call-overload]  # stubs lack trees
    return [_joined(path, patch.delta.new_file.path) for patch in diff]
