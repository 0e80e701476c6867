"""pytest-gpu-proof users: its [tool.gpu_proof] keys, its pytest options, `gpu_tests`, the root path.

Real pytest sessions in real repositories (run as a user would, in a
subprocess), real ssh-keygen keys. The one fake is nvidia-smi, where a test
needs a GPU to be visible.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitproof.compat import PEER_KEYS, REPLACED, REPLACED_OPTIONS, translate
from gitproof.notes import NotesStore
from gitproof.policy import PolicyError, policy_from_toml
from tests.helpers import commit_all, generate_key, git, write_files, init_repo

BIN = str(Path(sys.executable).parent)
H100 = ("0, NVIDIA H100 80GB HBM3, GPU-11111111-2222-3333-4444-555555555555, 550.54.15, 81559, "
        "9.0, 00000000:18:00.0, Disabled")

# pytest-gpu-proof's README configuration, as its users have it.
PEER_TABLE = """\
[tool.gpu_proof]
mode = "local"
output = "gpu-proof.json"
fingerprint_paths = ["."]
fingerprint_extra_paths = ["generated/kernel_table.cuh"]
fingerprint_excluded_paths = ["gpu-proof.json"]
required_marker = "gpu_proof"
max_age_days = 30
require_gpu = true
record_gpu_uuid = false   # keep device name/driver/memory, omit the card's UUID
github_username = "alice"
"""

PEER_TESTS = """\
import pytest


def python_sum(values):
    return float(sum(values))


def gpu_sum(values):
    return float(sum(reversed(values)))


@pytest.mark.gpu_proof
def test_sum(gpu_proof_check):
    gpu_proof_check(name="sum", reference=python_sum, candidate=gpu_sum,
                    args=([0.1, 0.2, 0.3],), metadata={"case": "small"})


@pytest.mark.gpu_equivalence
def test_alias():
    assert True


def test_cpu_only():
    assert True
"""


def environ(tmp_path: Path, gpu: bool) -> dict[str, str]:
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\ncat <<'EOF'\n{H100}\nEOF\n")
    smi.chmod(0o755)
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "GITPROOF_NVML": "off",
            "GITPROOF_NVIDIA_SMI": str(smi) if gpu else str(tmp_path / "no-nvidia-smi")}


def pytest_run(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=180)


def gp(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "gpu-proof", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=180)


def receipts(root: Path):
    repo = pygit2.Repository(str(root))
    return [e.signed for e in NotesStore(repo).entries(str(repo.head.target))]


@pytest.fixture
def peer_project(tmp_path: Path) -> Path:
    """A repository set up as pytest-gpu-proof's README says, its key named by key_path."""
    root = tmp_path / "project"
    init_repo(root, email="alice@example.com", name="Alice")
    key = generate_key(tmp_path / "keys")
    write_files(root, {
        "pyproject.toml": PEER_TABLE + f'key_path = "{key.private}"\n',
        "tests/test_gpu.py": PEER_TESTS,
        "src/ops.py": "X = 1\n",
        ".gitignore": "__pycache__/\n",
    })
    (tmp_path / "alice.keys").write_text(key.public_line + "\n")
    commit_all(root, "pytest-gpu-proof project")
    return root


# -- the policy reads its keys ------------------------------------------------------------

def test_every_peer_key_is_recognised():
    table = {key: "x" for key in REPLACED} | {"record_gpu_uuid": False, "key_path": "~/k",
                                             "github_username": "alice", "mode": "ci-gpu"}
    assert set(table) == PEER_KEYS
    translation = translate(table, "pyproject.toml")
    assert translation.table == {"include_gpu_uuid": False, "fingerprint_paths": ["."]}
    assert (translation.personal.key, translation.personal.principal, translation.personal.mode) == \
        ("~/k", "alice", "ci-gpu")
    assert sorted(n.split(" ", 2)[1] for n in translation.notes) == sorted(REPLACED)


def test_peer_readme_table_loads_with_one_warning_per_key_we_do_not_have():
    policy = policy_from_toml(PEER_TABLE, "pyproject.toml")
    assert policy.fingerprint_paths == ["."] and policy.include_gpu_uuid is False
    assert policy.require_gpu and policy.max_age_days == 30 and policy.personal.principal == "alice"
    warned = [n.split(" ", 2)[1] for n in policy.notes]
    assert warned == ["output", "fingerprint_extra_paths", "fingerprint_excluded_paths"]
    assert all("is ignored:" in n for n in policy.notes)


@pytest.mark.parametrize("value, paths", [('"src,tests"', ["src", "tests"]), ('"."', ["."]),
                                          ('" src , tests/gpu "', ["src", "tests/gpu"])])
def test_comma_separated_fingerprint_paths(value, paths):
    assert policy_from_toml(f"[tool.gpu_proof]\nfingerprint_paths = {value}\n", "p").fingerprint_paths == paths


def test_keys_neither_tool_knows_stay_errors():
    with pytest.raises(PolicyError, match="unknown policy key 'outptu'"):
        policy_from_toml('[tool.gpu_proof]\noutptu = "x"\n', "p")


def test_gpu_tests_selects_paths_and_globs():
    policy = policy_from_toml('[tool.gpu_proof]\ngpu_tests = ["tests/gpu", "tests/*_cuda.py"]\n', "p")
    assert policy.is_gpu_test("tests/gpu/test_a.py::test_x")
    assert policy.is_gpu_test("tests/ops/test_cuda.py::test_y[1]") is False
    assert policy.is_gpu_test("tests/test_mm_cuda.py::test_y[1]")
    assert not policy.is_gpu_test("tests/gpu_other/test_a.py::test_x")
    assert not policy.is_gpu_test("tests/test_cpu.py::test_z")


# -- its configuration, run unchanged --------------------------------------------------------

def test_peer_configuration_records_with_its_key_and_username(peer_project, tmp_path):
    result = pytest_run(peer_project, environ(tmp_path, gpu=True), "--gpu-proof-enable")
    assert result.returncode == 0, result.stdout + result.stderr
    [signed] = receipts(peer_project)
    receipt = signed.receipt
    assert receipt.signer == "alice" and receipt.mode == "local"
    assert sorted(t.nodeid for t in receipt.tests) == ["tests/test_gpu.py::test_alias", "tests/test_gpu.py::test_sum"]
    assert list(receipt.trees) == ["."]
    assert receipt.trees["."] == git(peer_project, "rev-parse", "HEAD^{tree}")
    assert "uuid" not in receipt.gpus[0]
    for key in ("output", "fingerprint_extra_paths", "fingerprint_excluded_paths"):
        assert f"warning: pyproject.toml: {key} (pytest-gpu-proof) is ignored" in result.stdout.replace(
            str(peer_project / "pyproject.toml"), "pyproject.toml")


def test_peer_configuration_validates_after_migrate(peer_project, tmp_path):
    env = environ(tmp_path, gpu=True)
    migrated = gp(peer_project, env, "migrate", "--from", str(tmp_path / "alice.keys"))
    assert migrated.returncode == 0, migrated.stderr
    commit_all(peer_project, "migrate to gitproof")
    assert pytest_run(peer_project, env, "--gpu-proof-enable").returncode == 0
    verdict = gp(peer_project, env, "verify")
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    # a change anywhere in the repository is a change to the whole-repository fingerprint
    write_files(peer_project, {"README.md": "changed\n"})
    commit_all(peer_project, "docs")
    assert gp(peer_project, env, "verify").returncode == 1


def test_require_gpu_in_the_policy_rejects_a_receipt_without_a_gpu(peer_project, tmp_path):
    env = environ(tmp_path, gpu=False)
    assert gp(peer_project, env, "migrate", "--from", str(tmp_path / "alice.keys")).returncode == 0
    commit_all(peer_project, "migrate")
    assert pytest_run(peer_project, env, "--gpu-proof-enable").returncode == 0
    verdict = gp(peer_project, env, "verify", "--json")
    assert verdict.returncode == 1 and "no-gpu" in verdict.stdout


# -- its pytest options -------------------------------------------------------------------

@pytest.fixture
def plain_project(tmp_path: Path) -> Path:
    root = tmp_path / "plain"
    init_repo(root, key_dir=tmp_path / "plain-keys")
    write_files(root, {
        "src/ops.py": "X = 1\n",
        "tests/test_k.py": ("import pytest\n\n@pytest.mark.gpu_kernel\ndef test_kernel(): pass\n\n"
                            "@pytest.mark.gpu_proof\ndef test_marked(): pass\n"),
        "tests/gpu/test_dir.py": "def test_in_gpu_dir(): pass\n",
        "tests/test_fixture.py": ("def test_uses_check(gpu_proof_check):\n"
                                  "    gpu_proof_check('same', lambda: 1, lambda: 1)\n\n"
                                  "def test_plain(): pass\n"),
        "pyproject.toml": '[tool.pytest.ini_options]\nmarkers = ["gpu_kernel: a kernel test"]\n',
        ".gitignore": "__pycache__/\n",
    })
    commit_all(root, "initial")
    return root


def test_peer_options_are_aliases_of_ours(plain_project, tmp_path):
    key = generate_key(tmp_path / "other-keys", name="other")
    result = pytest_run(plain_project, environ(tmp_path, gpu=True), "--gpu-proof-enable",
                        "--gpu-proof-mode", "ci-gpu", f"--gpu-proof-key={key.private}",
                        "--gpu-proof-github-user", "bob", "--gpu-proof-required-marker", "gpu_kernel",
                        "--gpu-proof-fingerprint-paths", "src,tests", "--gpu-proof-no-gpu-uuid",
                        "--gpu-proof-require-gpu", "--gpu-proof-fail-on-skip")
    assert result.returncode == 0, result.stdout + result.stderr
    [signed] = receipts(plain_project)
    receipt = signed.receipt
    assert (receipt.signer, receipt.mode, receipt.key_fingerprint) == ("bob", "ci-gpu", key.fingerprint)
    assert {t.nodeid for t in receipt.tests} == {"tests/test_k.py::test_kernel",
                                                 "tests/test_fixture.py::test_uses_check"}
    assert sorted(receipt.trees) == ["src", "tests"] and "uuid" not in receipt.gpus[0]


def test_replaced_peer_options_are_accepted_with_a_warning_saying_what_to_do(plain_project, tmp_path):
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-out=receipt.json", "--gpu-proof-best-effort",
                        "--gpu-proof-max-age-days=7", "--gpu-proof-fingerprint-extra-paths=gen",
                        "--gpu-proof-fingerprint-excluded-paths=gpu-proof.json",
                        "--gpu-proof-shard-fingerprint-extra-paths=gen")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(receipts(plain_project)) == 1 and not (plain_project / "receipt.json").exists()
    for option, (_, instead) in REPLACED_OPTIONS.items():
        if option != "--gpu-proof-shard-fingerprint-paths":
            assert f"warning: {option} (pytest-gpu-proof) is ignored: {instead[:30]}" in result.stdout


def test_signing_backend_none_is_an_unsigned_dry_run(plain_project, tmp_path):
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-signing-backend", "none")
    assert result.returncode == 0, result.stdout + result.stderr
    [signed] = receipts(plain_project)
    assert signed.unsigned and "UNSIGNED" in result.stdout


def test_require_gpu_option_refuses_before_any_test_without_a_gpu(plain_project, tmp_path):
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-require-gpu")
    assert result.returncode == 4
    assert "no GPU is visible" in result.stderr and receipts(plain_project) == []


def test_bad_fingerprint_paths_option_is_refused(plain_project, tmp_path):
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-fingerprint-paths", "../elsewhere")
    assert result.returncode == 4 and "inside the repository" in result.stderr
    assert receipts(plain_project) == []


def test_unknown_shard_says_how_to_define_it(plain_project, tmp_path):
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-shard=a", "--gpu-proof-shard-fingerprint-paths=src")
    assert result.returncode == 4
    assert "[tool.gpu_proof.shards.a]" in result.stderr and "migrate" in result.stderr


def test_fixture_users_and_gpu_tests_are_selected_without_a_marker(plain_project, tmp_path):
    write_files(plain_project, {"pyproject.toml": (
        '[tool.pytest.ini_options]\nmarkers = ["gpu_kernel: a kernel test"]\n\n'
        '[tool.gpu_proof]\ngpu_tests = ["tests/gpu"]\n')})
    commit_all(plain_project, "gpu_tests")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    [signed] = receipts(plain_project)
    assert {t.nodeid for t in signed.receipt.tests} == {
        "tests/test_k.py::test_marked", "tests/gpu/test_dir.py::test_in_gpu_dir",
        "tests/test_fixture.py::test_uses_check"}


@pytest.mark.parametrize("pattern, path, matches", [
    ("tests/*_cuda.py", "tests/mm_cuda.py", True),
    ("tests/*_cuda.py", "tests/sub/mm_cuda.py", False),  # * stays inside one folder
    ("tests/**/test_*.py", "tests/test_a.py", True),
    ("tests/**/test_*.py", "tests/x/y/test_a.py", True),
    ("tests/gpu[12]/*.py", "tests/gpu2/a.py", True),
    ("tests/gpu[!12]/*.py", "tests/gpu1/a.py", False),
    ("tests/t?.py", "tests/t/.py", False),
    ("tests/a.b", "tests/axb", False),  # dots are literal
    ("tests/(x)+.py", "tests/(x)+.py", True),
])
def test_glob_matches(pattern, path, matches):
    from gitproof.policy import glob_matches

    assert glob_matches(pattern, path) is matches


@given(st.text(alphabet="ab/._-+()^$", min_size=1, max_size=12), st.text(alphabet="ab/._-", max_size=12))
def test_a_pattern_without_wildcards_matches_only_itself(pattern, path):
    from gitproof.policy import glob_matches

    assert glob_matches(pattern, pattern)
    assert glob_matches(pattern, path) is (pattern == path)


def test_pytest_gpu_proof_installed_alongside_is_a_clear_error(plain_project, tmp_path):
    plugins = tmp_path / "peer_plugin"
    plugins.mkdir()
    (plugins / "pytest_gpu_proof_stand_in.py").write_text(
        "def pytest_addoption(parser):\n"
        "    parser.getgroup('gpu-proof').addoption('--gpu-proof-enable', action='store_true')\n")
    env = environ(tmp_path, gpu=False) | {"PYTHONPATH": str(plugins)}
    result = pytest_run(plain_project, env, "-p", "pytest_gpu_proof_stand_in", "--gpu-proof-enable")
    assert result.returncode == 4
    assert "pip uninstall pytest-gpu-proof" in result.stderr and "Traceback" not in result.stderr


# -- traps found on the way in ------------------------------------------------------------------

def test_a_peer_table_without_fingerprint_paths_gets_the_peers_default():
    policy = policy_from_toml('[tool.gpu_proof]\noutput = "gpu-proof.json"\n', "p")
    assert policy.fingerprint_paths == ["."]
    assert policy_from_toml("[tool.gpu_proof]\nmax_age_days = 3\n", "p").fingerprint_paths == ["src", "tests"]


@pytest.mark.parametrize("toml, message", [
    ('[tool.gpu_proof]\ngpu_tests = ["tests/[z-a]*.py"]\n', "not a valid glob"),
    ('[tool.gpu_proof]\nrecord_gpu_uuid = "no"\n', "record_gpu_uuid must be true or false"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "not valid TOML"),
])
def test_hostile_values_are_policy_errors(toml, message):
    with pytest.raises(PolicyError, match=message):
        policy_from_toml(toml, "p")


def test_gpu_equivalence_is_a_gpu_marker_under_a_custom_marker(plain_project, tmp_path):
    with (plain_project / "tests" / "test_k.py").open("a") as module:
        module.write("\n@pytest.mark.gpu_equivalence\ndef test_equivalent(): pass\n")
    commit_all(plain_project, "an equivalence test")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-required-marker=gpu_kernel", "-p", "no:randomly")
    assert result.returncode == 0, result.stdout + result.stderr
    [signed] = receipts(plain_project)
    assert {t.nodeid for t in signed.receipt.tests} == {
        "tests/test_k.py::test_kernel", "tests/test_k.py::test_equivalent", "tests/test_fixture.py::test_uses_check"}


def test_pytest_gpu_proof_importable_is_refused_whichever_plugin_loads_first(plain_project, tmp_path):
    package = tmp_path / "site" / "pytest_gpu_proof"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    env = environ(tmp_path, gpu=False) | {"PYTHONPATH": str(package.parent)}
    result = pytest_run(plain_project, env, "-q")
    assert result.returncode == 4 and "pip uninstall pytest-gpu-proof" in result.stderr


def test_a_missing_fingerprint_path_is_warned_about(plain_project, tmp_path):
    git(plain_project, "rm", "-q", "-r", "src")
    commit_all(plain_project, "no src")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: fingerprint path 'src' does not exist" in result.stdout


def test_a_run_with_other_fingerprint_paths_is_told_verify_will_refuse(plain_project, tmp_path):
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-fingerprint-paths=.")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "will fail paths-not-covered" in result.stdout


def test_a_rootdir_outside_the_repository_is_refused(plain_project, tmp_path):
    key = generate_key(tmp_path / "spaced")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable",
                        "--gpu-proof-key", str(key.private))  # pytest takes the key for a test path
    assert result.returncode == 4 and "outside the repository" in result.stderr
    assert "--gpu-proof-key=PATH" in result.stderr and receipts(plain_project) == []


def test_files_the_tests_write_are_named_when_they_change_the_fingerprint(plain_project, tmp_path):
    write_files(plain_project, {"tests/test_writes.py": (
        "import pathlib, pytest\n\n@pytest.mark.gpu_proof\n"
        "def test_writes():\n    pathlib.Path('tests/bench.json').write_text('{}')\n")})
    commit_all(plain_project, "a test that writes")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable")
    assert result.returncode != 0 and "tests/bench.json" in result.stdout
    assert ".gitignore" in result.stdout and receipts(plain_project) == []


def test_a_rerun_that_passes_keeps_only_its_own_checks(plain_project, tmp_path):
    pytest.importorskip("pytest_rerunfailures")
    write_files(plain_project, {"tests/test_flaky.py": (
        "import pathlib\n\n"
        "def test_flaky(gpu_proof_check):\n"
        "    first = not pathlib.Path('.git/flaky-seen').exists()\n"
        "    pathlib.Path('.git/flaky-seen').write_text('x')\n"
        "    gpu_proof_check('value', lambda: 1.0, lambda: 2.0 if first else 1.0)\n")})
    commit_all(plain_project, "a flaky check")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable", "--reruns=1")
    assert result.returncode == 0, result.stdout + result.stderr
    [signed] = receipts(plain_project)
    flaky = [c for c in signed.receipt.checks if c["test"].endswith("test_flaky")]
    assert [c["outcome"] for c in flaky] == ["passed"]
    assert gp(plain_project, environ(tmp_path, gpu=False), "show", "--json").returncode == 0


def test_huge_check_metadata_is_kept_to_a_preview():
    from gitproof.equivalence import MAX_METADATA_BYTES, run_check

    result = run_check("m", lambda: 1, lambda: 1, args=None, metadata={"q": [0.123456789] * 100_000})
    record = result.to_record("t.py::t", 1e-5, 1e-8)
    assert record["metadata"]["truncated"] is True and record["metadata"]["bytes"] > MAX_METADATA_BYTES
    assert len(record["metadata"]["preview"]) <= 1024
    deep: dict = {}
    for _ in range(5000):
        deep = {"d": deep}
    assert run_check("m", lambda: 1, lambda: 1, metadata=deep).to_record("t", 1e-5, 1e-8)["metadata"]["truncated"]


def test_a_receipt_that_would_make_the_note_unreadable_is_refused(plain_project, tmp_path):
    from gitproof.receipt import MAX_NOTE_BYTES

    repo = pygit2.Repository(str(plain_project))
    filler = b"# filler\n" * ((MAX_NOTE_BYTES - 2048) // 9)
    author = pygit2.Signature("t", "t@example.com")
    repo.create_note(filler.decode(), author, author, str(repo.head.target), "refs/notes/gpu-proof")
    before = git(plain_project, "rev-parse", "refs/notes/gpu-proof")
    result = pytest_run(plain_project, environ(tmp_path, gpu=False), "--gpu-proof-enable")
    assert result.returncode != 0 and "over the" in result.stdout and "byte limit" in result.stdout
    assert git(plain_project, "rev-parse", "refs/notes/gpu-proof") == before
