"""``git gpu-proof doctor``: is this repository set up for gitproof, and what to fix.

Each check looks at one thing (a hook, a config key, the signing key, the
policy, the trust roots, the command on PATH, the GPU facts, the receipts)
and answers ok, warn or fail, with the command that fixes it. Nothing is
changed.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from gitproof.git import ConfigLevel, config_entries, config_value, hooks_dir
from gitproof.install import (
    CHAINED_SUFFIX,
    COMMAND,
    DISPLAY_REF_KEY,
    MERGE_STRATEGY,
    MERGE_STRATEGY_KEY,
    REWRITE_REF_KEY,
    chained_path,
    forced_notes_refspecs,
    hook_script,
    is_gitproof_hook,
    strategy_problem,
)
from gitproof.notes import NOTES_REF, NotesError, NotesStore
from gitproof.pending import PendingStore
from gitproof.policy import Policy, PolicyError, load_policy
from gitproof.signing import SigningError, resolve_signing_key
from gitproof.trust import TrustError
from gitproof.verify import open_verifier

OK = "ok"
WARN = "warn"
FAIL = "fail"
INSTALL_FIX = "git gpu-proof install"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "message": self.message, "fix": self.fix}


@dataclass
class DoctorReport:
    hooks_dir: Path
    checks: list[Check]
    receipts: int | None
    pending: int | None

    @property
    def ok(self) -> bool:
        return not any(check.status == FAIL for check in self.checks)

    @property
    def failing(self) -> int:
        return sum(check.status == FAIL for check in self.checks)

    @property
    def warnings(self) -> int:
        return sum(check.status == WARN for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "hooks_dir": str(self.hooks_dir), "receipts": self.receipts,
                "pending": self.pending, "checks": [c.to_json() for c in self.checks]}


def doctor(repo: pygit2.Repository) -> DoctorReport:
    """Check everything gitproof needs in this repository; nothing is changed."""
    directory = hooks_dir(repo)
    checks = [_check_hook(directory, "pre-push", FAIL), _check_hook(directory, "post-commit", WARN),
              _check_rewrite_ref(repo), _check_display_ref(repo), _check_merge_strategy(repo),
              _check_fetch_refspecs(repo), _check_signing_key(repo)]
    policy_check, policy = _check_policy(repo)
    checks += [policy_check, _check_allowed_signers(repo, policy), _check_command(), _check_gpu_facts()]
    receipts, pending = _count_receipts(repo), _count_pending(repo)
    checks += [receipts[0], pending[0]]
    return DoctorReport(directory, checks, receipts[1], pending[1])


# -- hooks -----------------------------------------------------------------------------------


def _check_hook(directory: Path, name: str, missing: str) -> Check:
    label, path = f"{name} hook", directory / name
    if not os.path.lexists(path):
        return Check(label, missing, f"not installed in {directory}", INSTALL_FIX)
    if not is_gitproof_hook(path):
        return Check(label, missing, f"{path} is another tool's hook; gitproof's is not installed",
                     f"{INSTALL_FIX}  (keeps that hook as {name}{CHAINED_SUFFIX} and runs it first)")
    if not os.access(path, os.X_OK):
        return Check(label, FAIL, f"{path} is not executable, so git skips it", INSTALL_FIX)
    if path.read_bytes() != hook_script(name):
        return Check(label, WARN, f"{path} is from another version of gitproof", INSTALL_FIX)
    return _check_chained(label, path)


def _check_chained(label: str, path: Path) -> Check:
    chained = chained_path(path)
    if not os.path.lexists(chained):
        return Check(label, OK, f"installed in {path.parent}")
    if not os.access(chained, os.X_OK):
        return Check(label, WARN, f"installed; {chained.name} is not executable and is skipped",
                     f"chmod +x {chained}")
    return Check(label, OK, f"installed in {path.parent}; runs {chained.name} first")


# -- notes configuration -----------------------------------------------------------------------


def _check_display_ref(repo: pygit2.Repository) -> Check:
    """Not needed; warned about only as older installs set it (exactly our ref, locally)."""
    local = [value for value, level in config_entries(repo, DISPLAY_REF_KEY)
             if value == NOTES_REF and level == ConfigLevel.LOCAL]
    if local:
        return Check(DISPLAY_REF_KEY, WARN, f"includes {NOTES_REF} (set by an older install): plain "
                     "`git log` prints every receipt under each commit", INSTALL_FIX)
    return Check(DISPLAY_REF_KEY, OK, "not needed: `git log --notes=gpu-proof` or `git gpu-proof log` "
                                      "show the receipts")


def _check_rewrite_ref(repo: pygit2.Repository) -> Check:
    """Not needed any more, and warned about where an older install set it: git's copy of a note
    during amend and rebase raced with gitproof's own writes."""
    local = [value for value, level in config_entries(repo, REWRITE_REF_KEY)
             if value == NOTES_REF and level == ConfigLevel.LOCAL]
    if local:
        return Check(REWRITE_REF_KEY, WARN, f"includes {NOTES_REF} (set by an older install): not needed, "
                     "receipts are found by their trees; git's copy during amend and rebase races with "
                     "gitproof's note writes", INSTALL_FIX)
    return Check(REWRITE_REF_KEY, OK, "not needed: receipts are found by their trees after an amend, "
                                      "rebase, squash or cherry-pick")


def _check_merge_strategy(repo: pygit2.Repository) -> Check:
    fix = f"git config {MERGE_STRATEGY_KEY} {MERGE_STRATEGY}"
    current = config_value(repo, MERGE_STRATEGY_KEY)
    if current == MERGE_STRATEGY:
        return Check(MERGE_STRATEGY_KEY, OK, MERGE_STRATEGY)
    if current is None:
        return Check(MERGE_STRATEGY_KEY, WARN, "not set: `git notes merge` stops for a manual merge", fix)
    status = FAIL if current.lower() == "cat_sort_uniq" else WARN
    return Check(MERGE_STRATEGY_KEY, status, f"{current}: {strategy_problem(current)}", fix)


def _check_fetch_refspecs(repo: pygit2.Repository) -> Check:
    forced = forced_notes_refspecs(repo)
    if not forced:
        return Check("fetch refspecs", OK, f"no forced fetch into {NOTES_REF}")
    return Check("fetch refspecs", FAIL, "; ".join(f.warning for f in forced), forced[0].fix)


# -- signing, policy, trust ----------------------------------------------------------------------


def _check_signing_key(repo: pygit2.Repository) -> Check:
    try:
        key = resolve_signing_key(repo)
    except SigningError as exc:
        return Check("signing key", WARN, f"cannot sign receipts here: {exc}",
                     "git config user.signingKey ~/.ssh/id_ed25519.pub  (an SSH key)")
    shown = key.spec if not key.literal else key.spec[:40] + "..."
    return Check("signing key", OK, f"{shown} (from {key.source})")


def _check_policy(repo: pygit2.Repository) -> tuple[Check, Policy | None]:
    try:
        policy = load_policy(repo)
    except PolicyError as exc:
        return Check("policy", FAIL, str(exc), "fix [tool.gpu_proof] in pyproject.toml"), None
    paths = ", ".join(policy.fingerprint_paths)
    return Check("policy", OK, f"{policy.source}: fingerprint paths {paths}"), policy


def _check_allowed_signers(repo: pygit2.Repository, policy: Policy | None) -> Check:
    name = "allowed signers"
    if policy is None:
        return Check(name, FAIL, "not checked: the policy is invalid", "fix the policy first")
    try:
        verifier = open_verifier(repo, policy)
    except (TrustError, PolicyError) as exc:
        return Check(name, FAIL, str(exc), "set [tool.gpu_proof] allowed_signers in pyproject.toml "
                                           "or git config gpg.ssh.allowedSignersFile")
    source = verifier.trust.source
    if verifier.trust.warnings:
        return Check(name, WARN, "; ".join(verifier.trust.warnings),
                     "correct the skipped lines in the allowed_signers file")
    return Check(name, OK, source.describe())


# -- this machine --------------------------------------------------------------------------------


def _check_command() -> Check:
    found = shutil.which(COMMAND)
    if found is None:
        return Check(COMMAND, FAIL, "not on PATH: the pre-push hook will refuse every push",
                     "activate the virtualenv that has gitproof, or pip install git-gpu-proof")
    return Check(COMMAND, OK, found)


def _check_gpu_facts() -> Check:
    """Where `run` would get its device facts; a machine without a GPU is fine for verifying."""
    from gitproof import gpu  # only doctor pays for the GPU query

    facts = gpu.detect_facts(include_uuid=False, import_torch=False)
    if facts.source == "none":
        return Check("gpu facts", OK, "no GPU seen here: fine for verifying; `run` records gpu: none "
                                      f"({'; '.join(facts.notes)})")
    found = f"{gpu.summary(facts.devices)} via {facts.source}"
    if facts.source != "nvml":
        return Check("gpu facts", WARN, f"{found}: without NVML, receipts lack the CUDA driver "
                                        "version and the confidential-computing state",
                     "pip install 'git-gpu-proof[nvml]'")
    return Check("gpu facts", OK, found)


def _count_receipts(repo: pygit2.Repository) -> tuple[Check, int | None]:
    try:
        count = len(NotesStore(repo).annotated_commits())
    except (NotesError, pygit2.GitError) as exc:
        return Check("receipts", FAIL, f"cannot read {NOTES_REF}: {exc}", "git fsck"), None
    return Check("receipts", OK, f"{count} commit(s) with receipts in {NOTES_REF}"), count


def _count_pending(repo: pygit2.Repository) -> tuple[Check, int | None]:
    try:
        count = len(PendingStore(repo).list())
    except (NotesError, pygit2.GitError, KeyError) as exc:
        return Check("pending receipts", WARN, f"cannot read pending receipts: {exc}"), None
    return Check("pending receipts", OK, f"{count} pending receipt(s) for uncommitted code"), count
