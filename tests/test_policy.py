from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from gitproof.policy import Policy, PolicyError, load_policy, policy_from_toml
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
    assert policy.markers == ("gpu",)
    assert policy.allowed_signers == ".gpu-proof/allowed_signers" and not policy.include_gpu_uuid


@pytest.mark.parametrize("toml, message", [
    ('[tool.gpu_proof]\nfingerprint_path = ["src"]\n', "unknown key 'fingerprint_path'"),
    ('[tool.gpu_proof]\nfingerprint_paths = "src"\n', "fingerprint_paths must be a list"),
    ('[tool.gpu_proof]\nfingerprint_paths = []\n', "non-empty list"),
    ('[tool.gpu_proof]\nfingerprint_paths = ["src", "src/"]\n', "twice"),
    ('[tool.gpu_proof]\nfingerprint_paths = ["../outside"]\n', "inside the repository"),
    ('[tool.gpu_proof]\ninclude_gpu_uuid = "no"\n', "include_gpu_uuid must be a bool"),
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
