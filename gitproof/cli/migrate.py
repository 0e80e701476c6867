"""``git gpu-proof migrate``: turn a pytest-gpu-proof configuration into gitproof's."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pygit2
import typer

from gitproof.cli.common import emit_json, fail, open_repo
from gitproof.cli.signers import _key_entry, _read_source, add_or_fail
from gitproof.files import UnreadableFile, read_regular, write_atomically
from gitproof.migrate import OLD_RECEIPT, Migration, MigrateError, plan
from gitproof.policy import PYPROJECT, Policy
from gitproof.trust import configured_signers_file
from gitproof.trust.github import is_valid_username, username_problem


def command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing "
                                 "and fetch no keys."),
    source: Optional[str] = typer.Option(
        None, "--from", metavar="FILE|URL",
        help="Read github_username's public keys from a local .keys/.pub file or an http(s) URL "
             "instead of <github_url>/USER.keys (for offline use)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Convert pytest-gpu-proof's [tool.gpu_proof] settings in pyproject.toml into gitproof's.

    Splits a comma-separated fingerprint_paths, writes pytest-gpu-proof's default
    (".", the whole repository) when none is set, renames record_gpu_uuid to
    include_gpu_uuid, turns shard_name into a [tool.gpu_proof.shards.NAME] table,
    and removes the keys that have no equivalent, saying what replaces each.
    With github_username, that user's public keys are added to the allowed_signers
    file (created as .gpu-proof/allowed_signers when none is configured), as
    `signers add --github` does. Comments and layout elsewhere in the file are kept.
    Exit status: 0 when migrated or nothing needed migrating, 2 when the file
    cannot be read or converted or the keys cannot be fetched (nothing written).
    """
    repo = open_repo()
    if repo.workdir is None:
        fail("migrate needs a working tree, not a bare repository")
    root = Path(repo.workdir)
    path = root / PYPROJECT
    try:
        text = read_regular(path, PYPROJECT).decode("utf-8")
    except (UnreadableFile, UnicodeDecodeError) as exc:
        fail(f"{exc}; migrate converts the [tool.gpu_proof] table of {path}")
    try:
        migration = plan(text, str(path), signers_configured=configured_signers_file(repo) is not None)
    except MigrateError as exc:
        fail(str(exc))
    keys_report = None
    if migration.github_user and not dry_run:
        keys_report = _add_signer_keys(repo, root, migration, source)
    if migration.changed and not dry_run:
        try:
            write_atomically(path, migration.new_text.encode("utf-8"))
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror or exc}")
    leftovers = [OLD_RECEIPT] if (root / OLD_RECEIPT).exists() else []
    if as_json:
        emit_json({"file": str(path), "dry_run": dry_run, "changed": migration.changed,
                   "written": migration.changed and not dry_run,
                   "changes": [c.to_json() for c in migration.changes],
                   "no_equivalent": [c.to_json() for c in migration.no_equivalent],
                   "signers": keys_report, "leftover_files": leftovers})
        return
    _report(path, migration, dry_run, keys_report, leftovers)


def _add_signer_keys(repo: pygit2.Repository, root: Path, migration: Migration,
                     source: str | None) -> dict[str, Any]:
    user = migration.github_user
    assert user is not None
    if not is_valid_username(user):
        fail(f"github_username: {username_problem(user)}")
    if migration.signers_file and not _inside(migration.signers_file):
        fail(f"allowed_signers = {migration.signers_file!r} is not a path inside the repository; "
             "migrate adds keys only to a file in the working tree")
    target = root / migration.signers_file if migration.signers_file else configured_signers_file(repo)
    if target is None:  # plan() names a file unless git config does; it was unset since
        fail("no allowed_signers file is configured (git config gpg.ssh.allowedSignersFile); nothing written")
    policy = Policy(github_url=migration.github_url) if migration.github_url else Policy()
    origin, keys = _read_source(source, user, policy)
    if not keys:
        fail(f"no SSH public keys for {user} in {origin}; nothing written")
    added, present = add_or_fail(target, user, keys)
    return {"principal": user, "file": str(target), "source": origin,
            "added": [_key_entry(k) for k in added], "already_present": [_key_entry(k) for k in present]}


def _inside(relative: str) -> bool:
    path = Path(relative)
    return not path.is_absolute() and ".." not in path.parts and relative.strip() not in ("", ".")


def _report(path: Path, migration: Migration, dry_run: bool, keys: dict[str, Any] | None,
            leftovers: list[str]) -> None:
    if not migration.changes:
        typer.echo(f"gpu-proof: {path} needs no migration: no pytest-gpu-proof settings found")
        return
    symbols = {"converted": "~", "renamed": "~", "added": "+", "removed": "-", "kept": "="}
    for change in migration.changes:
        typer.echo(f"  {symbols[change.action]} {change.key}: {change.action}: {change.detail}")
    if migration.github_user and dry_run:
        typer.echo(f"  + would add {migration.github_user}'s public keys to "
                   f"{migration.signers_file or 'the configured allowed_signers file'}")
    if keys:
        typer.echo(f"  + {len(keys['added'])} key(s) of {keys['principal']} added to {keys['file']}, "
                   f"{len(keys['already_present'])} already present (keys from {keys['source']})")
    for name in leftovers:
        typer.echo(f"  ! {name}: pytest-gpu-proof's receipt file is no longer read (receipts are git "
                   f"notes); remove it with `git rm {name}`")
    if not migration.changed:
        typer.echo(f"gpu-proof: {path} is already converted; nothing in it changed")
    elif dry_run:
        typer.echo(f"gpu-proof: would change {path}; dry run, nothing written")
    else:
        typer.echo(f"gpu-proof: changed {path}; review and commit it (and the allowed_signers file)")


def register(app: typer.Typer) -> None:
    app.command("migrate")(command)
