"""The repository's policy: ``[tool.gpu_proof]`` in pyproject.toml, a ``--policy`` file, flags.

Layers, strongest first: command-line flags, then a ``--policy`` file (TOML
or JSON), then ``[tool.gpu_proof]``, then the defaults below. Unknown keys
and wrong types are errors, because a typo must never quietly weaken what
gets checked. Personal settings (signing key, principal) come from git
config instead.
"""
from __future__ import annotations

import functools
import json
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pygit2

from gitproof.errors import GitproofError
from gitproof import compat
from gitproof.files import MAX_TRUST_FILE, UnreadableFile, read_regular
from gitproof.fingerprint import ROOT, FingerprintError, normalize_path
from gitproof.receipt import MODES

PYPROJECT = "pyproject.toml"
DEFAULT_MARKER = "gpu_proof"
ALIAS_MARKER = "gpu_equivalence"  # always a GPU marker too, as in pytest-gpu-proof
PUSH_CHECKS = ("tip", "every")
SIGNER_SOURCES = ("allowed_signers", "github")
SIGNER_MODES = ("open", "restricted")


class PolicyError(GitproofError):
    """The policy cannot be read or is invalid; the message names the problem."""


def glob_matches(pattern: str, path: str) -> bool:
    """Path glob: ``**/`` any folders, ``*`` and ``?`` never cross ``/``, ``[...]`` a character set.

    Written here because ``glob.translate`` is Python 3.13+ and ``fnmatch`` lets
    ``*`` cross folders, which would select far more tests than written.
    """
    return _glob_regex(pattern).fullmatch(path) is not None


@functools.lru_cache(maxsize=256)  # asked once per collected test and pattern
def _glob_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*/|\*\*|\*|\?|\[!?[^\]/]+\])", pattern)
    wildcard = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcard.get(p) or _char_set(p) or re.escape(p) for p in parts if p))


def _char_set(part: str) -> str | None:
    if not (part.startswith("[") and part.endswith("]") and len(part) > 2):
        return None
    body = part[1:-1]
    negated = body.startswith("!")
    body = re.sub(r"([\\^\[\]])", r"\\\1", body[1:] if negated else body)
    return f"[^/{body}]" if negated else f"[{body}]"


def selects(selectors: list[str] | tuple[str, ...], nodeid: str) -> bool:
    """Test selectors are node ids (parametrized cases included), files or directories;
    no selectors select everything."""
    return not selectors or any(
        nodeid == s or nodeid.startswith((s + "::", s + "[", s.rstrip("/") + "/"))
        for s in selectors)


@dataclass(frozen=True)
class Shard:
    """A named part of the suite with its own fingerprint paths and tests."""

    name: str
    paths: list[str]
    tests: list[str]


@dataclass(frozen=True)
class ModeBinding:
    """Who may claim a mode: ``[tool.gpu_proof.modes.<mode>]``. A mode is the signer's
    claim about how the run happened, so it means something only when bound to keys."""

    mode: str
    signers: list[str] | None = None
    key_fingerprints: list[str] | None = None


@dataclass(frozen=True)
class Policy:
    # what a receipt covers
    fingerprint_paths: list[str] = field(default_factory=lambda: ["src", "tests"])
    required_marker: str = DEFAULT_MARKER
    gpu_tests: list[str] = field(default_factory=list)
    required_tests: str | None = None
    shards: dict[str, Shard] = field(default_factory=dict)
    required_shards: list[str] | None = None
    # who may sign
    allowed_signers: str | None = None
    signer_source: str = "allowed_signers"
    signer_mode: str = "open"
    signers: list[str] | None = None
    key_fingerprints: list[str] | None = None
    github_url: str = "https://github.com"
    github_cache_minutes: int = 60
    allow_unsigned: bool = False
    # what a run must show
    allow_skipped: bool = False
    expected_skips: list[str] | None = None
    fail_on_skip: bool = False
    max_age_days: int = 30
    require_mode: str | None = None
    modes: dict[str, ModeBinding] = field(default_factory=dict)
    require_gpu: bool = False
    require_gpu_use: bool = False
    require_gpu_kernels: bool = False
    record_kernels: bool = False
    attest: bool = False  # runs also write a DSSE envelope (in-toto) beside each receipt
    python: str | None = None
    require_clean: bool = False
    include_gpu_uuid: bool = True
    # the pre-push hook
    push_check: str = "tip"
    push_refs: list[str] = field(default_factory=lambda: ["refs/heads/*"])
    source: str = "defaults"
    # not policy keys: what a pytest-gpu-proof table sets for the recorder, and its warnings
    personal: compat.Personal = field(default_factory=compat.Personal)
    notes: tuple[str, ...] = ()

    @property
    def markers(self) -> tuple[str, ...]:
        """The marker and its alias: tests carrying either are GPU tests."""
        return tuple(dict.fromkeys((self.required_marker, ALIAS_MARKER)))

    @property
    def restricted(self) -> bool:
        return self.signer_mode == "restricted"

    def is_gpu_test(self, nodeid: str) -> bool:
        """Selected by ``gpu_tests``: under one of its paths, or matching one of its globs
        (``*`` within a folder, ``**`` across folders). Node ids are relative to the rootdir."""
        module = nodeid.split("::", 1)[0]
        return any(module == p or module.startswith(p.rstrip("/") + "/") or glob_matches(p, module)
                   for p in self.gpu_tests)

    def shards_to_check(self) -> list[Shard]:
        names = self.required_shards if self.required_shards is not None else list(self.shards)
        return [self.shards[name] for name in names]

    def overridden(self, overrides: dict[str, Any], source: str) -> "Policy":
        """This policy with ``overrides`` (from a policy file or flags) on top."""
        values = {k: v for k, v in overrides.items() if v is not None}
        if not values:
            return self
        checked = _validated(values, source, partial=True)
        # Within one layer the two skip rules exclude each other; across layers the higher wins.
        if checked.get("allow_skipped") and checked.get("expected_skips") is not None:
            raise PolicyError(f"{source}: allow_skipped and expected_skips exclude each other: "
                              "accept any skip, or exactly the listed ones")
        if checked.get("allow_skipped"):
            checked["expected_skips"] = None
        elif "expected_skips" in checked:
            checked["allow_skipped"] = False
        merged = replace(self, **checked, source=f"{source} over {self.source}")
        _check_whole(merged, source)
        return merged


# key -> (accepted types, description for errors)
_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "fingerprint_paths": ((list,), "a list of paths"),
    "required_marker": ((str,), "a string"),
    "gpu_tests": ((list,), "a list of test paths or globs"),
    "required_tests": ((str,), "a path (string)"),
    "shards": ((dict,), "a table of shards"),
    "required_shards": ((list,), "a list of shard names"),
    "allowed_signers": ((str,), "a path (string)"),
    "signer_source": ((str,), f"one of {', '.join(SIGNER_SOURCES)}"),
    "signer_mode": ((str,), f"one of {', '.join(SIGNER_MODES)}"),
    "signers": ((list,), "a list of principal patterns"),
    "key_fingerprints": ((list,), "a list of SHA256:... fingerprints"),
    "github_url": ((str,), "a URL"),
    "github_cache_minutes": ((int,), "a whole number of minutes"),
    "allow_unsigned": ((bool,), "true or false"),
    "allow_skipped": ((bool,), "true or false"),
    "expected_skips": ((list,), "a list of test node ids"),
    "fail_on_skip": ((bool,), "true or false"),
    "max_age_days": ((int,), "a whole number of days (0 = today only)"),
    "require_mode": ((str,), f"one of {', '.join(MODES)}"),
    "modes": ((dict,), "a table of modes, each with signers and/or key_fingerprints"),
    "require_gpu": ((bool,), "true or false"),
    "require_gpu_use": ((bool,), "true or false"),
    "require_gpu_kernels": ((bool,), "true or false"),
    "record_kernels": ((bool,), "true or false"),
    "attest": ((bool,), "true or false"),
    "python": ((str,), "the path of the project's Python (relative to the repository root), or a command"),
    "require_clean": ((bool,), "true or false"),
    "include_gpu_uuid": ((bool,), "true or false"),
    "push_check": ((str,), f"one of {', '.join(PUSH_CHECKS)}"),
    "push_refs": ((list,), "a list of ref patterns such as \"refs/heads/*\""),
}
_HINTS = {"allowed_signers": "; here it is the path of an OpenSSH allowed_signers file "
                              "(pytest-gpu-proof's list of GitHub usernames is `signers`)"}
_CHOICES = {"signer_source": SIGNER_SOURCES, "signer_mode": SIGNER_MODES,
            "require_mode": MODES, "push_check": PUSH_CHECKS}
_MAX_SPAN = {"max_age_days": 36_500, "github_cache_minutes": 525_600}  # a century; a year
_STRING_LISTS = ("signers", "key_fingerprints", "expected_skips", "push_refs", "required_shards",
                 "gpu_tests")


def _validated(table: dict[str, Any], source: str, partial: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _SCHEMA:
            raise PolicyError(f"{source}: unknown policy key {key!r} (known keys: {', '.join(sorted(_SCHEMA))})")
        types, description = _SCHEMA[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise PolicyError(f"{source}: {key} must be {description}, not {type(value).__name__} {value!r}"
                              + _HINTS.get(key, ""))
        values[key] = _normalized(key, value, source)
    return values


def _normalized(key: str, value: Any, source: str) -> Any:
    if key in _CHOICES and value not in _CHOICES[key]:
        raise PolicyError(f"{source}: {key} must be one of {', '.join(_CHOICES[key])}, not {value!r}")
    if key in _STRING_LISTS and not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{source}: {key} must be a list of non-empty strings")
    if key == "required_shards" and not value:
        raise PolicyError(f"{source}: required_shards must name at least one shard "
                          "(leave it out to require every shard)")
    if key == "fingerprint_paths":
        return _paths(value, source, key)
    if key == "shards":
        return {name: _shard(name, spec, source) for name, spec in value.items()}
    if key == "modes":
        return {name: _mode(name, spec, source) for name, spec in value.items()}
    if key in ("max_age_days", "github_cache_minutes") and value < 0:
        raise PolicyError(f"{source}: {key} must not be negative")
    if key in ("max_age_days", "github_cache_minutes") and value > _MAX_SPAN[key]:
        raise PolicyError(f"{source}: {key} must be at most {_MAX_SPAN[key]}, not {value}")
    if key == "gpu_tests":
        for pattern in value:
            try:
                glob_matches(pattern, "")
            except re.error as exc:
                raise PolicyError(f"{source}: gpu_tests pattern {pattern!r} is not a valid glob: {exc}") from None
    if key == "push_refs" and not all(r.startswith("refs/") for r in value):
        raise PolicyError(f"{source}: push_refs must list ref patterns such as \"refs/heads/*\"")
    if key == "key_fingerprints" and not all(k.startswith("SHA256:") for k in value):
        raise PolicyError(f"{source}: key_fingerprints must be SHA256:... fingerprints "
                          "(as `ssh-keygen -l` prints them)")
    return value


def _paths(raw: list[Any], source: str, key: str) -> list[str]:
    if not raw or not all(isinstance(p, str) for p in raw):
        raise PolicyError(f"{source}: {key} must be a non-empty list of strings")
    try:
        paths = [normalize_path(p) for p in raw]
    except FingerprintError as exc:
        raise PolicyError(f"{source}: {exc}") from exc
    if len(set(paths)) != len(paths):
        raise PolicyError(f"{source}: {key} lists a path twice")
    if ROOT in paths and len(paths) > 1:
        raise PolicyError(f"{source}: {key} lists \".\" (the whole repository) and other paths; "
                          "\".\" already covers them, so list it alone")
    return paths


def _shard(name: str, spec: Any, source: str) -> Shard:
    where = f"shards.{name}"
    if not isinstance(spec, dict):
        raise PolicyError(f"{source}: {where} must be a table with paths and tests")
    unknown = set(spec) - {"paths", "tests"}
    if unknown:
        raise PolicyError(f"{source}: unknown key {sorted(unknown)[0]!r} in {where} (known: paths, tests)")
    if "paths" not in spec:
        raise PolicyError(f"{source}: {where} needs paths = [...]")
    tests = spec.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, str) and t for t in tests):
        raise PolicyError(f"{source}: {where}.tests must be a list of test paths or node id prefixes")
    return Shard(name, _paths(spec["paths"], source, f"{where}.paths"), list(tests))


def _mode(name: str, spec: Any, source: str) -> ModeBinding:
    where = f"modes.{name}"
    if name not in MODES:
        raise PolicyError(f"{source}: unknown mode {name!r} in modes (known: {', '.join(MODES)})")
    if not isinstance(spec, dict):
        raise PolicyError(f"{source}: {where} must be a table with signers and/or key_fingerprints")
    unknown = set(spec) - {"signers", "key_fingerprints"}
    if unknown:
        raise PolicyError(f"{source}: unknown key {sorted(unknown)[0]!r} in {where} "
                          "(known: signers, key_fingerprints)")
    values = {k: _normalized(k, v, f"{source}: {where}") if isinstance(v, list) else v for k, v in spec.items()}
    if any(not isinstance(v, list) or not v for v in values.values()) or not values:
        raise PolicyError(f"{source}: {where} needs signers = [...] and/or key_fingerprints = [...], "
                          "each a non-empty list")
    return ModeBinding(name, values.get("signers"), values.get("key_fingerprints"))


def _check_whole(policy: Policy, source: str) -> None:
    """Rules that involve more than one key."""
    if policy.require_mode and policy.require_mode not in policy.modes:
        raise PolicyError(f"{source}: require_mode = {policy.require_mode!r} needs "
                          f"[tool.gpu_proof.modes.{policy.require_mode}] with signers or key_fingerprints: "
                          "a mode is only the signer's claim until the policy says which keys may make it")
    if policy.allow_skipped and policy.expected_skips is not None:
        raise PolicyError(f"{source}: allow_skipped and expected_skips exclude each other: "
                          "accept any skip, or exactly the listed ones")
    if policy.restricted and not (policy.signers or policy.key_fingerprints):
        raise PolicyError(f"{source}: signer_mode = \"restricted\" needs signers or key_fingerprints")
    if policy.restricted and policy.allow_unsigned:
        raise PolicyError(f"{source}: a restricted policy never accepts unsigned receipts")
    unknown = set(policy.required_shards or []) - set(policy.shards)
    if unknown:
        raise PolicyError(f"{source}: required_shards names undefined shard {sorted(unknown)[0]!r}")


def policy_from_table(table: dict[str, Any], source: str) -> Policy:
    """A ``[tool.gpu_proof]`` table; pytest-gpu-proof's keys are read too (see compat)."""
    try:
        peer = compat.translate(table, source)
    except compat.CompatError as exc:
        raise PolicyError(str(exc)) from None
    policy = Policy(**_validated(peer.table, source), source=source,
                    personal=peer.personal, notes=tuple(peer.notes))
    _check_whole(policy, source)
    return policy


def policy_from_toml(text: str, source: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from exc
    tool = data.get("tool", {})
    table = tool.get("gpu_proof", {}) if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [tool.gpu_proof] must be a table")
    return policy_from_table(table, source)


def read_policy_file(path: Path) -> dict[str, Any]:
    """A ``--policy`` file: JSON, or TOML with the keys at the top or under [tool.gpu_proof]."""
    text = _read_text(path, "policy file")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"{path}: not valid JSON: {exc}") from exc
    else:
        try:
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, RecursionError) as exc:
            raise PolicyError(f"{path}: not valid TOML: {exc}") from exc
        tool = data.get("tool")
        if isinstance(tool, dict) and "gpu_proof" in tool:
            data = tool["gpu_proof"]
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: a policy file must hold an object of policy keys")
    _validated(data, str(path), partial=True)
    return data


def read_node_ids(path: Path) -> list[str]:
    """A file of test node ids, one per line; blank lines and # comments ignored."""
    return node_ids_in(_read_text(path, "file"))


def node_ids_in(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _read_text(path: Path, what: str) -> str:
    try:
        return read_regular(path, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path} is not UTF-8 text") from exc
    except UnreadableFile as exc:
        raise PolicyError(str(exc)) from None


def load_policy(repo: pygit2.Repository, rev: str | None = None) -> Policy:
    """Policy from the working tree's pyproject.toml, or from a revision's."""
    if rev is not None:
        return _policy_at(repo, rev)
    if repo.workdir is None:
        return _policy_at(repo, "HEAD")
    path = Path(repo.workdir) / PYPROJECT
    if not path.exists():
        return Policy()
    return policy_from_toml(_read_text(path, "policy"), str(path))


def _policy_at(repo: pygit2.Repository, rev: str) -> Policy:
    try:
        commit = repo.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, pygit2.GitError, ValueError) as exc:
        raise PolicyError(f"cannot read the policy at {rev!r}: no such revision") from exc
    try:
        entry = commit.tree[PYPROJECT]
    except KeyError:
        return Policy(source=f"{rev}: (no {PYPROJECT})")
    blob = repo[entry.id]
    if not isinstance(blob, pygit2.Blob) or entry.filemode == pygit2.enums.FileMode.LINK:
        raise PolicyError(f"{rev}:{PYPROJECT} is not a regular file (a directory, link or submodule)")
    if blob.size > MAX_TRUST_FILE:
        raise PolicyError(f"{rev}:{PYPROJECT} is {blob.size} bytes, over the {MAX_TRUST_FILE}-byte limit; not read")
    try:
        text = blob.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{rev}:{PYPROJECT} is not UTF-8 text") from exc
    return policy_from_toml(text, f"{rev}:{PYPROJECT}")


assert set(_SCHEMA) == {f.name for f in fields(Policy)} - {"source", "personal", "notes"}, \
    "schema and Policy disagree"
assert not set(_SCHEMA) & compat.PEER_KEYS, "a pytest-gpu-proof key shadows one of ours"
