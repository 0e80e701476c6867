"""The pre-push decision: which pushed commits need a receipt, and do they have one.

git gives the hook one line per ref update: ``<local ref> <local sha>
<remote ref> <remote sha>``. We judge by the SHAs (the local ref may be
``HEAD``). An update needs a receipt only when it changes the GPU code the
remote already has: its tip's fingerprint trees differ from those of the
remote's commit for that ref, or, for a new branch (or a force push whose
old tip we do not hold), from every commit where the new history meets what
the remote already has.
"""
from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Mapping, cast

import pygit2

from gitproof.errors import GitproofError
from gitproof.fingerprint import Trees, changed_fingerprint_paths
from gitproof.git import find_commit, subject
from gitproof.pending import attach_pending
from gitproof.policy import PUSH_CHECKS
from gitproof.verify import CommitVerdict, Verifier

ZERO = "0" * 40
DEFAULT_REFS = ("refs/heads/*",)


class HookInputError(GitproofError, ValueError):
    """The hook's input is not what git sends."""


@dataclass(frozen=True)
class RefUpdate:
    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str

    @property
    def is_deletion(self) -> bool:
        return set(self.local_sha) == {"0"}

    @property
    def remote_known(self) -> bool:
        return set(self.remote_sha) != {"0"}


_OBJECT_ID = re.compile(r"[0-9a-fA-F]{40}([0-9a-fA-F]{24})?")  # SHA-1 or SHA-256, in full


def parse_updates(text: str) -> list[RefUpdate]:
    updates = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not (_OBJECT_ID.fullmatch(fields[1]) and _OBJECT_ID.fullmatch(fields[3])):
            raise HookInputError(f"pre-push input line {number} is not "
                                 f"'<local ref> <local sha> <remote ref> <remote sha>': {line!r}")
        updates.append(RefUpdate(*fields))
    return updates


def updates_from_pre_commit_env(environ: Mapping[str, str] | None = None,
                                repo: pygit2.Repository | None = None) -> list[RefUpdate]:
    """The pre-commit framework passes no stdin; it describes the push in variables.

    Its ``--from-ref`` / ``--to-ref`` may be any revision (``HEAD~1``, a branch):
    with ``repo`` they are resolved to commit ids here, and one that names no
    commit is a HookInputError naming the variable. A full id of a commit we do
    not have is kept: the remote may hold commits this clone never fetched.
    """
    env = os.environ if environ is None else environ
    # pre-commit leaves TO_REF unset when the push contains the root commit
    to_name = "PRE_COMMIT_TO_REF" if env.get("PRE_COMMIT_TO_REF") else "PRE_COMMIT_LOCAL_BRANCH"
    to_ref = env.get(to_name)
    if not to_ref:
        return []
    from_ref = env.get("PRE_COMMIT_FROM_REF") or ZERO
    if repo is not None:
        to_ref = _resolved(repo, to_ref, to_name, keep_unknown_ids=False)
        from_ref = _resolved(repo, from_ref, "PRE_COMMIT_FROM_REF", keep_unknown_ids=True)
    remote_branch = env.get("PRE_COMMIT_REMOTE_BRANCH") or "refs/heads/unknown"
    return [RefUpdate(env.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD", to_ref, remote_branch, from_ref)]


def _resolved(repo: pygit2.Repository, value: str, variable: str, keep_unknown_ids: bool) -> str:
    """The full commit id ``value`` names; HookInputError (naming ``variable``) when none."""
    if keep_unknown_ids and _OBJECT_ID.fullmatch(value):
        return value.lower()
    try:
        return str(repo.revparse_single(value).peel(pygit2.Commit).id)
    except KeyError:
        why = ""
    except (ValueError, pygit2.GitError) as exc:
        why = f" ({exc})"
    raise HookInputError(f"{variable}={value!r} does not name a commit in this repository{why}; "
                         "pass a commit id, a branch or a revision such as HEAD~1")


@dataclass
class Unvalidated:
    commit: str
    subject: str
    remote_ref: str
    verdict: CommitVerdict
    changed_paths: list[str]
    command: str


@dataclass
class HookResult:
    checked: list[str] = field(default_factory=list)  # remote refs whose GPU code was checked
    unchanged: list[str] = field(default_factory=list)  # remote refs with no GPU change
    problems: list[Unvalidated] = field(default_factory=list)
    attached: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class PushCheck:
    """Decides a whole push against one verifier (policy + trust roots)."""

    def __init__(self, repo: pygit2.Repository, verifier: Verifier, remote: str,
                 mode: str = "tip", ref_patterns: tuple[str, ...] = DEFAULT_REFS) -> None:
        if mode not in PUSH_CHECKS:
            raise HookInputError(f"unknown check mode {mode!r}; use one of: {', '.join(PUSH_CHECKS)}")
        self.repo, self.verifier, self.remote = repo, verifier, remote
        self.mode, self.ref_patterns = mode, ref_patterns
        self._remote_tips: list[pygit2.Oid] | None = None

    def run(self, updates: list[RefUpdate]) -> HookResult:
        result = HookResult()
        for update in updates:
            if update.is_deletion or not self._checked_ref(update.remote_ref):
                continue
            self._check(update, result)
        return result

    def _checked_ref(self, ref: str) -> bool:
        return any(fnmatch.fnmatchcase(ref, pattern) for pattern in self.ref_patterns)

    def _check(self, update: RefUpdate, result: HookResult) -> None:
        tip = find_commit(self.repo, update.local_sha)
        if tip is None:
            raise HookInputError(f"{update.local_sha} is not a commit in this repository")
        new, bases = self._new_commits(tip, update)
        if not new:
            result.unchanged.append(update.remote_ref)
            return
        result.attached += len(attach_pending(self.repo, self.verifier.policy, new))
        tip_trees = self.verifier.trees_of(tip)
        if update.remote_known and update.remote_sha in self.repo:
            bases = [self.repo[update.remote_sha].peel(pygit2.Commit)]  # what the remote has for this ref
        base_trees = [self.verifier.trees_of(b) for b in bases]
        if any(trees == tip_trees for trees in base_trees) and self.mode == "tip":
            result.unchanged.append(update.remote_ref)
            return
        result.checked.append(update.remote_ref)
        for commit in self._commits_to_validate(tip, new):
            verdict = self.verifier.verify(commit)
            if not verdict.ok:
                result.problems.append(self._problem(commit, update, verdict, base_trees))

    def _remote_tracking_tips(self) -> list[pygit2.Oid]:
        if self._remote_tips is None:
            prefix = f"refs/remotes/{self.remote}/"
            self._remote_tips = [cast(pygit2.Oid, self.repo.references[name].resolve().target)
                                 for name in self.repo.references if name.startswith(prefix)]
        return self._remote_tips

    def _new_commits(self, tip: pygit2.Commit, update: RefUpdate) -> tuple[list[pygit2.Commit], list[pygit2.Commit]]:
        """Commits the remote lacks (oldest first) and where they meet what it has."""
        if update.remote_known and update.remote_sha in self.repo:
            hidden = [self.repo[update.remote_sha].id]
        else:  # a new branch, or a force push over a tip we never fetched
            hidden = self._remote_tracking_tips()
        walker = self.repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
        for oid in hidden:
            walker.hide(oid)
        new = list(walker)
        new_ids = {c.id for c in new}
        bases = {p.id: p for c in new for p in c.parents if p.id not in new_ids}
        return new, list(bases.values())

    def _commits_to_validate(self, tip: pygit2.Commit, new: list[pygit2.Commit]) -> list[pygit2.Commit]:
        if self.mode == "tip":
            return [tip]
        # "every": each pushed commit that changes the fingerprint relative to its first parent.
        return [c for c in new
                if not c.parents or self.verifier.trees_of(c) != self.verifier.trees_of(c.parents[0])]

    def _problem(self, commit: pygit2.Commit, update: RefUpdate, verdict: CommitVerdict,
                 base_trees: list[Trees]) -> Unvalidated:
        before: Trees = base_trees[0] if base_trees else {p: None for p in verdict.trees}
        changed = changed_fingerprint_paths(self.repo, before, verdict.trees)
        return Unvalidated(str(commit.id), subject(commit), update.remote_ref, verdict, changed,
                           self._command_for(commit))

    def _command_for(self, commit: pygit2.Commit) -> str:
        if not self.repo.head_is_unborn and self.repo.head.target == commit.id:
            return "git gpu-proof run"
        short = str(commit.id)[:10]
        return f"git switch --detach {short} && git gpu-proof run && git switch -"


def notes_ref_in_push(updates: list[RefUpdate], notes_ref: str) -> bool:
    """True when the outer push already carries the notes ref itself."""
    return any(u.remote_ref == notes_ref and not u.is_deletion for u in updates)


def receipts_lost(repo: pygit2.Repository, updates: list[RefUpdate], notes_ref: str) -> list[str]:
    """What a push of the notes ref would take from the remote, one sentence each; [] when nothing.

    A deletion, or a replacement that lacks receipts the remote has (a forced push of an
    older or rewritten notes ref), loses receipts for everyone who fetches afterwards. The
    same holds for the attestations ref and its envelopes.
    """
    from gitproof.attestation_notes import ATTESTATIONS_REF
    from gitproof.sync import missing_entries

    noun = "attestation" if notes_ref == ATTESTATIONS_REF else "receipt"
    losses = []
    for update in updates:
        if update.remote_ref != notes_ref or not update.remote_known:
            continue
        if update.is_deletion:
            losses.append(f"it deletes {notes_ref} on the remote, and every {noun} in it")
        elif update.remote_sha not in repo or update.local_sha not in repo:
            losses.append(f"it replaces {notes_ref} on the remote with {noun}s never merged with the "
                          "remote's own; run `git gpu-proof fetch` first, then push again")
        else:
            try:
                lost = missing_entries(repo, repo[update.local_sha].peel(pygit2.Commit),
                                       repo[update.remote_sha].peel(pygit2.Commit), notes_ref)
            except (ValueError, pygit2.GitError):  # InvalidSpecError: a blob or a tree
                losses.append(f"{notes_ref} here or on the remote is not a notes commit; run "
                              "`git gpu-proof fetch` to see why, and repair it before pushing receipts")
                continue
            if lost:
                where = ", ".join(commit[:10] for commit in sorted(lost)[:5])
                more = f" (+{len(lost) - 5} more)" if len(lost) > 5 else ""
                losses.append(f"it drops {sum(lost.values())} {noun}(s) the remote has, on {where}{more}; "
                              "run `git gpu-proof fetch` to merge them, then push again")
    return losses
