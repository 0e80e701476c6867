"""Shared fixtures: real git repositories and real ssh-keygen keys in temp dirs."""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pygit2
import pytest

from gitproof.gpu import cupti, driver
from tests import helpers, libcuda_fake
from tests.keyserver import KeyServer


# End to end: real pytest sessions, the CLI in subprocesses, real remotes and ssh-keygen runs
# by the hundred. `pytest -m "not slow"` leaves them out for a fast tier; the README's
# command runs everything.
SLOW_MODULES = frozenset({
    "test_run_options", "test_plugin", "test_ci_docs", "test_cli", "test_signers_cli", "test_first_run",
    "test_checks", "test_gpu_evidence", "test_hook", "test_hostile_input", "test_merge_gate", "test_shards",
    "test_doctor", "test_install", "test_migrate", "test_interpreter", "test_compat", "test_sync",
    "test_sessions", "test_certificates", "test_reliability", "test_demo", "test_sshsig_differential",
    "test_sshsig_mutations", "test_properties", "test_real_gpu", "test_log",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rpartition(".")[2] if module is not None else ""
        if name in SLOW_MODULES or "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(slow)


GPU_VARIABLES = ("GITPROOF_NVML", "GITPROOF_NVIDIA_SMI", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                 "GITPROOF_LIBCUDA")


@pytest.fixture(autouse=True, scope="session")
def isolated_git_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the developer's own ~/.gitconfig (signing keys, hooks) out of every test."""
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test Runner\n\temail = runner@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    old = {k: os.environ.get(k) for k in ("HOME", "GIT_CONFIG_NOSYSTEM", "XDG_CONFIG_HOME", "SSH_AUTH_SOCK",
                                          "VIRTUAL_ENV", *GPU_VARIABLES)}
    os.environ["HOME"] = str(home)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    os.environ["XDG_CONFIG_HOME"] = str(home / ".config")
    os.environ.pop("SSH_AUTH_SOCK", None)
    os.environ.pop("VIRTUAL_ENV", None)  # `run` would choose an activated virtualenv's interpreter
    # The suite must behave the same on a developer's GPU machine: no real NVML or
    # nvidia-smi answers unless a test installs a fake, and no inherited device mask.
    for name in GPU_VARIABLES:
        os.environ.pop(name, None)
    os.environ["GITPROOF_NVML"] = "off"
    os.environ["GITPROOF_NVIDIA_SMI"] = str(home / "no-nvidia-smi")
    for level in (pygit2.enums.ConfigLevel.GLOBAL, pygit2.enums.ConfigLevel.XDG, pygit2.enums.ConfigLevel.SYSTEM):
        pygit2.settings.search_path[level] = str(home)
    yield home
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def keygen(tmp_path: Path):
    """Make real OpenSSH keys: keygen("ed25519") -> helpers.Key."""
    def make(key_type: str = "ed25519", name: str | None = None) -> helpers.Key:
        return helpers.generate_key(tmp_path / "keys", key_type, name)
    return make


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real repository with src/ and tests/ and one commit."""
    return helpers.make_project_repo(tmp_path / "project")


@pytest.fixture
def cli_project(repo: Path, keygen) -> Path:
    """A repository the CLI can run and verify in: a signing key, allowed_signers, a policy."""
    key = keygen("ed25519")
    helpers.git(repo, "config", "user.signingKey", str(key.private))
    helpers.write_files(repo, {
        ".gpu-proof/allowed_signers": f'runner@example.com namespaces="gpu-proof" {key.public_line}\n',
        "pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n',
        ".gitignore": "__pycache__/\n.pytest_cache/\n",
    })
    helpers.commit_all(repo, "trust")
    return repo


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own key cache: ports are reused, so a shared one could leak keys."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def server(tmp_path: Path):
    srv = KeyServer(tmp_path / "served")
    yield srv
    srv.close()


# -- the fake CUDA driver (tests/libcuda_fake.py) --------------------------------------

@pytest.fixture(scope="session")
def built_libcuda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return libcuda_fake.compile_fake_libcuda(tmp_path_factory.mktemp("libcuda"))


@pytest.fixture
def libcuda_path(built_libcuda: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A not-yet-loaded fake driver that ``CudaDriver.attach()`` will look for."""
    path = libcuda_fake.fresh_copy(built_libcuda, tmp_path)
    monkeypatch.setenv(driver.ENV_LIBRARY, str(path))
    return path


@pytest.fixture(scope="session")
def built_libcupti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return libcuda_fake.compile_fake(libcuda_fake.FAKES / "libcupti_fake.c", tmp_path_factory.mktemp("cupti"))


@pytest.fixture
def libcupti(built_libcupti: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ctypes.CDLL:
    """A fresh fake CUPTI that ``cupti.tracer()`` will load; the test drives it (fake_cupti_*)."""
    path = libcuda_fake.fresh_copy(built_libcupti, tmp_path, "libcupti.so.13")
    monkeypatch.setenv(cupti.ENV_LIBRARY, str(path))
    cupti.reset()
    yield libcuda_fake.cupti_controls(ctypes.CDLL(str(path)))
    cupti.reset()


@pytest.fixture
def libcuda(libcuda_path: Path) -> ctypes.CDLL:
    """The fake driver, loaded as a CUDA program would load it (not yet initialised)."""
    return ctypes.CDLL(str(libcuda_path), mode=os.RTLD_GLOBAL)
