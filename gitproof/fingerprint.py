"""The code fingerprint: git's own tree ids for the fingerprint paths.

For a commit this is a handful of tree lookups, whatever the repository's
size. For a working tree it is the trees those paths would have if
committed now: tracked changes plus untracked files that are not ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

import pygit2

Trees = dict[str, str | None]


class FingerprintError(Exception):
    """The fingerprint cannot be computed; the message says what to change."""


def normalize_path(path: str) -> str:
    cleaned = path.strip().strip("/")
    if not cleaned or cleaned.startswith("../") or "/../" in f"/{cleaned}/" or cleaned == "..":
        raise FingerprintError(f"fingerprint path {path!r} must be a path inside the repository")
    return cleaned


def tree_trees(tree: pygit2.Tree, paths: list[str]) -> Trees:
    """Object id of each path inside ``tree``; ``None`` where the path is absent."""
    trees: Trees = {}
    for path in paths:
        try:
            trees[path] = str(tree[path].id)
        except KeyError:
            trees[path] = None
    return trees


def commit_trees(repo: pygit2.Repository, commit: pygit2.Commit, paths: list[str]) -> Trees:
    return tree_trees(commit.tree, paths)


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
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def worktree_state(repo: pygit2.Repository, paths: list[str]) -> WorktreeState:
    """Fingerprint of the working tree as it would be committed now."""
    if repo.is_bare:
        raise FingerprintError("this is a bare repository; run inside a working tree")
    head = repo.head.peel(pygit2.Commit)
    head_trees = commit_trees(repo, head, paths)
    status = repo.status(untracked_files="all", ignored=False)
    caches = [p for p, f in status.items() if f & pygit2.enums.FileStatus.WT_NEW and _is_bytecode_cache(p)]
    for path in caches:
        del status[path]
    changed = sorted(p for p, flags in status.items() if _under(p, paths) and not _only_ignored(flags))
    dirty_outside = any(not _under(p, paths) for p in status)
    if not changed:
        return WorktreeState(head_trees, head_trees, [], dirty_outside)
    deleted = [p for p in changed if status[p] & pygit2.enums.FileStatus.WT_DELETED]
    leave_out = deleted + [p for p in caches if _under(p, paths)]
    return WorktreeState(_staged_trees(repo, paths, leave_out), head_trees, changed, dirty_outside)


def _is_bytecode_cache(path: str) -> bool:
    """Python's caches, which the test run itself writes: never part of the code.

    Only untracked ones are skipped, as if they were in .gitignore."""
    parts = path.split("/")
    return "__pycache__" in parts or ".pytest_cache" in parts or path.endswith((".pyc", ".pyo"))


def _only_ignored(flags: int) -> bool:
    return flags == pygit2.enums.FileStatus.IGNORED


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
        root = repo[index.write_tree()]
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
    old_obj, new_obj = repo.get(before), repo.get(after)
    if not isinstance(old_obj, pygit2.Tree) or not isinstance(new_obj, pygit2.Tree):
        return [path]
    diff = repo.diff(old_obj, new_obj)
    return [f"{path}/{patch.delta.new_file.path}" for patch in diff]
