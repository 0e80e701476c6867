"""The audit trail (gitproof.verify.audit): statuses that do not flip when a key is rotated out or a
receipt ages. Real repositories with back-dated commits, real keys, real signatures."""
from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NotesStore
from gitproof.receipt import SignedReceipt, TestResult
from gitproof.verify import ANCESTOR, SELF, UNVALIDATED, open_verifier
from gitproof.verify.audit import (NEVER_VALID, REVOKED, VALID, WAS_VALID, Auditor, TrustHistory, open_auditor)
from tests.helpers import Key, git, init_repo, write_files
from tests.receipts import sign_receipt

DAY = timedelta(days=1)
START = datetime.now(timezone.utc).replace(microsecond=0) - 60 * DAY
SIGNERS = ".gpu-proof/allowed_signers"
POLICY = f'[tool.gpu_proof]\nallowed_signers = "{SIGNERS}"\n'
SHARDED_POLICY = POLICY + ('[tool.gpu_proof.shards.kernels]\npaths = ["src/kernels"]\n'
                           '[tool.gpu_proof.shards.io]\npaths = ["src/io"]\n')


def commit_at(root: Path, message: str, when: datetime) -> str:
    """Commit everything with author and committer dates set to ``when``."""
    env = {**os.environ, "GIT_AUTHOR_DATE": when.isoformat(), "GIT_COMMITTER_DATE": when.isoformat()}
    git(root, "add", "-A")
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=root, env=env, check=True)
    return git(root, "rev-parse", "HEAD")


class Team:
    """A project whose allowed_signers file changes over (back-dated) time on main."""

    def __init__(self, root: Path, keys: dict[str, Key], policy: str = POLICY,
                 files: dict[str, str] | None = None, start: datetime = START) -> None:
        self.root, self.keys, self.start = root, keys, start
        init_repo(root)
        write_files(root, files or {"src/kernels.py": "def add(a, b):\n    return a + b\n",
                                    "tests/test_kernels.py": "def test_add():\n    pass\n"})
        write_files(root, {"README.md": "team\n", "pyproject.toml": policy})
        self.base = self.trust(["alice"], start, "base: alice signs")
        self.repo = pygit2.Repository(str(root))

    def trust(self, names: list[str], when: datetime, message: str) -> str:
        """Replace allowed_signers by these principals' keys, committed at ``when``."""
        lines = "".join(f'{n}@example.com namespaces="gpu-proof" {self.keys[n].public_line}\n' for n in names)
        write_files(self.root, {SIGNERS: lines})
        return commit_at(self.root, message, when)

    def commit(self, files: dict[str, str], when: datetime, message: str = "change") -> str:
        write_files(self.root, files)
        return commit_at(self.root, message, when)

    def attach(self, rev: str, name: str, when: datetime, key: Key | None = None, **overrides) -> SignedReceipt:
        """A receipt for ``rev``'s code signed by ``name`` (with ``key``, default theirs), made at ``when``."""
        fields = dict(started=when, finished=when + timedelta(seconds=1))
        fields.update(overrides)
        signed = sign_receipt(self.repo, key or self.keys[name], rev, f"{name}@example.com", **fields)
        NotesStore(self.repo).add(self.id(rev), signed)
        return signed

    def id(self, rev: str) -> str:
        return str(self.repo.revparse_single(rev).peel(pygit2.Commit).id)

    def audit(self, rev: str = "HEAD", trust_rev: str | None = None):
        repo = pygit2.Repository(str(self.root))  # fresh: notes and refs as they are now
        return open_auditor(repo, trust_rev).audit(repo.revparse_single(rev).peel(pygit2.Commit))

    def verify(self, rev: str = "HEAD"):
        repo = pygit2.Repository(str(self.root))
        return open_verifier(repo).verify(repo.revparse_single(rev).peel(pygit2.Commit))


@pytest.fixture
def keys(keygen) -> dict[str, Key]:
    return {name: keygen("ed25519", name) for name in ("alice", "bob", "mallory")}


@pytest.fixture
def team(tmp_path: Path, keys) -> Team:
    return Team(tmp_path / "team", keys)


def only(audit):
    [scope] = audit.scopes
    return scope


def test_a_receipt_valid_now_is_valid_and_says_where_it_was_made(team):
    team.attach("HEAD", "alice", START + DAY)
    audit = team.audit()
    assert audit.status == VALID and only(audit).relation == SELF
    team.commit({"README.md": "docs\n"}, START + 2 * DAY, "docs")
    scope = only(team.audit())
    assert scope.status == VALID and scope.relation == ANCESTOR and scope.receipt.note_commit == team.base


def test_a_signer_removed_later_leaves_the_commit_was_valid_naming_the_signer(team, keys):
    team.attach("HEAD", "alice", START + DAY)
    team.trust(["bob"], START + 2 * DAY, "rotate: bob replaces alice")
    assert team.verify().state == UNVALIDATED  # the merge gate follows today's allowed_signers
    audit = team.audit()
    scope = only(audit)
    assert audit.status == WAS_VALID and scope.status == WAS_VALID
    assert scope.trusted_at == team.base and [r.code for r in scope.reasons] == ["signer-not-allowed"]
    data = audit.to_json()
    assert data["status"] == "was-valid"
    assert data["scopes"][0]["signer"] == "alice@example.com"
    assert data["scopes"][0]["key"] == keys["alice"].fingerprint
    assert data["scopes"][0]["trusted_at"] == team.base


def test_a_receipt_made_after_the_removal_is_never_valid(team):
    team.commit({"README.md": "docs\n"}, START + DAY, "docs")
    team.trust(["bob"], START + 2 * DAY, "rotate")
    team.attach("HEAD~1", "alice", START + 3 * DAY)
    scope = only(team.audit("HEAD~1"))
    assert scope.status == NEVER_VALID
    assert any("not trusted when made either" in r.message for r in scope.reasons)


@pytest.mark.parametrize("removed", [False, True])
def test_revocation_wins_over_valid_and_was_valid(team, keys, removed):
    team.attach("HEAD", "alice", START + DAY)
    if removed:
        team.trust(["bob"], START + 2 * DAY, "rotate")
    revoked = team.root.parent / "revoked_keys"
    revoked.write_text(keys["alice"].public_line + "\n")
    git(team.root, "config", "gpg.ssh.revocationFile", str(revoked))
    scope = only(team.audit())
    assert scope.status == REVOKED and [r.code for r in scope.reasons] == ["key-revoked"]
    assert scope.to_json()["signer"] == "alice@example.com"


def test_an_old_receipt_is_still_valid_in_the_audit(team):
    team.attach("HEAD", "alice", START + DAY)  # 59 days old; the default max_age_days is 30
    verdict = team.verify()
    assert verdict.state == UNVALIDATED and [r.code for r in verdict.reasons] == ["too-old"]
    assert team.audit().status == VALID


def test_max_age_zero_does_not_apply_either(team):
    write_files(team.root, {"pyproject.toml": POLICY + "max_age_days = 0\n"})
    team.commit({}, START + DAY / 2, "today only")
    team.attach("HEAD", "alice", START + DAY)
    assert team.audit().status == VALID


def test_a_key_the_audited_commit_adds_for_itself_is_not_was_valid(team):
    # mallory's branch adds mallory's key with the code, and mallory signs a receipt for it
    git(team.root, "checkout", "-q", "-b", "feature")
    team.commit({"src/kernels.py": "def add(a, b):\n    return b + a\n"}, START + DAY, "kernel")
    team.trust(["alice", "mallory"], START + DAY, "trust myself")
    team.attach("HEAD", "mallory", START + 2 * DAY)
    # main merges the branch later, then drops the key again
    git(team.root, "checkout", "-q", "main")
    env = {**os.environ, "GIT_AUTHOR_DATE": (START + 3 * DAY).isoformat(),
           "GIT_COMMITTER_DATE": (START + 3 * DAY).isoformat()}
    subprocess.run(["git", "merge", "-q", "--no-ff", "-m", "merge", "feature"], cwd=team.root, env=env, check=True)
    team.trust(["alice"], START + 4 * DAY, "drop mallory")
    for trust_rev in (None, "refs/heads/main"):
        scope = only(team.audit("feature", trust_rev))
        assert scope.status == NEVER_VALID
    # The trust branch is main's first-parent line, not the branch that vouched for itself.
    assert only(team.audit("feature", "refs/heads/main")).trusted_at is None


def test_a_key_on_a_side_branch_only_is_not_was_valid(team):
    git(team.root, "checkout", "-q", "-b", "side")
    team.trust(["alice", "mallory"], START + DAY, "trust myself")
    team.attach("HEAD", "mallory", START + 2 * DAY)
    git(team.root, "checkout", "-q", "main")
    scope = only(team.audit("side", "refs/heads/main"))
    assert scope.status == NEVER_VALID
    assert any("not trusted when made either" in r.message for r in scope.reasons)


DOCS = Path(__file__).resolve().parents[2] / "docs"
CODE = {"src/kernels.py": "def add(a, b):\n    return b + a\n"}


def land(team: Team, branch: str, style: str, when: datetime) -> str:
    """Bring ``branch`` onto main at ``when`` as a forge's merge button would; returns main's tip."""
    env = {**os.environ, "GIT_AUTHOR_DATE": when.isoformat(), "GIT_COMMITTER_DATE": when.isoformat()}
    if style == "rebase":
        subprocess.run(["git", "rebase", "-q", "main", branch], cwd=team.root, env=env, check=True)
    git(team.root, "checkout", "-q", "main")
    args = {"ff": ["--ff-only"], "rebase": ["--ff-only"], "merge": ["--no-ff", "-m", "merge"],
            "squash": ["--squash"]}[style]
    subprocess.run(["git", "merge", "-q", *args, branch], cwd=team.root, env=env, check=True)
    return commit_at(team.root, "squash", when) if style == "squash" else team.id("HEAD")


def _section(path: Path, heading: str) -> str:
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start:end if end != -1 else None]


def _temporary_key_pr(team: Team) -> tuple[str, str, str]:
    """The review's pull request: X adds mallory's key, G changes src/ and carries mallory's
    receipt, Y removes the key; the net diff leaves allowed_signers as it was."""
    git(team.root, "checkout", "-q", "-b", "pr")
    x = team.trust(["alice", "mallory"], START + DAY, "X: temporary key")
    g = team.commit(CODE, START + 2 * DAY, "G: kernel")
    team.attach(g, "mallory", START + 3 * DAY)
    y = team.trust(["alice"], START + 4 * DAY, "Y: drop the key")
    assert git(team.root, "diff", team.base, "pr", "--", SIGNERS) == ""
    return x, g, y


@pytest.mark.parametrize("style", ["merge", "squash"])
def test_a_temporary_key_in_a_merged_or_squashed_pr_is_not_was_valid(team, style):
    _temporary_key_pr(team)
    tip = land(team, "pr", style, START + 5 * DAY)
    for rev in ("pr~1", tip):
        scope = only(team.audit(rev, "refs/heads/main"))
        assert scope.status == NEVER_VALID and scope.trusted_at is None


def test_a_temporary_key_in_a_fast_forwarded_pr_is_the_documented_limit(team):
    # What history alone cannot tell: after a fast-forward, X, G and Y are first-parent commits of
    # main, as if each had been pushed there. G and Y stay was-valid, naming the PR's own commits.
    _, g, y = _temporary_key_pr(team)
    land(team, "pr", "ff", START + 5 * DAY)
    for rev in (g, y):
        scope = only(team.audit(rev, "refs/heads/main"))
        assert scope.status == WAS_VALID and scope.run.signer == "mallory@example.com"
        assert scope.trusted_at == g and scope.landed_at == rev
    # It reaches no further: the next commit lands on Y, whose allowed_signers lacks the key.
    team.commit({"README.md": "later\n"}, START + 6 * DAY, "docs")
    scope = only(team.audit("HEAD", "refs/heads/main"))
    assert scope.status == NEVER_VALID
    assert any("landed on the trust branch: " in r.message and y[:10] in r.message for r in scope.reasons)
    for doc, heading in ((DOCS / "security-model.md", "## The audit trail"),
                         (DOCS / "cli.md", "### The audit view")):
        section = _section(doc, heading)
        assert "fast-forward" in section and "landed_at" in section and "squash" in section


@pytest.mark.parametrize("style", ["merge", "squash", "rebase"])
def test_a_receipt_made_before_the_removal_on_code_landing_after_it_is_not_was_valid(team, style):
    team.trust(["alice", "bob"], START + DAY, "bob joins")
    git(team.root, "checkout", "-q", "-b", "feature")
    team.commit(CODE, START + 2 * DAY, "kernel")
    team.attach("HEAD", "bob", START + 3 * DAY)
    git(team.root, "checkout", "-q", "main")
    removal = team.trust(["alice"], START + 4 * DAY, "bob leaves")
    tip = land(team, "feature", style, START + 5 * DAY)
    scope = only(team.audit(tip, "refs/heads/main"))
    assert scope.status == NEVER_VALID and scope.trusted_at is None
    [refusal] = [r.message for r in scope.reasons if "landed" in r.message]
    assert "not trusted when made" not in refusal and f"allowed_signers at {removal[:10]}" in refusal


@pytest.mark.parametrize("style", ["merge", "squash", "ff"])
def test_a_key_trusted_when_the_code_landed_and_removed_later_is_was_valid(team, keys, style):
    joined = team.trust(["alice", "bob"], START + DAY, "bob joins")
    git(team.root, "checkout", "-q", "-b", "feature")
    change = team.commit(CODE, START + 2 * DAY, "kernel")
    team.attach("HEAD", "bob", START + 3 * DAY)
    tip = land(team, "feature", style, START + 4 * DAY)
    team.trust(["alice"], START + 5 * DAY, "bob leaves")
    scope = only(team.audit(tip, "refs/heads/main"))
    assert scope.status == WAS_VALID and scope.landed_at == tip
    assert scope.trusted_at == (change if style == "ff" else joined)
    data = scope.to_json()
    assert data["signer"] == "bob@example.com" and data["key"] == keys["bob"].fingerprint
    assert data["landed_at"] == tip and data["trusted_at"] == scope.trusted_at


def test_a_commit_that_never_landed_on_the_trust_branch_is_not_was_valid(team):
    team.trust(["alice", "bob"], START + DAY, "bob joins")
    git(team.root, "checkout", "-q", "-b", "side")
    side = team.commit(CODE, START + 2 * DAY, "kernel")
    team.attach("HEAD", "bob", START + 3 * DAY)
    git(team.root, "checkout", "-q", "main")
    team.trust(["alice"], START + 4 * DAY, "bob leaves")
    scope = only(team.audit(side, "refs/heads/main"))
    assert scope.status == NEVER_VALID
    assert any("never landed there" in r.message for r in scope.reasons)


def _bad_signature(team: Team, keys) -> SignedReceipt:
    good = sign_receipt(team.repo, keys["alice"], "HEAD", "alice@example.com", started=START + DAY,
                        finished=START + DAY + timedelta(seconds=1))
    other = sign_receipt(team.repo, keys["alice"], "HEAD", "alice@example.com", started=START + DAY,
                         finished=START + DAY + timedelta(seconds=2))
    return SignedReceipt(other.receipt, other.payload, good.signature)  # the signature is over other bytes


@pytest.mark.parametrize("spoil", ["signature", "fingerprint", "failed-test", "principal"])
def test_only_a_removed_signer_is_rescued(team, keys, spoil):
    when = START + DAY
    if spoil == "signature":
        signed = _bad_signature(team, keys)
        NotesStore(team.repo).add(team.base, signed)
    elif spoil == "fingerprint":
        team.attach("HEAD", "alice", when, key_fingerprint=keys["bob"].fingerprint)
    elif spoil == "failed-test":
        team.attach("HEAD", "alice", when, tests=[TestResult("tests/t.py::a", "failed", 0.1)], exit_status=1)
    else:
        team.attach("HEAD", "alice", when, signer="mallory@example.com")
    team.trust(["bob"], START + 2 * DAY, "rotate")
    scope = only(team.audit())
    assert scope.status == NEVER_VALID and scope.trusted_at is None


def test_the_trust_history_walk_is_bounded(team):
    team.attach("HEAD", "alice", START + DAY)
    for n in range(3):
        team.commit({"README.md": f"{n}\n"}, START + (2 + n) * DAY)
    team.trust(["bob"], START + 6 * DAY, "rotate")
    repo = pygit2.Repository(str(team.root))
    auditor = open_auditor(repo)
    assert auditor.audit(repo.head.peel(pygit2.Commit)).status == WAS_VALID
    history = auditor.history
    short = Auditor(auditor.verifier, TrustHistory(repo, history.tip, history.path, history.today, limit=3))
    scope = only(short.audit(repo.head.peel(pygit2.Commit)))
    assert scope.status == NEVER_VALID and any("searched 3" in r.message for r in scope.reasons)


def test_a_landing_older_than_the_walk_is_not_was_valid(team):
    for n in range(3):
        team.commit({"README.md": f"{n}\n"}, START + (2 + n) * DAY)
    team.attach(team.base, "alice", START + 5 * DAY, tests=[TestResult("tests/t.py::late", "passed", 0.1)])
    team.trust(["bob"], START + 6 * DAY, "rotate")
    repo = pygit2.Repository(str(team.root))
    auditor = open_auditor(repo)
    base = repo.get(team.base)
    assert only(auditor.audit(base)).status == WAS_VALID  # the branch's first commit: its own file
    history = auditor.history
    short = Auditor(auditor.verifier, TrustHistory(repo, history.tip, history.path, history.today, limit=3))
    scope = only(short.audit(base))
    assert scope.status == NEVER_VALID
    assert any("landed before the 3 trust-branch commits searched" in r.message for r in scope.reasons)


def test_allowed_signers_are_parsed_once_per_blob(team):
    for n in range(3):
        team.attach("HEAD", "alice", START + DAY, tests=[TestResult(f"tests/t.py::t{n}", "passed", 0.1)])
        team.commit({"README.md": f"{n}\n"}, START + (2 + n) * DAY)
    team.trust(["bob"], START + 9 * DAY, "rotate")
    repo = pygit2.Repository(str(team.root))
    auditor = open_auditor(repo)
    assert {a.status for a in auditor.audit_all(list(repo.walk(repo.head.target)))} == {WAS_VALID}
    assert len(auditor.history._sources) == 1  # four commits before the rotation, one allowed_signers blob


def test_without_a_committed_allowed_signers_file_nothing_is_was_valid(team, keys):
    signers = team.root.parent / "machine_signers"
    signers.write_text(f'alice@example.com {keys["alice"].public_line}\n')
    git(team.root, "config", "gpg.ssh.allowedSignersFile", str(signers))
    write_files(team.root, {"pyproject.toml": "[tool.gpu_proof]\n"})
    team.commit({}, START + DAY / 2, "trust the machine's file")
    team.attach("HEAD", "alice", START + DAY)
    assert team.audit().status == VALID
    signers.write_text(f'bob@example.com {keys["bob"].public_line}\n')
    assert team.audit().status == NEVER_VALID


def test_an_audit_is_json(team):
    team.attach("HEAD", "alice", START + DAY)
    data = json.loads(json.dumps(team.audit().to_json()))
    [scope] = data["scopes"]
    assert data["status"] == "valid" and scope["shard"] is None and scope["reasons"] == []
    assert scope["receipt"]["made_on"] == team.base and scope["receipt"]["relation"] == SELF
    assert scope["receipt"]["counts"]["passed"] == 2 and scope["receipt"]["dirty"] is False
    assert scope["receipt"]["gpus"] == ["NVIDIA H100 80GB HBM3"]


# -- shards -------------------------------------------------------------------------------------


@pytest.fixture
def sharded(tmp_path: Path, keys) -> Team:
    return Team(tmp_path / "sharded", keys, SHARDED_POLICY,
                {"src/kernels/add.py": "def add(a, b):\n    return a + b\n",
                 "src/io/read.py": "def read(p):\n    return open(p).read()\n"})


def _shard_receipt(team: Team, shard: str, name: str, when: datetime) -> SignedReceipt:
    path = f"src/{shard}"
    trees = {path: git(team.root, "rev-parse", f"HEAD:{path}")}
    return team.attach("HEAD", name, when, shard=shard, trees=trees,
                       tests=[TestResult(f"tests/{shard}/test_x.py::test_x", "passed", 0.1)])


def test_a_sharded_commit_is_audited_per_shard(sharded):
    sharded.trust(["alice", "bob"], START + DAY / 2, "bob joins")
    _shard_receipt(sharded, "kernels", "alice", START + DAY)
    _shard_receipt(sharded, "io", "bob", START + DAY)
    assert sharded.audit().status == VALID
    sharded.trust(["alice"], START + 2 * DAY, "bob leaves")
    audit = sharded.audit()
    statuses = {s.shard: s.status for s in audit.scopes}
    assert audit.status == WAS_VALID and statuses == {"kernels": VALID, "io": WAS_VALID}
    assert {s["shard"]: s["signer"] for s in audit.to_json()["scopes"]} == {
        "kernels": "alice@example.com", "io": "bob@example.com"}


def test_a_sharded_commit_with_a_shard_never_valid_is_never_valid(sharded):
    _shard_receipt(sharded, "kernels", "alice", START + DAY)
    audit = sharded.audit()
    assert audit.status == NEVER_VALID
    assert {s.shard: s.status for s in audit.scopes} == {"kernels": VALID, "io": NEVER_VALID}


def test_an_entry_expired_since_the_receipt_was_made_is_was_valid(team, keys):
    expiry = (START + 2 * DAY).strftime("%Y%m%d%H%M%SZ")
    write_files(team.root, {SIGNERS: f'alice@example.com namespaces="gpu-proof",valid-before="{expiry}" '
                                     f'{keys["alice"].public_line}\n'})
    team.commit({}, START + DAY / 2, "alice until day 2")
    team.attach("HEAD", "alice", START + DAY)
    late = team.commit({"README.md": "late\n"}, START + DAY + DAY / 2, "docs")
    team.attach(late, "alice", START + 3 * DAY, tests=[TestResult("tests/t.py::late", "passed", 0.1)])
    scope = only(team.audit("HEAD~1"))
    assert scope.status == WAS_VALID and scope.trusted_at == team.id("HEAD~1")
    # On HEAD the nearer receipt (its own, made after the expiry) is refused; the ancestor's still was valid.
    head = only(team.audit())
    assert head.status == WAS_VALID and head.receipt.note_commit == team.id("HEAD~1")
