"""The repository's policy: ``[tool.gpu_proof]`` in pyproject.toml.

Unknown keys and wrong types are errors, because a typo must never quietly
weaken what gets checked. Personal settings (signing key, principal) come
from git config instead.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pygit2

from gitproof.fingerprint import FingerprintError, normalize_path

PYPROJECT = "pyproject.toml"
DEFAULT_MARKER = "gpu_proof"
MARKER_ALIASES = {"gpu_proof": ("gpu_proof", "gpu_equivalence")}


class PolicyError(Exception):
    """The policy cannot be read or is invalid; the message names the problem."""


@dataclass(frozen=True)
class Policy:
    fingerprint_paths: list[str] = field(default_factory=lambda: ["src", "tests"])
    required_marker: str = DEFAULT_MARKER
    allowed_signers: str | None = None
    include_gpu_uuid: bool = True
    push_check: str = "tip"
    push_refs: list[str] = field(default_factory=lambda: ["refs/heads/*"])
    source: str = "defaults"

    @property
    def markers(self) -> tuple[str, ...]:
        """The marker and its aliases: tests carrying any of them are GPU tests."""
        return MARKER_ALIASES.get(self.required_marker, (self.required_marker,))


_TYPES: dict[str, type] = {
    "fingerprint_paths": list,
    "required_marker": str,
    "allowed_signers": str,
    "include_gpu_uuid": bool,
    "push_check": str,
    "push_refs": list,
}
PUSH_CHECKS = ("tip", "every")


def policy_from_table(table: dict[str, Any], source: str) -> Policy:
    known = {f.name for f in fields(Policy)} - {"source"}
    for key, value in table.items():
        if key not in known:
            raise PolicyError(f"{source}: unknown key {key!r} in [tool.gpu_proof] "
                              f"(known keys: {', '.join(sorted(known))})")
        expected = _TYPES[key]
        if not isinstance(value, expected):
            raise PolicyError(f"{source}: [tool.gpu_proof] {key} must be a "
                              f"{expected.__name__}, not {type(value).__name__}")
    values = dict(table)
    if values.get("push_check", "tip") not in PUSH_CHECKS:
        raise PolicyError(f"{source}: [tool.gpu_proof] push_check must be one of "
                          f"{', '.join(PUSH_CHECKS)}, not {values['push_check']!r}")
    if not all(isinstance(r, str) and r.startswith("refs/") for r in values.get("push_refs", [])):
        raise PolicyError(f"{source}: [tool.gpu_proof] push_refs must list ref patterns "
                          "such as \"refs/heads/*\"")
    if "fingerprint_paths" in values:
        values["fingerprint_paths"] = _paths(values["fingerprint_paths"], source)
    return Policy(**values, source=source)


def _paths(raw: list[Any], source: str) -> list[str]:
    if not raw or not all(isinstance(p, str) for p in raw):
        raise PolicyError(f"{source}: [tool.gpu_proof] fingerprint_paths must be a "
                          "non-empty list of strings")
    try:
        paths = [normalize_path(p) for p in raw]
    except FingerprintError as exc:
        raise PolicyError(f"{source}: {exc}") from exc
    if len(set(paths)) != len(paths):
        raise PolicyError(f"{source}: [tool.gpu_proof] fingerprint_paths lists a path twice")
    return paths


def policy_from_toml(text: str, source: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
    table = data.get("tool", {}).get("gpu_proof", {})
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [tool.gpu_proof] must be a table")
    return policy_from_table(table, source)


def load_policy(repo: pygit2.Repository, rev: str | None = None) -> Policy:
    """Policy from the working tree's pyproject.toml, or from a revision's."""
    if rev is not None:
        return _policy_at(repo, rev)
    if repo.workdir is None:
        return _policy_at(repo, "HEAD")
    path = Path(repo.workdir) / PYPROJECT
    if not path.exists():
        return Policy()
    return policy_from_toml(path.read_text(encoding="utf-8"), str(path))


def _policy_at(repo: pygit2.Repository, rev: str) -> Policy:
    try:
        commit = repo.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, pygit2.GitError, ValueError) as exc:
        raise PolicyError(f"cannot read the policy at {rev!r}: no such revision") from exc
    try:
        blob = commit.tree[PYPROJECT]
    except KeyError:
        return Policy(source=f"{rev}: (no {PYPROJECT})")
    return policy_from_toml(repo[blob.id].data.decode("utf-8"), f"{rev}:{PYPROJECT}")
