"""Rewriting a pytest-gpu-proof ``[tool.gpu_proof]`` table into gitproof's.

``plan`` works on the text of ``pyproject.toml`` alone and writes nothing,
so the command can show the same result with ``--dry-run``. Comments and
layout outside the changed keys are kept (tomlkit edits the document in
place rather than re-serializing it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitproof.errors import GitproofError
from gitproof import compat
from gitproof.fingerprint import ROOT

if TYPE_CHECKING:  # imported lazily: only `migrate` needs tomlkit
    from tomlkit.items import Array

DEFAULT_SIGNERS_FILE = ".gpu-proof/allowed_signers"
OLD_RECEIPT = "gpu-proof.json"


class MigrateError(GitproofError):
    """The configuration cannot be migrated; the message says why and what to do."""


@dataclass(frozen=True)
class Change:
    key: str
    action: str  # converted, renamed, added, removed, kept
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "action": self.action, "detail": self.detail}


@dataclass
class Migration:
    old_text: str
    new_text: str
    changes: list[Change] = field(default_factory=list)
    github_user: str | None = None  # whose keys go into allowed_signers
    github_url: str | None = None  # the table's github_url, where set
    signers_file: str | None = None  # where they go (relative to the repository root)

    @property
    def changed(self) -> bool:
        return self.new_text != self.old_text

    @property
    def no_equivalent(self) -> list[Change]:
        return [c for c in self.changes if c.action == "removed"]


def plan(text: str, source: str, signers_configured: bool = False) -> Migration:
    """The migration of ``text`` (a pyproject.toml); ``signers_configured``: git config
    already names an allowed_signers file, so none is added to the policy."""
    import tomlkit  # only `migrate` needs it
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text)
    except (TOMLKitError, RecursionError) as exc:
        raise MigrateError(f"{source}: not valid TOML: {exc}") from None
    tool = doc.get("tool")
    if tool is not None and not isinstance(tool, dict):
        raise MigrateError(f"{source}: [tool] must be a table")
    table: Any = tool.get("gpu_proof") if tool is not None else None  # a tomlkit table
    if table is not None and not isinstance(table, dict):
        raise MigrateError(f"{source}: [tool.gpu_proof] must be a table")
    migration = Migration(text, text)
    if table is None:  # pytest-gpu-proof with every default: the whole repository
        table = _new_table(doc)
    elif not _is_peer_table(table):
        return migration  # nothing of pytest-gpu-proof's to convert
    try:
        for step in (_fingerprint_paths, _renamed, _shard, _removed, _kept):
            migration.changes += step(table)
        migration.changes += _signers(table, migration, signers_configured)
        migration.new_text = tomlkit.dumps(doc)
    except (ValueError, TypeError, TOMLKitError) as exc:  # tomlkit: an inline table cannot take a table
        raise MigrateError(_layout_problem(source, exc)) from None
    _check_result(migration.new_text, table.unwrap(), source)
    return migration


def _new_table(doc: Any) -> Any:
    import tomlkit

    tool = doc.get("tool")
    if tool is None:
        tool = tomlkit.table(is_super_table=True)
        doc.add("tool", tool)
    tool["gpu_proof"] = tomlkit.table()
    return tool["gpu_proof"]


def _layout_problem(source: str, exc: Exception | str) -> str:
    return (f"{source}: cannot rewrite this layout of [tool.gpu_proof] ({exc}); move its keys into "
            "a plain [tool.gpu_proof] section (no inline table, no dotted tool.gpu_proof keys) and run "
            "migrate again")


def _check_result(new_text: str, intended: dict[str, Any], source: str) -> None:
    """The written file must read back as the table we meant: tomlkit places new tables
    wrongly under some layouts (dotted keys), and a lost shard would go unnoticed."""
    import tomllib

    written = tomllib.loads(new_text).get("tool", {}).get("gpu_proof")
    if written != intended:
        raise MigrateError(_layout_problem(source, "the rewritten table would not read back as intended"))


def _is_peer_table(table: dict[str, Any]) -> bool:
    """pytest-gpu-proof's keys are present, or only keys both tools share (its defaults
    then differ from ours, so the table still needs converting)."""
    shared = {"required_marker", "fail_on_skip", "fingerprint_paths", "max_age_days", "require_gpu"}
    return any(key in compat.PEER_KEYS for key in table) or (bool(table) and set(table) <= shared)


def _paths_array(paths: list[str]) -> Array:
    import tomlkit

    array = tomlkit.array()
    array.extend(paths)
    return array


def _fingerprint_paths(table: dict[str, Any]) -> list[Change]:
    value = table.get("fingerprint_paths")
    if value is None:
        table["fingerprint_paths"] = _paths_array([ROOT])
        return [Change("fingerprint_paths", "added",
                       "[\".\"]: pytest-gpu-proof's default, the whole repository. Every commit then "
                       "changes the fingerprint; narrow it (e.g. [\"src\", \"tests\"]) so commits that "
                       "touch neither keep their receipts")]
    if isinstance(value, str):
        paths = compat.split_paths(value)
        table["fingerprint_paths"] = _paths_array(paths)
        return [Change("fingerprint_paths", "converted", f"{value!r} -> {paths}")]
    return []


def _renamed(table: dict[str, Any]) -> list[Change]:
    changes = []
    for old, new in compat.RENAMED.items():
        if old not in table:
            continue
        value = table[old]
        del table[old]
        if new in table and table[new] != value:
            raise MigrateError(f"{old} and {new} disagree; decide which you mean and keep only {new}")
        table[new] = value
        changes.append(Change(old, "renamed", f"{new} = {str(value).lower()}"))
    return changes


def _shard(table: dict[str, Any]) -> list[Change]:
    name = table.get("shard_name")
    if name is None:
        return []
    if not isinstance(name, str) or not name:
        raise MigrateError(f"shard_name must be a non-empty string, not {name!r}")
    import tomlkit

    paths = compat.split_paths(table.get("shard_fingerprint_paths", table.get("fingerprint_paths", [ROOT])))
    shards = table.setdefault("shards", tomlkit.table(is_super_table=True))
    if name in shards:
        raise MigrateError(f"shard_name {name!r} is already defined under [tool.gpu_proof.shards]; "
                           "remove shard_name and shard_fingerprint_paths by hand")
    shard = tomlkit.table()
    shard["paths"] = _paths_array(list(paths))
    shards[name] = shard
    for key in ("shard_name", "shard_fingerprint_paths"):
        table.pop(key, None)
    return [Change("shard_name", "converted",
                   f"[tool.gpu_proof.shards.{name}] paths = {list(paths)}; record it with "
                   f"`git gpu-proof run --shard {name}` (or --gpu-proof-shard {name})")]


def _removed(table: dict[str, Any]) -> list[Change]:
    changes = []
    for key, instead in compat.REPLACED.items():
        if key in table:
            del table[key]
            changes.append(Change(key, "removed", instead))
    return changes


def _kept(table: dict[str, Any]) -> list[Change]:
    return [Change(key, "kept", f"read as the {meaning}")
            for key, meaning in compat.PERSONAL.items() if key in table]


def _signers(table: dict[str, Any], migration: Migration, signers_configured: bool) -> list[Change]:
    user = table.get("github_username")
    if not isinstance(user, str) or table.get("signer_source") == "github":
        return []
    migration.github_user = user
    url = table.get("github_url")
    migration.github_url = url if isinstance(url, str) else None
    configured = table.get("allowed_signers")
    if configured is not None and not isinstance(configured, str):
        raise MigrateError("allowed_signers holds pytest-gpu-proof's list of GitHub usernames; here it "
                           "is the path of an allowed_signers file: move the names to signers = [...] "
                           "and run migrate again")
    if isinstance(configured, str):
        migration.signers_file = configured
        return []
    if signers_configured:
        return []  # git config gpg.ssh.allowedSignersFile names it; the command resolves it
    table["allowed_signers"] = DEFAULT_SIGNERS_FILE
    migration.signers_file = DEFAULT_SIGNERS_FILE
    return [Change("allowed_signers", "added",
                   f"{DEFAULT_SIGNERS_FILE}: the keys allowed to sign receipts, starting with "
                   f"{user}'s; commit it, and add teammates with `git gpu-proof signers add --github USER`")]
