"""pytest-gpu-proof's ``[tool.gpu_proof]`` keys, read the way gitproof means them.

pytest-gpu-proof (0.4.x) keeps its settings in the same table. A team that
moves over must not be stopped by "unknown policy key" on its first run, so
each of its keys is recognised here: mapped where gitproof has the same
meaning, or named in one warning that says what to use instead. Keys that
neither tool knows stay errors (in :mod:`gitproof.policy`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitproof.errors import GitproofError
from gitproof.fingerprint import ROOT
from gitproof.receipt import MODES

PEER = "pytest-gpu-proof"

# Keys whose value gitproof takes over, each under its own name.
RENAMED = {"record_gpu_uuid": "include_gpu_uuid"}

# Keys that are personal or per-run settings here (not verification policy):
# kept apart, used by the recorder as defaults under its flags.
PERSONAL = {
    "key_path": "signing key (like `run --key`; default git config user.signingKey)",
    "github_username": "signer principal (like `run --principal`)",
    "mode": "mode recorded by `run` (like `run --mode`)",
}

# Keys with no counterpart, and what to do instead.
REPLACED = {
    "output": "receipts are git notes on the commit (refs/notes/gpu-proof), never a file; "
              "see them with `git gpu-proof show`",
    "signing_backend": "every receipt is signed through ssh-keygen with any key type it supports; "
                       "for an unsigned dry run use `git gpu-proof run --unsigned`",
    "fingerprint_extra_paths": "only committed content is fingerprinted (git tree ids); commit "
                               "generated inputs under a fingerprint path, or they are not covered",
    "fingerprint_excluded_paths": "a receipt lives in a note, never in the tree, so nothing needs "
                                  "excluding; choose narrower fingerprint_paths instead",
    "shard_name": "define the shard as [tool.gpu_proof.shards.NAME] with paths = [...] and run it "
                  "with `git gpu-proof run --shard NAME` (`git gpu-proof migrate` writes the table)",
    "shard_fingerprint_paths": "a shard's paths are [tool.gpu_proof.shards.NAME] paths = [...] "
                               "(`git gpu-proof migrate` writes the table)",
    "shard_fingerprint_extra_paths": "only committed content is fingerprinted; commit generated "
                                     "inputs under the shard's paths",
    "best_effort": "refused on purpose: a run that cannot record its receipt always fails, so a "
                   "missing receipt is never mistaken for a recorded one",
}

PEER_KEYS = frozenset(RENAMED) | frozenset(PERSONAL) | frozenset(REPLACED)


class CompatError(GitproofError, ValueError):
    """A pytest-gpu-proof key holds a value that cannot mean anything here."""


@dataclass(frozen=True)
class Personal:
    """Per-run defaults a pytest-gpu-proof table sets: flags still win over them."""

    key: str | None = None
    principal: str | None = None
    mode: str | None = None


@dataclass
class Translation:
    table: dict[str, Any]
    personal: Personal
    notes: list[str] = field(default_factory=list)


def split_paths(value: Any) -> Any:
    """pytest-gpu-proof's comma-separated path string as a list; other values unchanged."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def translate(table: dict[str, Any], source: str) -> Translation:
    """``table`` with pytest-gpu-proof's keys mapped, or set aside with a warning each."""
    ours = {k: v for k, v in table.items() if k not in PEER_KEYS}
    if "fingerprint_paths" in ours:
        ours["fingerprint_paths"] = split_paths(ours["fingerprint_paths"])
    elif PEER_KEYS & set(table):  # a pytest-gpu-proof table: its default is the whole repository
        ours["fingerprint_paths"] = [ROOT]
    for key, target in RENAMED.items():
        if key not in table:
            continue
        if target in table and table[target] != table[key]:
            raise CompatError(f"{source}: {key} ({PEER}'s name) and {target} disagree; keep only {target}")
        if not isinstance(table[key], bool):
            raise CompatError(f"{source}: {key} must be true or false, not {table[key]!r}")
        ours[target] = table[key]  # the same meaning: no warning, `migrate` renames it
    personal = _personal(table, source)
    notes = [f"{source}: {key} ({PEER}) is ignored: {REPLACED[key]}" for key in REPLACED if key in table]
    return Translation(ours, personal, notes)


def _personal(table: dict[str, Any], source: str) -> Personal:
    values: dict[str, str] = {}
    for key in PERSONAL:
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise CompatError(f"{source}: {key} must be a non-empty string, not {value!r}")
        if key == "mode" and value not in MODES:
            raise CompatError(f"{source}: mode must be one of {', '.join(MODES)}, not {value!r}")
        values[key] = value
    return Personal(key=values.get("key_path"), principal=values.get("github_username"),
                    mode=values.get("mode"))


# pytest-gpu-proof's pytest options. Those with a counterpart are declared by
# the plugin as aliases of ours; these have none, and are accepted so its
# users' commands keep working, each with a warning saying what to do instead.
REPLACED_OPTIONS = {
    "--gpu-proof-out": ("PATH", REPLACED["output"]),
    "--gpu-proof-fingerprint-extra-paths": ("PATHS", REPLACED["fingerprint_extra_paths"]),
    "--gpu-proof-fingerprint-excluded-paths": ("PATHS", REPLACED["fingerprint_excluded_paths"]),
    "--gpu-proof-shard-fingerprint-paths": ("PATHS", REPLACED["shard_fingerprint_paths"]),
    "--gpu-proof-shard-fingerprint-extra-paths": ("PATHS", REPLACED["shard_fingerprint_extra_paths"]),
    "--gpu-proof-best-effort": (None, REPLACED["best_effort"]),
    "--gpu-proof-max-age-days": ("N", "freshness is the verifier's policy, not the run's: set "
                                      "max_age_days in [tool.gpu_proof] or pass "
                                      "`git gpu-proof verify --max-age-days N`"),
}


def option_dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def add_replaced_options(group: Any) -> None:
    for option, (metavar, instead) in REPLACED_OPTIONS.items():
        takes = dict(action="store_true", default=False) if metavar is None else dict(default=None, metavar=metavar)
        group.addoption(option, help=f"pytest-gpu-proof's option, accepted and ignored: {instead}", **takes)


def replaced_option_notes(getoption: Any) -> list[str]:
    """A warning for each replaced pytest-gpu-proof option this run was given."""
    return [f"{option} ({PEER}) is ignored: {instead}"
            for option, (_, instead) in REPLACED_OPTIONS.items()
            if getoption(option_dest(option)) not in (None, False)]
