"""The pre-receive decision on a server: may this push update a protected branch?

git runs ``hooks/pre-receive`` in the bare repository after the pushed objects
arrive and before any ref moves, with one line per ref on standard input:
``<old id> <new id> <ref name>``. Everything in those lines and objects is the
pusher's; only the server's refs and config are trusted. So:

- Protected refs (git config ``gpu-proof.protect``, full ref names or branch
  names, fnmatch patterns; default: the branch HEAD names) take a GPU-code
  change only with a valid receipt. Other refs pass.
- The policy and allowed_signers come from the protected branch's current tip
  on the server (the ``old`` id), or, when ``gpu-proof.trustRef`` is set, from
  that ref's current tip; never from the pushed commits. Creating a protected
  branch without ``gpu-proof.trustRef`` has no trust root and is refused.
- Which commits: the policy's ``push_check``, as in the pre-push hook. ``tip``
  verifies the new tip when its fingerprint trees differ from the old tip's;
  ``every`` verifies each commit new to the branch (not reachable from its old
  tip, or from another protected ref) whose trees differ from its first
  parent's.
- Receipts come from ``refs/notes/gpu-proof`` as this push leaves it: the new
  notes commit when the push updates the ref (it is not moved yet), else the
  server's. An update of that ref, or of ``refs/notes/gpu-proof-attestations``,
  must be a notes commit and must not lose entries the server has.
- The pushed objects sit in git's quarantine directory until the hook accepts
  them; ``open_pushed_repository`` adds it to libgit2's object database. The
  check never writes objects or refs. The verifier's tree-index cache file
  (``<git dir>/gpu-proof/tree-index/``, outside the object database) may be
  rewritten, atomically; it names the notes tip it describes, so one written
  for a push that is then refused is only a stale cache, rebuilt on next use.

Most pushes touch no protected ref and no notes ref, and pay only for Python
and this module: the settings come from ``git config`` and ``git symbolic-ref``
(the same source for every push), and pygit2, the notes and the verifier are
imported only when something must be judged.
"""
from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from gitproof.errors import GitproofError

if TYPE_CHECKING:
    import pygit2

    from gitproof.hook import RefUpdate, Unvalidated
    from gitproof.notes import NotesStore
    from gitproof.policy import Policy
    from gitproof.verify import CommitVerdict, Verifier

PROTECT_KEY = "gpu-proof.protect"
TRUST_REF_KEY = "gpu-proof.trustRef"
# gitproof.notes.NOTES_REF and gitproof.attestation_notes.ATTESTATIONS_REF (tests hold them equal),
# spelled out so that a push to a feature branch does not import pygit2.
NOTES_REF = "refs/notes/gpu-proof"
ATTESTATIONS_REF = "refs/notes/gpu-proof-attestations"
NOTES_REFS = (NOTES_REF, ATTESTATIONS_REF)

_LINE = re.compile(r"([0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?) ([0-9a-fA-F]{40}(?:[0-9a-fA-F]{24})?) (refs/\S+)")


class ReceiveInputError(GitproofError, ValueError):
    """The hook's input or the server's configuration is not usable."""


# -- git's input -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedUpdate:
    """One ``<old> <new> <ref>`` line: all zeros for old means a new ref, for new a deletion."""

    old: str
    new: str
    ref: str

    @property
    def is_creation(self) -> bool:
        return set(self.old) == {"0"}

    @property
    def is_deletion(self) -> bool:
        return set(self.new) == {"0"}

    def as_push(self) -> RefUpdate:
        """The same update as the pre-push hook's functions see one (local = pushed, remote = server)."""
        from gitproof.hook import RefUpdate

        return RefUpdate(self.ref, self.new, self.ref, self.old)


def parse_received(text: str) -> list[ReceivedUpdate]:
    """git's pre-receive input; ReceiveInputError naming the first line that is not git's."""
    updates = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        found = _LINE.fullmatch(line.strip())
        if found is None:
            shown = line if len(line) <= 200 else line[:200] + "..."
            raise ReceiveInputError(f"pre-receive input line {number} is not '<old id> <new id> <ref>': {shown!r}")
        updates.append(ReceivedUpdate(found[1].lower(), found[2].lower(), found[3]))
    return updates


# -- the repository, with the pushed objects ----------------------------------------------------


def open_pushed_repository(environ: Mapping[str, str] | None = None) -> pygit2.Repository:
    """The repository git runs the hook in, able to read the objects of the push.

    During pre-receive git keeps the pushed objects in a quarantine directory
    (``GIT_QUARANTINE_PATH``; ``GIT_OBJECT_DIRECTORY`` names it too) and moves them
    into the repository only when the hook accepts. libgit2 does not read those
    variables by itself, so each such directory is added to its object database as
    an alternate: read-only, for this process only, nothing is written anywhere.
    Relative paths are taken from the current directory, as git takes them.
    """
    from gitproof.git import NotARepositoryError, common_dir, discover

    env = os.environ if environ is None else environ
    start = env.get("GIT_DIR") or "."
    repo = discover(start)
    if repo is None:
        raise NotARepositoryError(f"{os.path.abspath(start)} is not a git repository; "
                                  "the pre-receive hook runs inside the repository that receives the push")
    own = {os.path.realpath(common_dir(repo) / "objects")}
    candidates = [env.get("GIT_QUARANTINE_PATH", ""), env.get("GIT_OBJECT_DIRECTORY", "")]
    candidates += env.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", "").split(os.pathsep)
    for candidate in candidates:
        if not candidate or candidate.startswith('"'):  # a C-quoted entry: git's own alternates, not ours
            continue
        path = os.path.realpath(candidate)
        if path in own or not os.path.isdir(path):
            continue
        repo.odb.add_disk_alternate(path)
        own.add(path)
    return repo


def through_symbolic_refs(updates: list[ReceivedUpdate], environ: Mapping[str, str] | None = None,
                          ) -> list[ReceivedUpdate]:
    """Each update named by the ref it really moves.

    git reports a push to a symbolic ref (``refs/heads/master -> refs/heads/main``, left after
    a rename) under the name pushed to, and then writes through it: judged by that name, a
    protected branch could be moved through an unprotected alias.
    """
    names = {u.ref for u in updates}
    targets: dict[str, str] = {}
    for _ in range(5):  # git follows at most 5 levels of symbolic refs
        asked = sorted(n for n in names if n not in targets)
        if not asked:
            break
        # ref names cannot hold glob characters, so each pattern matches its own ref (and refs below it)
        listed = _git(["for-each-ref", "--format=%(refname)%00%(symref)", "--", *asked], environ, allowed=(0,))
        found = dict(line.split("\0", 1) for line in listed.splitlines() if "\0" in line)
        for name in asked:
            targets[name] = found[name] or name if name in found else _dangling_target(name, environ) or name
        names = set(targets.values())

    def final(name: str) -> str:
        for _ in range(6):
            if targets.get(name, name) == name:
                return name
            name = targets[name]
        raise ReceiveInputError(f"{name}: a chain of symbolic refs too long to follow")

    return [ReceivedUpdate(u.old, u.new, final(u.ref)) for u in updates]


def _dangling_target(name: str, environ: Mapping[str, str] | None) -> str | None:
    """Where a symbolic ref whose target does not exist yet points (``for-each-ref`` skips those):
    git keeps symbolic refs as loose files, ``ref: <target>``."""
    env = os.environ if environ is None else environ
    path = os.path.join(env.get("GIT_DIR") or ".", *name.split("/"))
    try:
        with open(path, "rb") as handle:
            first = handle.read(1024).split(b"\n", 1)[0]
    except OSError:
        return None
    if not first.startswith(b"ref: refs/"):
        return None
    return first[len(b"ref: "):].decode("utf-8", "surrogateescape").strip()


# -- the server's settings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Which refs are protected, and where their trust comes from (None: each ref's own tip)."""

    protect: tuple[str, ...]
    trust_ref: str | None = None

    def protects(self, ref: str) -> bool:
        return is_protected(ref, self.protect)

    def needs_check(self, updates: list[ReceivedUpdate]) -> bool:
        """Does anything in this push need the repository opened: a notes ref, or a protected
        ref that is not deleted?"""
        return any(u.ref in NOTES_REFS or u.ref == self.trust_ref or (not u.is_deletion and self.protects(u.ref))
                   for u in updates)


def is_protected(ref: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(ref, pattern) for pattern in patterns)


def settings_from(entries: list[tuple[str, str | None]], head: str | None) -> Settings:
    """The settings from ``gpu-proof.*`` config entries (key lowercased as git lists it, value or
    None for a key without one) and the ref HEAD names (None when HEAD is not symbolic).

    ``gpu-proof.protect`` (every value) gives patterns on full ref names when they start with
    ``refs/``, else on branch names (``main``, ``release/*``: under ``refs/heads/``); ``*``
    matches across ``/`` (fnmatch). Unset: the branch HEAD names, or every branch when HEAD names
    none (fail closed). ``gpu-proof.trustRef`` (the last value wins, as in git) is a ref name, or
    a branch name.
    """
    protect: list[str] = []
    trust_ref: str | None = None
    for key, value in entries:
        if key == PROTECT_KEY.lower():
            if value is None or not value.strip():
                raise ReceiveInputError(f"git config {PROTECT_KEY} has an empty value; give a ref or branch "
                                        "pattern such as refs/heads/main or release/*")
            protect.append(_full_name(value.strip()))
        elif key == TRUST_REF_KEY.lower():
            if value is None or not value.strip():
                raise ReceiveInputError(f"git config {TRUST_REF_KEY} has no value; name a ref such as "
                                        "refs/heads/main")
            trust_ref = _full_name(value.strip())
    if not protect:
        protect = [head if head and head.startswith("refs/heads/") else "refs/heads/*"]
    return Settings(tuple(protect), trust_ref)


def _full_name(name: str) -> str:
    return name if name.startswith("refs/") else f"refs/heads/{name}"


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings as git reads them in the repository the hook runs in (``git config``, so the
    repository's, the server user's global and the system config; ``git symbolic-ref HEAD``)."""
    head = _git(["symbolic-ref", "-q", "HEAD"], environ, allowed=(0, 1))
    listed = _git(["config", "-z", "--get-regexp", r"^gpu-proof\."], environ, allowed=(0, 1))
    entries = []
    for item in listed.split("\0"):
        if item:
            key, newline, value = item.partition("\n")
            entries.append((key, value if newline else None))
    return settings_from(entries, head.strip() or None)


def _git(args: list[str], environ: Mapping[str, str] | None, allowed: tuple[int, ...]) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, env=None if environ is None else dict(environ),
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReceiveInputError(f"cannot run git {args[0]}: {exc}") from exc
    if done.returncode not in allowed:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ReceiveInputError(f"git {args[0]} failed in {os.getcwd()}: {said[-1] if said else done.returncode}; "
                                "the pre-receive hook runs inside the repository that receives the push")
    return done.stdout.decode("utf-8", "surrogateescape")


# -- the decision ----------------------------------------------------------------------------------


@dataclass
class ReceiveResult:
    checked: list[str] = field(default_factory=list)  # protected refs whose GPU code was verified
    unchanged: list[str] = field(default_factory=list)  # protected refs with no GPU change
    passed: list[str] = field(default_factory=list)  # refs not protected (notes refs included)
    losses: list[str] = field(default_factory=list)  # what notes updates would take from the server
    refusals: list[str] = field(default_factory=list)  # refs that cannot be judged, one sentence each
    problems: list[Unvalidated] = field(default_factory=list)  # commits without a valid receipt
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.losses or self.refusals or self.problems)


@dataclass
class _Root:
    """The trust inputs for a protected ref: a commit on the server, and what it says."""

    commit: pygit2.Commit
    label: str  # for messages: "refs/heads/main (0123456789)"
    verifier: Verifier | None = None
    error: str | None = None  # why its policy or allowed_signers cannot be used


class ReceiveCheck:
    """Decides a whole push against the server's protected refs and trust roots."""

    def __init__(self, repo: pygit2.Repository, settings: Settings) -> None:
        self.repo, self.settings, self.trust_ref = repo, settings, settings.trust_ref
        self._roots: dict[str, _Root] = {}
        self._notes: NotesStore | None = None
        self._warnings: list[str] = []

    def run(self, updates: list[ReceivedUpdate]) -> ReceiveResult:
        result = ReceiveResult()
        protected = []
        for update in updates:
            if update.ref in NOTES_REFS:
                self._check_notes(update, result)
            elif update.ref == self.trust_ref and not self.settings.protects(update.ref):
                result.refusals.append(
                    f"{update.ref}: it is this server's trust root (git config {TRUST_REF_KEY}), which a push "
                    "may not move unless it is also a protected branch; an administrator moves it on the server "
                    "(and hides it from pushes with git config receive.hideRefs)")
            elif update.is_deletion or not self.settings.protects(update.ref):
                result.passed.append(update.ref)
            else:
                protected.append(update)
        if result.losses or result.refusals:
            return result  # the receipts themselves are in question: judge nothing against them
        self._notes = self._notes_after(updates)
        for update in protected:
            self._check(update, result)
        result.warnings = list(dict.fromkeys(self._warnings + result.warnings))
        return result

    # -- notes refs ------------------------------------------------------------------------------

    def _check_notes(self, update: ReceivedUpdate, result: ReceiveResult) -> None:
        import pygit2

        from gitproof.git import lookup
        from gitproof.hook import receipts_lost
        from gitproof.notes import is_notes_tree

        if not update.is_deletion:
            obj = lookup(self.repo, update.new)
            if not isinstance(obj, pygit2.Commit) or not is_notes_tree(obj.tree):
                result.refusals.append(
                    f"{update.ref}: {update.new[:10]} is not a notes commit (a commit whose tree holds only "
                    "notes, one per commit id); every clone's `git gpu-proof fetch` would refuse it")
                return
        result.losses += receipts_lost(self.repo, [update.as_push()], update.ref)
        result.passed.append(update.ref)

    def _notes_after(self, updates: list[ReceivedUpdate]) -> NotesStore:
        """The receipts as this push leaves them: the pushed notes commit, else the server's."""
        import pygit2

        from gitproof.git import lookup
        from gitproof.notes import NotesStore

        for update in updates:
            if update.ref == NOTES_REF and not update.is_deletion:
                commit = lookup(self.repo, update.new)
                if isinstance(commit, pygit2.Commit):
                    return _notes_at(self.repo, commit)
        return NotesStore(self.repo)

    # -- protected refs ----------------------------------------------------------------------------

    def _check(self, update: ReceivedUpdate, result: ReceiveResult) -> None:
        tip = _commit(self.repo, update.new)
        if tip is None:
            result.refusals.append(f"{update.ref}: {update.new[:10]} is not a commit; a protected ref "
                                   "must point at one")
            return
        root = self._root_for(update, result)
        if root is None:
            return
        if root.verifier is None:
            result.refusals.append(f"{update.ref}: {root.error}")
            return
        verifier = root.verifier
        base = _commit(self.repo, update.old) if not update.is_creation else root.commit
        if base is None:
            result.refusals.append(f"{update.ref}: its current value {update.old[:10]} on the server is not a commit")
            return
        base_trees = verifier.trees_of(base)
        mode = verifier.policy.push_check
        to_verify = [] if verifier.trees_of(tip) == base_trees else [tip]
        if mode != "tip":  # every: the tip (as in tip mode, whatever other refs hold) and each changing commit
            to_verify = [c for c in self._changing_commits(verifier, tip, base) if c.id != tip.id] + to_verify
        self._note_trust_changes(update, root, base, tip, result)
        if not to_verify:
            result.unchanged.append(update.ref)
            return
        if root.error is not None:
            result.refusals.append(f"{update.ref}: it changes GPU code, and {root.error}")
            return
        result.checked.append(update.ref)
        for commit in to_verify:
            verdict = verifier.verify(commit)
            if not verdict.ok:
                result.problems.append(self._problem(commit, update, verdict, base_trees, tip))

    def _changing_commits(self, verifier: Verifier, tip: pygit2.Commit, base: pygit2.Commit) -> list[pygit2.Commit]:
        """``every`` mode: commits new to the branch whose GPU code differs from their first parent's,
        oldest first. Commits already on a protected ref passed this gate (or predate it)."""
        import pygit2

        walker = self.repo.walk(tip.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE)
        walker.hide(base.id)
        for oid in self._protected_tips():
            walker.hide(oid)
        return [c for c in walker
                if not c.parents or verifier.trees_of(c) != verifier.trees_of(c.parents[0])]

    def _protected_tips(self) -> list[pygit2.Oid]:
        tips = []
        for name in self.repo.references:
            if name in NOTES_REFS or not self.settings.protects(name):
                continue
            commit = _commit(self.repo, name)
            if commit is not None:
                tips.append(commit.id)
        return tips

    def _problem(self, commit: pygit2.Commit, update: ReceivedUpdate, verdict: CommitVerdict,
                 base_trees: dict[str, str | None], tip: pygit2.Commit) -> Unvalidated:
        from gitproof.fingerprint import changed_fingerprint_paths
        from gitproof.git import subject
        from gitproof.hook import Unvalidated

        changed = changed_fingerprint_paths(self.repo, base_trees, verdict.trees)
        short = str(commit.id)[:10]
        command = ("git gpu-proof run" if commit.id == tip.id
                   else f"git switch --detach {short} && git gpu-proof run && git switch -")
        return Unvalidated(str(commit.id), subject(commit), update.ref, verdict, changed, command)

    # -- trust roots ---------------------------------------------------------------------------------

    def _root_for(self, update: ReceivedUpdate, result: ReceiveResult) -> _Root | None:
        """The commit whose policy and allowed_signers judge this update, loaded once per commit."""
        if self.trust_ref is not None:
            commit = _commit(self.repo, self.trust_ref)
            if commit is None:
                result.refusals.append(
                    f"{update.ref}: git config {TRUST_REF_KEY} names {self.trust_ref}, which names no commit on "
                    "this server; point it at a ref that exists (the branch whose policy and allowed_signers "
                    "should judge pushes)")
                return None
            label = f"{self.trust_ref} ({str(commit.id)[:10]})"
        elif update.is_creation:
            result.refusals.append(
                f"{update.ref}: creating a protected branch: it has no tip on this server yet, so there is no "
                "policy or allowed_signers to judge it by. An administrator can set "
                f"`git config {TRUST_REF_KEY} refs/heads/main` on the server (trust from that branch), or "
                "create the branch on the server itself (`git fetch` into the repository runs no hook); "
                "see docs/hooks.md, server-side enforcement")
            return None
        else:
            commit = _commit(self.repo, update.old)
            if commit is None:
                result.refusals.append(f"{update.ref}: its current value {update.old[:10]} on the server is "
                                       "not a commit")
                return None
            label = f"{update.ref} ({update.old[:10]})"
        key = str(commit.id)
        if key not in self._roots:
            self._roots[key] = self._load_root(commit, label)
        return self._roots[key]

    def _load_root(self, commit: pygit2.Commit, label: str) -> _Root:
        """The policy, then the trust roots, at ``commit``. A policy that cannot be read leaves no
        verifier (nothing can be judged); allowed_signers that cannot be read leave one that can
        still tell whether GPU code changed, with the reason kept for when it did."""
        from gitproof.policy import PolicyError, load_policy
        from gitproof.trust import TrustError
        from gitproof.verify import Verifier, open_verifier

        rev = str(commit.id)
        root = _Root(commit, label)
        try:
            policy: Policy = load_policy(self.repo, rev)
            try:
                base = open_verifier(self.repo, policy, trust_rev=rev)
            except TrustError as exc:
                root.error = (f"the allowed signers at {label} cannot be used: {exc}. Commit "
                              "[tool.gpu_proof] allowed_signers and its file to that branch in a push that "
                              "changes no GPU code, then push the GPU change again")
                base = open_verifier(self.repo, policy, require_trust=False, trust_rev=rev)
        except (PolicyError, TrustError) as exc:
            root.error = (f"the policy at {label} cannot be read: {exc}. Nothing can be judged by it; an "
                          "administrator can repair that branch on the server (see docs/hooks.md, "
                          "server-side enforcement: bootstrapping)")
            return root
        assert self._notes is not None, "run() sets the notes before any root is loaded"
        self._warnings += [f"{label}: {warning}" for warning in base.trust.warnings]
        root.verifier = Verifier(self.repo, base.policy, base.trust, notes=self._notes,
                                 required_tests=base.required_tests)
        return root

    def _note_trust_changes(self, update: ReceivedUpdate, root: _Root, base: pygit2.Commit,
                            tip: pygit2.Commit, result: ReceiveResult) -> None:
        """Say so when the push changes the files the server will trust for the next push."""
        if root.verifier is None or (self.trust_ref is not None and update.ref != self.trust_ref):
            return
        from gitproof.policy import PYPROJECT

        policy = root.verifier.policy
        paths = [PYPROJECT] + ([policy.allowed_signers] if policy.allowed_signers else [])
        changed = [p for p in paths if _blob_id(base, p) != _blob_id(tip, p)]
        if changed:
            result.warnings.append(f"{update.ref}: this push changes {', '.join(changed)}; the server judges "
                                   "pushes by them from the next push on, never by the push that changes them")


def _notes_at(repo: pygit2.Repository, pinned: pygit2.Commit) -> NotesStore:
    """The receipts read at a given notes commit: the one this push brings, before git moves the ref."""
    from gitproof.notes import NotesStore

    class NotesAt(NotesStore):
        def tip(self) -> pygit2.Commit | None:
            return pinned

    return NotesAt(repo, NOTES_REF)


def _commit(repo: pygit2.Repository, rev: str) -> pygit2.Commit | None:
    """The commit a full id or full ref name on the server names (tags peeled), or None."""
    import pygit2

    from gitproof.git import lookup

    try:
        if rev.startswith("refs/"):
            ref = repo.references.get(rev)
            return ref.peel(pygit2.Commit) if ref is not None else None
        obj = lookup(repo, rev)
        return obj.peel(pygit2.Commit) if obj is not None else None
    except (KeyError, ValueError, pygit2.GitError):  # a tag of a tree or blob, a dangling ref
        return None


def _blob_id(commit: pygit2.Commit, path: str) -> str | None:
    try:
        return str(commit.tree[path].id)
    except (KeyError, ValueError):
        return None


def check_push(text: str, environ: Mapping[str, str] | None = None) -> ReceiveResult:
    """The whole pre-receive check: git's input as read from standard input."""
    updates = through_symbolic_refs(parse_received(text), environ)
    settings = read_settings(environ)
    if not settings.needs_check(updates):
        return ReceiveResult(passed=[u.ref for u in updates])
    return ReceiveCheck(open_pushed_repository(environ), settings).run(updates)

