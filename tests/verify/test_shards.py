"""Sharded policies: one receipt per shard, carried forward by content; `plan` and `verify` on them.

Real repositories, real keys, real signatures. Shard receipts are made with
tests/receipts.py (not `run --shard`), each fingerprinting only its shard's paths.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NotesStore
from gitproof.receipt import SignedReceipt, TestResult
from gitproof.verify import UNCHANGED, UNVALIDATED, VALIDATED, open_verifier
from tests.helpers import Key, commit_all, git, write_files
from tests.receipts import attach_receipt

BIN = str(Path(sys.executable).parent)
SHARDS = {"kernels": ["src/kernels", "tests/kernels"], "io": ["src/io", "tests/io"]}
TESTS = {"kernels": "tests/kernels/test_add.py::test_add", "io": "tests/io/test_read.py::test_read"}
SIGNERS = '.gpu-proof/allowed_signers'


def pyproject(extra: str = "") -> str:
    text = f'[tool.gpu_proof]\nallowed_signers = "{SIGNERS}"\n{extra}'
    for name, paths in SHARDS.items():
        text += (f"\n[tool.gpu_proof.shards.{name}]\npaths = {json.dumps(paths)}\n"
                 f"tests = {json.dumps([paths[1]])}\n")
    return text


class Suite:
    """A project with two shards, kernels and io, and a trusted key."""

    def __init__(self, root: Path, key: Key) -> None:
        self.root, self.key = root, key
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")
        write_files(root, {
            "src/kernels/add.py": "def add(a, b):\n    return a + b\n",
            "tests/kernels/test_add.py": "def test_add():\n    assert 1 + 1 == 2\n",
            "src/io/read.py": "def read(path):\n    return open(path).read()\n",
            "tests/io/test_read.py": "def test_read():\n    pass\n",
            "README.md": "suite\n",
            "pyproject.toml": pyproject(),
            SIGNERS: f'alice@example.com namespaces="gpu-proof" {key.public_line}\n',
        })
        commit_all(root, "A: two shards")
        self.repo = pygit2.Repository(str(root))

    def commit(self, files: dict[str, str], message: str) -> str:
        write_files(self.root, files)
        return commit_all(self.root, message)

    def trees(self, paths: list[str], rev: str = "HEAD") -> dict[str, str]:
        return {p: git(self.root, "rev-parse", f"{rev}:{p}") for p in paths}

    def attach(self, shard: str | None, rev: str = "HEAD", paths: list[str] | None = None,
               **overrides) -> SignedReceipt:
        """A receipt for one shard (None: unsharded) over that shard's paths at ``rev``."""
        paths = paths or (SHARDS[shard] if shard else ["src", "tests"])
        tests = [TestResult(TESTS[shard] if shard else TESTS["kernels"], "passed", 0.2)]
        fields = dict(shard=shard, trees=self.trees(paths, rev), tests=tests)
        fields.update(overrides)
        return attach_receipt(self.root, self.key, rev, **fields)

    def verify(self, rev: str = "HEAD"):
        return open_verifier(self.repo).verify(self.repo.revparse_single(rev).peel(pygit2.Commit))

    def gp(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
        return subprocess.run(["git", "gpu-proof", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=120)

    def plan_json(self, *args: str) -> tuple[int, dict]:
        result = self.gp("plan", "--json", *args)
        assert result.returncode in (0, 1), result.stderr
        return result.returncode, json.loads(result.stdout)


@pytest.fixture
def suite(tmp_path: Path, keygen) -> Suite:
    return Suite(tmp_path / "suite", keygen("ed25519"))


def short(commit: str) -> str:
    return commit[:10]


# -- the library: which receipt counts for which shard ----------------------------------------

def test_both_shard_receipts_validate_their_commit(suite):
    suite.attach("kernels")
    suite.attach("io")
    verdict = suite.verify()
    assert verdict.state == VALIDATED and verdict.ok and verdict.reasons == []
    assert {name: v.state for name, v in verdict.shards.items()} == {"kernels": VALIDATED, "io": VALIDATED}
    assert verdict.shards["io"].receipt.signed.receipt.shard == "io"
    assert verdict.shards["io"].trees == suite.trees(SHARDS["io"])


def test_change_in_one_shard_carries_the_other_forward_and_unvalidates_only_it(suite):
    a = git(suite.root, "rev-parse", "HEAD")
    suite.attach("kernels")
    suite.attach("io")
    suite.commit({"src/io/read.py": "def read(path):\n    return open(path, 'rb').read()\n"}, "B: io only")
    verdict = suite.verify()
    assert verdict.state == UNVALIDATED
    kernels, io = verdict.shards["kernels"], verdict.shards["io"]
    assert kernels.state == UNCHANGED and kernels.receipt.note_commit == a
    assert io.state == UNVALIDATED
    [reason] = io.reasons
    assert reason.code == "fingerprint-changed"
    assert short(a) in reason.message and "src/io/read.py" in reason.message
    [combined] = verdict.reasons
    assert combined.message.startswith("shard io: ") and "src/io/read.py" in combined.message


def test_rerunning_only_the_changed_shard_validates_the_commit(suite):
    a = git(suite.root, "rev-parse", "HEAD")
    suite.attach("kernels")
    suite.attach("io")
    b = suite.commit({"src/io/read.py": "def read(path):\n    return path\n"}, "B: io only")
    io_receipt = suite.attach("io")
    verdict = suite.verify()
    assert verdict.ok
    assert verdict.shards["io"].state == VALIDATED and verdict.shards["io"].receipt.signed == io_receipt
    assert verdict.shards["kernels"].state == UNCHANGED and verdict.shards["kernels"].receipt.note_commit == a
    # ...with no new kernels receipt: B's note holds exactly the io one.
    assert [e.signed.receipt.shard for e in NotesStore(suite.repo).entries(b)] == ["io"]


def test_a_kernels_receipt_never_counts_for_io(suite):
    # Even one that records io's trees, on the very commit.
    suite.attach("kernels")
    wrong = suite.attach("kernels", paths=SHARDS["kernels"] + SHARDS["io"])
    verdict = suite.verify()
    assert not verdict.ok
    assert verdict.shards["kernels"].ok and verdict.shards["io"].state == UNVALIDATED
    assert [r.code for r in verdict.shards["io"].reasons] == ["no-receipt"]
    verifier = open_verifier(suite.repo)
    io_scope = next(s for s in verifier.scopes if s.shard == "io")
    judged = verifier.judge(wrong, suite.trees(SHARDS["io"]), "HEAD", io_scope)
    assert [f.code for f in judged.failures] == ["wrong-shard"]
    assert "shard 'kernels'" in judged.failures[0].message and "not shard 'io'" in judged.failures[0].message


def test_an_unsharded_receipt_does_not_count_under_a_sharded_policy(suite):
    whole = suite.attach(None)
    verdict = suite.verify()
    assert verdict.state == UNVALIDATED
    assert all(v.state == UNVALIDATED for v in verdict.shards.values())
    # `show` judges it for the first shard's scope and says why it does not fit.
    [shown] = open_verifier(suite.repo).receipts_on(suite.repo.head.peel())
    assert shown.signed == whole and "wrong-shard" in [f.code for f in shown.failures]
    assert "covers no shard" in next(f.message for f in shown.failures if f.code == "wrong-shard")


def test_required_shards_makes_the_others_optional(suite):
    suite.commit({"pyproject.toml": pyproject('required_shards = ["kernels"]\n')}, "only kernels required")
    suite.attach("kernels")
    verdict = suite.verify()
    assert verdict.ok and list(verdict.shards) == ["kernels"]
    code, plan = suite.plan_json()
    assert code == 0 and plan["ok"] and plan["rerun"] == []
    io = next(s for s in plan["shards"] if s["name"] == "io")
    assert io["required"] is False and io["valid"] is False
    assert io["command"] == "git gpu-proof run --shard io"
    text = suite.gp("plan")
    assert text.returncode == 0 and "(not in required_shards)" in text.stdout


# -- the commands ------------------------------------------------------------------------------

def test_plan_names_what_holds_and_what_must_run_again(suite):
    a = git(suite.root, "rev-parse", "HEAD")
    suite.attach("kernels")
    suite.attach("io")
    clean = suite.gp("plan")
    assert clean.returncode == 0, clean.stderr
    assert "nothing to run" in clean.stdout and "git gpu-proof run" not in clean.stdout
    suite.commit({"src/io/read.py": "def read(path):\n    return None\n"}, "B: io only")
    result = suite.gp("plan")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "1 must run again" in lines[0]
    kernels = next(line for line in lines if line.strip().startswith("kernels"))
    assert "valid" in kernels and f"carried forward from {short(a)}" in kernels
    assert "alice@example.com" in kernels
    io = next(line for line in lines if line.strip().startswith("io"))
    assert io.rstrip().endswith("git gpu-proof run --shard io")
    why = next(line for line in lines if "why:" in line)
    assert f"changed since the receipt on {short(a)}" in why and "src/io/read.py" in why


def test_plan_json_shape(suite):
    a = git(suite.root, "rev-parse", "HEAD")
    suite.attach("kernels")
    b = suite.commit({"src/io/read.py": "x = 1\n"}, "B: io only")
    code, plan = suite.plan_json()
    assert code == 1
    assert set(plan) == {"rev", "commit", "sharded", "ok", "rerun", "shards"}
    assert (plan["rev"], plan["commit"], plan["sharded"], plan["ok"]) == ("HEAD", b, True, False)
    assert plan["rerun"] == ["io"]
    assert [s["name"] for s in plan["shards"]] == ["kernels", "io"]
    kernels, io = plan["shards"]
    keys = {"name", "required", "paths", "state", "valid", "carried", "trees", "receipt", "reasons", "command"}
    assert set(kernels) == keys and set(io) == keys
    assert kernels["state"] == "unchanged" and kernels["valid"] and kernels["carried"]
    assert kernels["paths"] == SHARDS["kernels"] and kernels["trees"] == suite.trees(SHARDS["kernels"])
    assert kernels["receipt"]["note_commit"] == a and kernels["receipt"]["shard"] == "kernels"
    assert kernels["receipt"]["signer"] == "alice@example.com" and kernels["command"] is None
    assert kernels["reasons"] == []
    assert io["state"] == "unvalidated" and not io["valid"] and not io["carried"]
    assert io["receipt"] is None and io["command"] == "git gpu-proof run --shard io"
    assert [r["code"] for r in io["reasons"]] == ["no-receipt"]
    # another revision, by name
    code, older = suite.plan_json("HEAD~1")
    assert code == 1 and older["commit"] == a and older["rerun"] == ["io"]
    assert older["shards"][0]["state"] == "validated" and not older["shards"][0]["carried"]


def test_plan_says_why_a_failed_receipt_does_not_count(suite):
    suite.attach("kernels")
    suite.attach("io", tests=[TestResult(TESTS["io"], "failed", 0.3)])
    code, plan = suite.plan_json()
    assert code == 1 and plan["rerun"] == ["io"]
    [reason] = plan["shards"][1]["reasons"]
    assert reason["code"] == "tests-failed" and TESTS["io"] in reason["message"]


def test_plan_for_an_unsharded_policy_has_one_pseudo_shard(suite):
    suite.commit({"pyproject.toml": f'[tool.gpu_proof]\nallowed_signers = "{SIGNERS}"\n'}, "no shards")
    code, plan = suite.plan_json()
    assert code == 1 and not plan["sharded"] and plan["rerun"] == ["all"]
    [whole] = plan["shards"]
    assert whole["name"] == "all" and whole["paths"] == ["src", "tests"]
    assert whole["command"] == "git gpu-proof run"
    suite.attach(None)
    code, plan = suite.plan_json()
    assert code == 0 and plan["shards"][0]["state"] == "validated"
    assert "git gpu-proof run" not in suite.gp("plan").stdout


def test_plan_usage_and_configuration_errors_exit_2(suite):
    helped = suite.gp("plan", "--help")
    assert helped.returncode == 0 and "Usage:" in helped.stdout and "--json" in helped.stdout
    assert suite.gp("plan", "no-such-rev").returncode == 2
    assert suite.gp("plan", "--no-such-option").returncode == 2
    suite.commit({"pyproject.toml": pyproject('required_shards = ["gpu"]\n')}, "bad policy")
    result = suite.gp("plan")
    assert result.returncode == 2 and "undefined shard 'gpu'" in result.stderr
    (suite.root / "pyproject.toml").write_text(pyproject())
    (suite.root / SIGNERS).unlink()
    result = suite.gp("plan")
    assert result.returncode == 2 and "allowed signers file" in result.stderr


def test_verify_on_a_sharded_commit(suite):
    a = git(suite.root, "rev-parse", "HEAD")
    suite.attach("kernels")
    suite.attach("io")
    ok = suite.gp("verify")
    assert ok.returncode == 0 and ok.stdout.split()[:2] == [short(a), "validated"]
    suite.commit({"src/io/read.py": "y = 2\n"}, "B: io only")
    bad = suite.gp("verify")
    assert bad.returncode == 1
    line = bad.stdout.splitlines()[0]
    assert "unvalidated" in line and "shard io: GPU code changed" in line and "src/io/read.py" in line
    assert "shard kernels:" not in line  # no reason is given for the shard that still holds
    data = json.loads(suite.gp("verify", "--json").stdout)
    shards = data["results"][0]["shards"]
    assert shards["kernels"]["state"] == "unchanged" and shards["io"]["state"] == "unvalidated"
    assert shards["kernels"]["receipt"]["note_commit"] == a and shards["io"]["receipt"] is None
    # After io runs again the commit counts as unchanged overall, since kernels is carried.
    suite.attach("io")
    again = suite.gp("verify")
    assert again.returncode == 0 and again.stdout.split()[1] == "unchanged"


# -- shards found by their trees, wherever their receipts sit ----------------------------------------


def test_a_squash_of_two_shard_runs_is_validated_shard_by_shard(suite):
    """Each shard's receipt sits on a different pull-request commit; the squash has neither note."""
    base = git(suite.root, "rev-parse", "HEAD")
    git(suite.root, "switch", "-q", "-c", "pr")
    kernels_at = suite.commit({"src/kernels/add.py": "def add(a, b):\n    return b + a\n"}, "pr: kernels")
    suite.attach("kernels")
    io_at = suite.commit({"src/io/read.py": "def read(path):\n    return path\n"}, "pr: io")
    suite.attach("io")
    git(suite.root, "switch", "-q", "main")
    git(suite.root, "merge", "-q", "--squash", "pr")
    squashed = commit_all(suite.root, "pr (#1), squashed")
    assert git(suite.root, "rev-parse", "HEAD~1") == base
    verdict = suite.verify()
    assert verdict.ok and verdict.state == UNCHANGED, verdict.reasons
    assert {name: part.receipt.note_commit for name, part in verdict.shards.items()} == {
        "kernels": kernels_at, "io": io_at}
    assert {part.relation for part in verdict.shards.values()} == {"same code"}
    assert verdict.commit == squashed
