from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from gitproof.policy import (Policy, PolicyError, load_policy, policy_from_toml, read_node_ids,
                             read_policy_file)
from tests.helpers import commit_all, write_files


def test_defaults_without_a_table():
    policy = policy_from_toml("[project]\nname = 'x'\n", "pyproject.toml")
    assert policy.fingerprint_paths == ["src", "tests"]
    assert policy.markers == ("gpu_proof", "gpu_equivalence")


def test_values_are_read_and_paths_normalised():
    policy = policy_from_toml(
        '[tool.gpu_proof]\nfingerprint_paths = ["cuda/", "tests"]\nrequired_marker = "gpu"\n'
        'allowed_signers = ".gpu-proof/allowed_signers"\ninclude_gpu_uuid = false\n', "p")
    assert policy.fingerprint_paths == ["cuda", "tests"]
    assert policy.markers == ("gpu", "gpu_equivalence")
    assert policy.allowed_signers == ".gpu-proof/allowed_signers" and not policy.include_gpu_uuid


@pytest.mark.parametrize("toml, message", [
    ('[tool.gpu_proof]\nfingerprint_path = ["src"]\n', "unknown policy key 'fingerprint_path'"),
    ('[tool.gpu_proof]\nfingerprint_paths = 3\n', "fingerprint_paths must be a list"),
    ('[tool.gpu_proof]\nfingerprint_paths = [".", "src"]\n', "list it alone"),
    ('[tool.gpu_proof]\nrecord_gpu_uuid = false\ninclude_gpu_uuid = true\n', "disagree"),
    ('[tool.gpu_proof]\nmode = "remote"\n', "mode must be one of"),
    ('[tool.gpu_proof]\nkey_path = 3\n', "key_path must be a non-empty string"),
    ('[tool.gpu_proof]\nallowed_signers = ["alice"]\n', "list of GitHub usernames is .signers."),
    ('[tool.gpu_proof]\ngpu_tests = [""]\n', "gpu_tests must be a list of non-empty strings"),
    ('[tool.gpu_proof]\nnot_a_key_anywhere = 1\n', "unknown policy key"),
    ('[tool.gpu_proof]\nfingerprint_paths = []\n', "non-empty list"),
    ('[tool.gpu_proof]\nfingerprint_paths = ["src", "src/"]\n', "twice"),
    ('[tool.gpu_proof]\nfingerprint_paths = ["../outside"]\n', "inside the repository"),
    ('[tool.gpu_proof]\ninclude_gpu_uuid = "no"\n', "include_gpu_uuid must be true or false"),
    ('[tool.gpu_proof]\nmax_age_days = "30"\n', "max_age_days must be a whole number"),
    ('[tool.gpu_proof]\nmax_age_days = -1\n', "must not be negative"),
    ('[tool.gpu_proof]\nmax_age_days = true\n', "max_age_days must be a whole number"),
    ('[tool.gpu_proof]\nrequire_mode = "cloud"\n', "require_mode must be one of local, ci-gpu"),
    ('[tool.gpu_proof]\nsigner_mode = "restricted"\n', "needs signers or key_fingerprints"),
    ('[tool.gpu_proof]\nsigner_mode = "restricted"\nsigners = ["a"]\nallow_unsigned = true\n',
     "never accepts unsigned"),
    ('[tool.gpu_proof]\nkey_fingerprints = ["MD5:aa"]\n', "SHA256:"),
    ('[tool.gpu_proof]\nallow_skipped = true\nexpected_skips = ["t::a"]\n', "exclude each other"),
    ('[tool.gpu_proof.shards.k]\ntests = ["tests/k"]\n', "shards.k needs paths"),
    ('[tool.gpu_proof.shards.k]\npaths = ["src/k"]\nfiles = []\n', "unknown key 'files' in shards.k"),
    ('[tool.gpu_proof]\nrequired_shards = ["nope"]\n', "undefined shard 'nope'"),
    ('[tool.gpu_proof]\nrequired_shards = []\n', "at least one shard"),
    ('[tool.gpu_proof\n', "not valid TOML"),
    ('[tool.gpu_proof]\npush_check = "some"\n', "push_check must be one of tip, every"),
    ('[tool.gpu_proof]\npush_refs = ["main"]\n', "push_refs must list ref patterns"),
    ('[tool]\ngpu_proof = 3\n', "must be a table"),
])
def test_bad_policies_are_errors_naming_the_problem(toml, message):
    with pytest.raises(PolicyError, match=message):
        policy_from_toml(toml, "pyproject.toml")


def test_policy_can_be_read_from_a_revision_without_checkout(repo: Path):
    write_files(repo, {"pyproject.toml": '[tool.gpu_proof]\nfingerprint_paths = ["src"]\n'})
    commit_all(repo, "policy")
    write_files(repo, {"pyproject.toml": '[tool.gpu_proof]\nfingerprint_paths = ["tests"]\n'})
    r = pygit2.Repository(str(repo))
    assert load_policy(r).fingerprint_paths == ["tests"]
    assert load_policy(r, "HEAD").fingerprint_paths == ["src"]
    assert load_policy(r, "HEAD~1") == Policy(source="HEAD~1: (no pyproject.toml)")
    with pytest.raises(PolicyError, match="no such revision"):
        load_policy(r, "does-not-exist")


def test_layers_flags_over_policy_file_over_pyproject_over_defaults(tmp_path):
    base = policy_from_toml('[tool.gpu_proof]\nmax_age_days = 10\nrequire_gpu = true\n', "pyproject.toml")
    policy_file = tmp_path / "policy.json"
    policy_file.write_text('{"max_age_days": 5, "require_mode": "ci-gpu", '
                           '"modes": {"ci-gpu": {"signers": ["ci@example.org"]}}}')
    layered = base.overridden(read_policy_file(policy_file), str(policy_file))
    assert (layered.max_age_days, layered.require_mode, layered.require_gpu) == (5, "ci-gpu", True)
    flagged = layered.overridden({"max_age_days": 0, "require_mode": None}, "command line")
    assert (flagged.max_age_days, flagged.require_mode) == (0, "ci-gpu")
    assert Policy().max_age_days == 30 and not Policy().allow_skipped


def test_policy_files_in_toml_with_or_without_the_table(tmp_path):
    plain = tmp_path / "p.toml"
    plain.write_text('allow_skipped = true\n')
    nested = tmp_path / "q.toml"
    nested.write_text('[tool.gpu_proof]\nmax_age_days = 3\n')
    assert read_policy_file(plain) == {"allow_skipped": True}
    assert read_policy_file(nested) == {"max_age_days": 3}


@pytest.mark.parametrize("name, text, message", [
    ("bad.json", '{"max_age_dys": 3}', "unknown policy key 'max_age_dys'"),
    ("bad.json", '{"max_age_days": "3"}', "max_age_days must be a whole number"),
    ("bad.json", '[1, 2]', "must hold an object"),
    ("bad.json", '{not json', "not valid JSON"),
    ("bad.toml", 'x = [', "not valid TOML"),
])
def test_bad_policy_files_are_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        read_policy_file(path)
    with pytest.raises(PolicyError, match="cannot read policy file"):
        read_policy_file(tmp_path / "missing.toml")


def test_overrides_are_validated_and_cross_checked():
    with pytest.raises(PolicyError, match="exclude each other"):
        Policy().overridden({"allow_skipped": True, "expected_skips": ["t::a"]}, "command line")
    # across layers the higher one wins instead
    assert Policy(allow_skipped=True).overridden({"expected_skips": ["t::a"]}, "flags").expected_skips == ["t::a"]
    assert Policy(expected_skips=["t::a"]).overridden({"allow_skipped": True}, "flags").expected_skips is None
    with pytest.raises(PolicyError, match="max_age_days must not be negative"):
        Policy().overridden({"max_age_days": -2}, "command line")


def test_shards_and_required_shards():
    policy = policy_from_toml(
        '[tool.gpu_proof.shards.kernels]\npaths = ["src/kernels", "tests/kernels"]\ntests = ["tests/kernels"]\n'
        '[tool.gpu_proof.shards.io]\npaths = ["src/io"]\n', "p")
    assert [s.name for s in policy.shards_to_check()] == ["kernels", "io"]
    assert policy.shards["kernels"].paths == ["src/kernels", "tests/kernels"]
    only = policy.overridden({"required_shards": ["io"]}, "flags")
    assert [s.name for s in only.shards_to_check()] == ["io"]


def test_node_id_files(tmp_path):
    path = tmp_path / "skips.txt"
    path.write_text("# known skips\ntests/t.py::a\n\n  tests/t.py::b[x y]  \n")
    assert read_node_ids(path) == ["tests/t.py::a", "tests/t.py::b[x y]"]


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "pyproject.toml").mkdir(), "not a regular file"),
    (lambda root: (root / "pyproject.toml").symlink_to("README.md"), "not a regular file"),
])
def test_a_pyproject_at_a_revision_that_is_not_a_file_is_a_policy_error(repo, make, message):
    from gitproof.policy import load_policy
    from tests.helpers import commit_all

    make(repo)
    if (repo / "pyproject.toml").is_dir():
        (repo / "pyproject.toml" / "x").write_text("x = 1\n")
    commit_all(repo, "odd pyproject")
    with pytest.raises(PolicyError, match=message):
        load_policy(pygit2.Repository(str(repo)), "HEAD")


def test_a_huge_pyproject_at_a_revision_is_not_read(repo):
    from gitproof.files import MAX_TRUST_FILE
    from gitproof.policy import load_policy
    from tests.helpers import commit_all

    (repo / "pyproject.toml").write_bytes(b"#" * (MAX_TRUST_FILE + 1))
    commit_all(repo, "huge pyproject")
    with pytest.raises(PolicyError, match="over the .*-byte limit; not read"):
        load_policy(pygit2.Repository(str(repo)), "HEAD")
