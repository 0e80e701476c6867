"""Setting a repository up for gitproof: the git hooks and the notes configuration.

``install`` writes the pre-push and post-commit hooks shipped in
``gitproof/hook_scripts`` into the repository's hooks directory. A hook that
is already there and is not ours is kept as ``<name>.chained`` and run by
ours first, so nothing is ever clobbered; ``uninstall`` puts it back. Our
hooks are recognised by the marker line after the shebang.

The notes configuration merges both sides of a notes merge
(notes.gpu-proof.mergeStrategy = union). Two values older versions set are
removed by install and uninstall alike (exactly ``refs/notes/gpu-proof``, in
the repository's own config; other values are the user's):

- notes.displayRef: a receipt lists every test, so plain ``git log`` took
  hundreds of lines a commit; ``git log --notes=gpu-proof`` shows them.
- notes.rewriteRef: receipts are found by their trees (gitproof.tree_index),
  so an amended, rebased, squashed or cherry-picked commit needs no copy, and
  git's copy during amend and rebase raced with gitproof's own note writes.

gitproof.doctor checks all of it.
"""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import pygit2

from gitproof.errors import GitproofError
from gitproof.git import ConfigLevel, common_dir, config_entries, config_level, config_value, hooks_dir
from gitproof.notes import NOTES_REF

MARKER = "# installed by gitproof: git gpu-proof install"
HOOK_NAMES = ("pre-push", "post-commit")
CHAINED_SUFFIX = ".chained"
COMMAND = "git-gpu-proof"
MERGE_STRATEGY_KEY = "notes.gpu-proof.mergeStrategy"
MERGE_STRATEGY = "union"
DISPLAY_REF_KEY = "notes.displayRef"  # set by earlier versions; removed by install now
REWRITE_REF_KEY = "notes.rewriteRef"  # likewise
OLDER_KEYS = {
    DISPLAY_REF_KEY: "plain `git log` stays short; `git log --notes=gpu-proof` shows the receipts",
    REWRITE_REF_KEY: ("receipts are found by their trees after an amend, rebase, squash or cherry-pick, "
                      "and git's copy raced with gitproof's own note writes"),
}

# Hook outcomes.
INSTALLED = "installed"
UNCHANGED = "unchanged"
UPDATED = "updated"
CHAINED = "chained"
REMOVED = "removed"
RESTORED = "restored"
FOREIGN = "foreign"
ABSENT = "absent"
# Config outcomes: SET, UNCHANGED, CONFLICT on install; REMOVED, ABSENT on uninstall.
SET = "set"
CONFLICT = "conflict"

_VALUE_PATTERN = "^" + re.escape(NOTES_REF) + "$"
_EMPTY_SECTIONS = re.compile(r'^\s*\[notes(\s+"gpu-proof")?\]\s*$')


class InstallError(GitproofError):
    """Install or uninstall cannot proceed; the message says why and what to do."""


# -- our hook scripts ----------------------------------------------------------------


def hook_script(name: str) -> bytes:
    """The shipped text of one of our hooks."""
    if name not in HOOK_NAMES:
        raise ValueError(f"gitproof ships no {name!r} hook")
    return (resources.files("gitproof") / "hook_scripts" / name).read_bytes()


def is_gitproof_hook(path: Path) -> bool:
    """Whether the file carries our marker line (any version of our hook)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return MARKER.encode() in head.splitlines()[:3]


def chained_path(path: Path) -> Path:
    return path.with_name(path.name + CHAINED_SUFFIX)


# -- reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HookStep:
    name: str
    outcome: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "outcome": self.outcome, "detail": self.detail}


@dataclass(frozen=True)
class ConfigStep:
    key: str
    value: str
    outcome: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "outcome": self.outcome, "detail": self.detail}


@dataclass
class Report:
    hooks_dir: Path
    hooks: list[HookStep] = field(default_factory=list)
    config: list[ConfigStep] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        quiet = (UNCHANGED, ABSENT, FOREIGN, CONFLICT)
        steps: list[HookStep | ConfigStep] = [*self.hooks, *self.config]
        return any(step.outcome not in quiet for step in steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "hooks_dir": str(self.hooks_dir), "changed": self.changed,
            "hooks": [h.to_json() for h in self.hooks],
            "config": [c.to_json() for c in self.config],
            "warnings": list(self.warnings),
        }


class InstallReport(Report):
    """What ``install`` did."""


class UninstallReport(Report):
    """What ``uninstall`` did."""


# -- install ----------------------------------------------------------------------------


def install(repo: pygit2.Repository) -> InstallReport:
    """Install both hooks (chaining foreign ones) and the notes configuration.

    Every precondition is checked before anything is written, so a refusal
    (InstallError) leaves the repository untouched. Running it again changes
    nothing.
    """
    directory = hooks_dir(repo)
    _refuse_generated_hooks_dir(directory)
    plans = [_plan_hook(directory, name) for name in HOOK_NAMES]
    report = InstallReport(directory, warnings=_hooks_dir_warnings(repo, directory))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        report.hooks = [apply() for apply in plans]
    except OSError as exc:
        raise InstallError(f"cannot write hooks in {directory}: {exc}") from exc
    with _config_errors(repo):
        report.config = [_set_merge_strategy(repo), *_drop_older_values(repo)]
    report.warnings += [r.warning for r in forced_notes_refspecs(repo)]
    report.warnings += [step.detail for step in report.config if step.outcome == CONFLICT]
    return report


def _refuse_generated_hooks_dir(directory: Path) -> None:
    # husky regenerates .husky/_ and its scripts find the user's hook by their own
    # file name, so a chained husky script would silently run nothing.
    if ".husky" in directory.parts:
        raise InstallError(
            f"core.hooksPath points at husky's directory ({directory}); husky rewrites those "
            "files. Add this line to .husky/pre-push instead: "
            f'{COMMAND} hook pre-push "$@"  (and `{COMMAND} hook post-commit` to .husky/post-commit)')


def _plan_hook(directory: Path, name: str) -> Callable[[], HookStep]:
    """Decide what to do with one hook; raise InstallError before any write."""
    path, chained = directory / name, chained_path(directory / name)
    script = hook_script(name)
    if not os.path.lexists(path):
        extra = f"; it runs the existing {chained.name}" if os.path.lexists(chained) else ""
        return lambda: _written(path, script, INSTALLED, f"installed{extra}")
    if is_gitproof_hook(path):
        if _current(path, script):
            return lambda: HookStep(name, UNCHANGED, "already installed")
        return lambda: _written(path, script, UPDATED, "updated to this version of gitproof")
    if not os.path.lexists(chained):
        return lambda: _chain(path, chained, script)
    if _same_content(path, chained):
        return lambda: _written(path, script, CHAINED,
                                f"existing hook is identical to {chained.name}, which ours runs first")
    raise InstallError(
        f"{path} is another tool's hook and {chained.name} already exists with different content; "
        f"merge them by hand (keep one as {chained.name}) or remove one, then run install again")


def _current(path: Path, script: bytes) -> bool:
    return path.read_bytes() == script and os.access(path, os.X_OK)


def _same_content(a: Path, b: Path) -> bool:
    try:
        return a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def _chain(path: Path, chained: Path, script: bytes) -> HookStep:
    os.rename(path, chained)
    return _written(path, script, CHAINED, f"existing hook moved to {chained.name}; ours runs it first")


def _written(path: Path, script: bytes, outcome: str, detail: str) -> HookStep:
    temporary = path.with_name(f".{path.name}.gitproof-new")
    temporary.write_bytes(script)
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)  # replaces a symlink itself, never the file it points to
    return HookStep(path.name, outcome, detail)


def _hooks_dir_warnings(repo: pygit2.Repository, directory: Path) -> list[str]:
    warnings = []
    level = config_level(repo, "core.hooksPath")
    if level is not None and level < ConfigLevel.LOCAL:
        warnings.append(f"core.hooksPath comes from your {level.name.lower()} git config: the hooks in "
                        f"{directory} run in every repository that uses that directory")
    workdir = Path(repo.workdir).resolve() if repo.workdir else None
    if workdir and directory.is_relative_to(workdir) and not directory.is_relative_to(common_dir(repo)):
        warnings.append(f"the hooks directory {directory} is inside the working tree: "
                        "the hook files show up in `git status`")
    return warnings


# -- configuration ------------------------------------------------------------------------


@contextmanager
def _config_errors(repo: pygit2.Repository) -> Iterator[None]:
    try:
        yield
    except (pygit2.GitError, OSError) as exc:
        raise InstallError(f"cannot update the git config in {common_dir(repo)}: {exc}") from exc


def _drop_older_values(repo: pygit2.Repository) -> list[ConfigStep]:
    """Remove the values older installs set: ``refs/notes/gpu-proof`` in the repository's own
    notes.displayRef and notes.rewriteRef. Other values, and values in the global config, are
    the user's own and stay."""
    steps = []
    for key, why in OLDER_KEYS.items():
        step = _remove_multivar(repo, key)
        if step.outcome == REMOVED:
            steps.append(ConfigStep(key, NOTES_REF, REMOVED, f"removed (an older install set it): {why}"))
    if steps:
        _drop_empty_sections(common_dir(repo) / "config")
    return steps


def _set_merge_strategy(repo: pygit2.Repository) -> ConfigStep:
    current = config_value(repo, MERGE_STRATEGY_KEY)
    if current is None:
        repo.config[MERGE_STRATEGY_KEY] = MERGE_STRATEGY
        return ConfigStep(MERGE_STRATEGY_KEY, MERGE_STRATEGY, SET, "set")
    if current == MERGE_STRATEGY:
        return ConfigStep(MERGE_STRATEGY_KEY, MERGE_STRATEGY, UNCHANGED, "already set")
    return ConfigStep(MERGE_STRATEGY_KEY, MERGE_STRATEGY, CONFLICT,
                      f"{MERGE_STRATEGY_KEY} is {current!r}, left as it is: {strategy_problem(current)}; "
                      f"to fix: git config {MERGE_STRATEGY_KEY} {MERGE_STRATEGY}")


def strategy_problem(strategy: str) -> str:
    problems = {
        "cat_sort_uniq": "it sorts the lines of both notes and scrambles multi-line receipts",
        "ours": "it drops the other side's receipts", "theirs": "it drops our receipts",
        "manual": "it stops for a manual merge, which a hook cannot do",
    }
    return problems.get(strategy.lower(), "not a strategy gitproof knows")


# -- forced fetch refspecs ------------------------------------------------------------------


@dataclass(frozen=True)
class ForcedRefspec:
    remote: str
    refspec: str

    @property
    def warning(self) -> str:
        return (f"remote {self.remote!r} fetches with the forced refspec {self.refspec!r}: a forced "
                f"fetch into {NOTES_REF} overwrites local receipts that are not pushed yet; "
                f"`git gpu-proof fetch` merges them instead")

    @property
    def fix(self) -> str:
        return f"git config --fixed-value --unset remote.{self.remote}.fetch '{self.refspec}'"


def forced_notes_refspecs(repo: pygit2.Repository) -> list[ForcedRefspec]:
    """Fetch refspecs that force-update our notes ref (``+...:refs/notes/*`` and the like)."""
    return [ForcedRefspec(cast(str, remote.name), spec)  # a configured remote has a name
            for remote in repo.remotes for spec in remote.fetch_refspecs
            if _forces_notes_ref(spec)]


def _forces_notes_ref(refspec: str) -> bool:
    if not refspec.startswith("+"):
        return False
    _, _, destination = refspec[1:].partition(":")
    if "*" not in destination:
        return destination == NOTES_REF
    prefix, _, suffix = destination.partition("*")
    return (len(NOTES_REF) >= len(prefix) + len(suffix)
            and NOTES_REF.startswith(prefix) and NOTES_REF.endswith(suffix))


# -- uninstall --------------------------------------------------------------------------------


def uninstall(repo: pygit2.Repository) -> UninstallReport:
    """Remove our hooks (restoring chained ones) and the configuration install added.

    Foreign hooks stay as they are, receipts are never touched, and running it
    twice is harmless.
    """
    directory = hooks_dir(repo)
    report = UninstallReport(directory)
    try:
        report.hooks = [_remove_hook(directory / name) for name in HOOK_NAMES]
    except OSError as exc:
        raise InstallError(f"cannot remove hooks from {directory}: {exc}") from exc
    with _config_errors(repo):
        report.config = [*(_remove_multivar(repo, key) for key in OLDER_KEYS),
                         _remove_merge_strategy(repo)]
        if any(step.outcome == REMOVED for step in report.config):
            _drop_empty_sections(common_dir(repo) / "config")
    return report


def _remove_hook(path: Path) -> HookStep:
    chained = chained_path(path)
    if os.path.lexists(path) and not is_gitproof_hook(path):
        return HookStep(path.name, FOREIGN, "not installed by gitproof; left alone")
    had_ours = os.path.lexists(path)
    if had_ours:
        os.remove(path)
    if os.path.lexists(chained):
        os.rename(chained, path)
        return HookStep(path.name, RESTORED, f"{'removed; ' if had_ours else ''}restored {chained.name}")
    return HookStep(path.name, REMOVED if had_ours else ABSENT, "removed" if had_ours else "not installed")


def _remove_multivar(repo: pygit2.Repository, key: str) -> ConfigStep:
    levels = [level for value, level in config_entries(repo, key) if value == NOTES_REF]
    if ConfigLevel.LOCAL in levels:
        repo.config.delete_multivar(key, _VALUE_PATTERN)
        return ConfigStep(key, NOTES_REF, REMOVED, "removed")
    elsewhere = f"set in {max(levels).name.lower()} config; left alone" if levels else "not set"
    return ConfigStep(key, NOTES_REF, ABSENT, elsewhere)


def _remove_merge_strategy(repo: pygit2.Repository) -> ConfigStep:
    local = [value for value, level in config_entries(repo, MERGE_STRATEGY_KEY)
             if level == ConfigLevel.LOCAL]
    if local and local[-1] == MERGE_STRATEGY:
        del repo.config[MERGE_STRATEGY_KEY]
        return ConfigStep(MERGE_STRATEGY_KEY, MERGE_STRATEGY, REMOVED, "removed")
    detail = f"is {local[-1]!r}, not ours; left alone" if local else "not set"
    return ConfigStep(MERGE_STRATEGY_KEY, MERGE_STRATEGY, ABSENT, detail)


def _drop_empty_sections(config_file: Path) -> None:
    """Remove the [notes] / [notes "gpu-proof"] headers our removals left empty.

    libgit2 (like `git config --unset`) keeps a section header after its last
    key is gone; dropping it makes install + uninstall leave the file as it
    was. Done under git's lock file; skipped if someone else holds it.
    """
    lines = config_file.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for i, line in enumerate(lines)
            if not (_EMPTY_SECTIONS.match(line) and _section_ends(lines, i + 1))]
    if kept == lines:
        return
    lock = config_file.with_name(config_file.name + ".lock")
    try:
        descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("".join(kept))
    shutil.copymode(config_file, lock)
    os.replace(lock, config_file)


def _section_ends(lines: list[str], start: int) -> bool:
    return start >= len(lines) or lines[start].lstrip().startswith("[")
