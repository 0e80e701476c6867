"""GitHub-published keys as signer source, against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pygit2
import pytest

from gitproof.policy import Policy
from gitproof.trust.github import GitHubSource, cache_root, fetch_keys, is_valid_username, keys_url, parse_keys
from gitproof.trust.locate import TrustError, github_source, load_trust
from gitproof.verify import UNVALIDATED, VALIDATED, open_verifier
from tests.helpers import Key, commit_all, git, write_files
from tests.keyserver import KeyServer
from tests.receipts import attach_receipt, sign_receipt



pytestmark = pytest.mark.usefixtures("private_cache")  # ports are reused: no shared key cache

@pytest.fixture
def gitrepo(repo: Path) -> pygit2.Repository:
    return pygit2.Repository(str(repo))


def github_policy(server: KeyServer, **extra) -> Policy:
    return Policy(signer_source="github", github_url=server.url, **extra)


def decide(source: GitHubSource, repo: pygit2.Repository, key: Key, principal: str):
    signed = sign_receipt(repo, key, principal=principal)
    return load_decision(source, signed)


def load_decision(source, signed):
    return source.decide(signed.payload, signed.signature, signed.receipt.signer, datetime.now(timezone.utc))


# -- names and parsing -----------------------------------------------------------------

@pytest.mark.parametrize("name,ok", [
    ("alice", True), ("alice-smith", True), ("Alice-Smith", False), ("a1", True), ("x" * 39, True),
    ("x" * 40, False), ("", False), ("-alice", False), ("alice-", False), ("al--ice", False),
    ("al_ice", False), ("alice@example.com", False), ("al ice", False), ("ålice", False),
    ("../etc", False), ("a.keys", False),
])
def test_username_rule(name, ok):
    assert is_valid_username(name) is ok


def test_parse_keys_skips_junk_and_duplicates(keygen):
    ed, rsa = keygen("ed25519"), keygen("rsa")
    text = (f"{ed.public_line}\n\n# comment\nnot a key\nssh-ed25519 AAAAbroken\n"
            f"{rsa.public_line}\n{ed.public_line} again\n")
    keys = parse_keys(text)
    assert keys == [" ".join(ed.public_line.split()[:2]), " ".join(rsa.public_line.split()[:2])]


def test_keys_url_is_lower_case_and_slash_safe():
    assert keys_url("https://ghe.example.com/", "Alice") == "https://ghe.example.com/alice.keys"


# -- verification through the verifier --------------------------------------------------

def test_receipt_signed_with_published_key_validates(server, gitrepo, repo, keygen):
    alice = keygen("ed25519", "alice")
    server.publish("alice", keygen("rsa", "alice-old"), alice)
    attach_receipt(repo, alice, principal="alice")
    verifier = open_verifier(gitrepo, github_policy(server))
    verdict = verifier.verify(gitrepo.head.peel(pygit2.Commit))
    assert verdict.state == VALIDATED, verdict.reasons
    assert server.requests == ["/alice.keys"]
    assert verdict.receipt.signed.receipt.signer == "alice"


def test_receipt_signed_with_another_key_is_refused(server, gitrepo, repo, keygen):
    alice, mallory = keygen("ed25519", "alice"), keygen("ed25519", "mallory")
    server.publish("alice", alice)
    attach_receipt(repo, mallory, principal="alice")
    verdict = open_verifier(gitrepo, github_policy(server)).verify(gitrepo.head.peel(pygit2.Commit))
    assert verdict.state == UNVALIDATED
    [reason] = [r for r in verdict.reasons if r.code == "signer-not-allowed"]
    assert mallory.fingerprint in reason.message and "published for alice" in reason.message
    assert f"{server.url}/alice.keys" in reason.message


def test_unknown_user_is_refused_with_reason(server, gitrepo, keygen):
    source = GitHubSource(server.url)
    decision = decide(source, gitrepo, keygen("ed25519"), "nobody")
    assert not decision.allowed and decision.code == "signer-not-allowed"
    assert "GitHub user nobody not found" in decision.reason and "404" in decision.reason


def test_user_without_keys_is_refused(server, gitrepo, keygen):
    server.publish("alice", extra="\n")
    decision = decide(GitHubSource(server.url), gitrepo, keygen("ed25519"), "alice")
    assert not decision.allowed and decision.code == "signer-not-allowed"
    assert "publishes no SSH keys" in decision.reason


def test_server_down_is_refused_not_raised(tmp_path, gitrepo, keygen):
    down = KeyServer(tmp_path / "down")
    url = down.url
    down.close()
    source = GitHubSource(url)
    key = keygen("ed25519")
    decision = decide(source, gitrepo, key, "alice")
    assert not decision.allowed and decision.code == "no-trust"
    assert decision.reason.startswith(f"cannot fetch GitHub keys for alice from {url}: ")
    # one failed fetch per user and command, however many receipts name that user
    assert decide(source, gitrepo, key, "alice").reason == decision.reason
    assert source.fetches == 1


@pytest.mark.parametrize("principal", ["alice@example.com", "../../etc/passwd", "-x", "a" * 40, ""])
def test_invalid_username_is_refused_without_a_request(server, gitrepo, keygen, principal):
    decision = decide(GitHubSource(server.url), gitrepo, keygen("ed25519"), principal)
    assert not decision.allowed and decision.code == "signer-not-allowed"
    assert "not a valid GitHub username" in decision.reason
    assert server.requests == []


def test_signer_names_must_be_lowercase_so_exclusions_cannot_be_dodged(server, gitrepo, keygen):
    """GitHub ignores case; policy patterns do not. "Mallory" must not pass "!mallory"."""
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    decision = decide(GitHubSource(server.url), gitrepo, alice, "Alice")
    assert not decision.allowed and "lowercase" in decision.reason
    assert server.requests == []


def test_revoked_key_is_refused(server, gitrepo, repo, keygen):
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    revoked = repo / "revoked_keys"
    revoked.write_text(alice.public_line + "\n")
    git(repo, "config", "gpg.ssh.revocationFile", str(revoked))
    attach_receipt(repo, alice, principal="alice")
    verdict = open_verifier(gitrepo, github_policy(server)).verify(gitrepo.head.peel(pygit2.Commit))
    assert verdict.state == UNVALIDATED and verdict.reasons[0].code == "key-revoked"


# -- caching ----------------------------------------------------------------------------

def test_log_over_many_commits_fetches_each_user_once(server, gitrepo, repo, keygen):
    alice, bob = keygen("ed25519", "alice"), keygen("ed25519", "bob")
    server.publish("alice", alice)
    server.publish("bob", bob)
    for n in range(6):
        write_files(repo, {"src/kernels.py": f"X = {n}\n"})
        commit_all(repo, f"change {n}")
        attach_receipt(repo, alice if n % 2 else bob, principal="alice" if n % 2 else "bob")
    verifier = open_verifier(gitrepo, github_policy(server, github_cache_minutes=0))
    states = [verifier.verify(c).state for c in gitrepo.walk(gitrepo.head.target)]
    assert states[:6] == [VALIDATED] * 6
    assert sorted(server.requests) == ["/alice.keys", "/bob.keys"]


def test_disk_cache_within_lifetime_then_refetch_after_expiry(server, gitrepo, keygen, private_cache):
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    signed = sign_receipt(gitrepo, alice, principal="alice")
    assert load_decision(GitHubSource(server.url, cache_minutes=60), signed).allowed
    assert len(server.requests) == 1
    files = list((private_cache / "gitproof" / "github-keys").glob("*/alice.keys"))
    assert len(files) == 1 and files[0].parent.parent == cache_root()
    assert files[0].read_text().splitlines()[1:] == [" ".join(alice.public_line.split()[:2])]
    # a new command (a new source: no memory) within the lifetime: no request at all
    assert load_decision(GitHubSource(server.url, cache_minutes=60), signed).allowed
    assert len(server.requests) == 1
    # expired: pretend the file was written 61 minutes ago
    old = time.time() - 61 * 60
    os.utime(files[0], (old, old))
    assert load_decision(GitHubSource(server.url, cache_minutes=60), signed).allowed
    assert len(server.requests) == 2
    assert files[0].stat().st_mtime > old + 60  # rewritten
    assert not [p for p in files[0].parent.iterdir() if p.name.endswith(".tmp")]


def test_stale_cache_is_not_used_when_the_server_is_down(tmp_path, gitrepo, keygen):
    srv = KeyServer(tmp_path / "served")
    alice = keygen("ed25519", "alice")
    srv.publish("alice", alice)
    url = srv.url
    signed = sign_receipt(gitrepo, alice, principal="alice")
    try:
        source = GitHubSource(url)
        assert load_decision(source, signed).allowed
    finally:
        srv.close()
    # still fresh: the cache alone answers, with the server gone
    assert load_decision(GitHubSource(url), signed).allowed
    cached = source.cache.path("alice")
    old = time.time() - 2 * 3600
    os.utime(cached, (old, old))
    decision = load_decision(GitHubSource(url), signed)
    assert not decision.allowed and decision.code == "no-trust"
    assert "cannot fetch GitHub keys for alice" in decision.reason
    assert "older than github_cache_minutes = 60 and is not used" in decision.reason


def test_fresh_cache_missing_a_new_key_is_refetched_once(server, gitrepo, keygen):
    old_key, new_key = keygen("ed25519", "old"), keygen("ed25519", "new")
    server.publish("alice", old_key)
    assert load_decision(GitHubSource(server.url), sign_receipt(gitrepo, old_key, principal="alice")).allowed
    server.publish("alice", old_key, new_key)  # alice adds a key on GitHub
    source = GitHubSource(server.url)
    assert load_decision(source, sign_receipt(gitrepo, new_key, principal="alice")).allowed
    assert len(server.requests) == 2
    # an unknown key does not cause a request per receipt
    stranger = keygen("ed25519", "stranger")
    for _ in range(3):
        assert not load_decision(source, sign_receipt(gitrepo, stranger, principal="alice")).allowed
    assert len(server.requests) == 2


def test_removed_key_stops_validating_after_the_lifetime(server, gitrepo, keygen):
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    signed = sign_receipt(gitrepo, alice, principal="alice")
    source = GitHubSource(server.url)
    assert load_decision(source, signed).allowed
    server.publish("alice", keygen("ed25519", "replacement"))
    old = time.time() - 61 * 60
    os.utime(source.cache.path("alice"), (old, old))
    decision = load_decision(GitHubSource(server.url), signed)
    assert not decision.allowed and "not among the 1 SSH key(s)" in decision.reason


def test_cache_minutes_zero_writes_no_cache(server, gitrepo, keygen, private_cache):
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    signed = sign_receipt(gitrepo, alice, principal="alice")
    for _ in range(2):
        assert load_decision(GitHubSource(server.url, cache_minutes=0), signed).allowed
    assert len(server.requests) == 2
    assert not (private_cache / "gitproof").exists()
    assert "not cached on disk" in GitHubSource(server.url, cache_minutes=0).describe()


def test_servers_do_not_share_cache_files(tmp_path, gitrepo, keygen):
    one, two = KeyServer(tmp_path / "one"), KeyServer(tmp_path / "two")
    try:
        alice1, alice2 = keygen("ed25519", "a1"), keygen("ed25519", "a2")
        one.publish("alice", alice1)
        two.publish("alice", alice2)
        assert load_decision(GitHubSource(one.url), sign_receipt(gitrepo, alice1, principal="alice")).allowed
        assert not load_decision(GitHubSource(two.url),
                                 sign_receipt(gitrepo, alice1, principal="alice")).allowed
        assert GitHubSource(one.url).cache.directory != GitHubSource(two.url).cache.directory
    finally:
        one.close()
        two.close()


# -- restricted mode and narrowing -----------------------------------------------------

def test_restricted_signers_accepts_alice_refuses_bob(server, gitrepo, repo, keygen):
    alice, bob = keygen("ed25519", "alice"), keygen("ed25519", "bob")
    server.publish("alice", alice)
    server.publish("bob", bob)
    policy = github_policy(server, signer_mode="restricted", signers=["alice"])
    attach_receipt(repo, alice, principal="alice")
    head = gitrepo.head.peel(pygit2.Commit)
    assert open_verifier(gitrepo, policy).verify(head).state == VALIDATED

    write_files(repo, {"src/kernels.py": "X = 2\n"})
    commit_all(repo, "bob's change")
    attach_receipt(repo, bob, principal="bob")
    verdict = open_verifier(gitrepo, policy).verify(gitrepo.head.peel(pygit2.Commit))
    assert verdict.state == UNVALIDATED
    assert {r.code for r in verdict.reasons} == {"signer-not-allowed"}
    assert any("not in the policy's signers" in r.message for r in verdict.reasons)
    assert "/bob.keys" not in server.requests  # keys of names outside the policy are not fetched
    # in open mode bob's receipt is fine
    assert open_verifier(gitrepo, github_policy(server)).verify(gitrepo.head.peel(pygit2.Commit)).ok


def test_key_fingerprints_narrow_to_one_of_a_users_keys(server, gitrepo, repo, keygen):
    laptop, ci = keygen("ed25519", "laptop"), keygen("ed25519", "ci")
    server.publish("alice", laptop, ci)
    policy = github_policy(server, signer_mode="restricted", key_fingerprints=[ci.fingerprint])
    attach_receipt(repo, laptop, principal="alice")
    verdict = open_verifier(gitrepo, policy).verify(gitrepo.head.peel(pygit2.Commit))
    assert verdict.state == UNVALIDATED
    assert any("key_fingerprints" in r.message for r in verdict.reasons)
    attach_receipt(repo, ci, principal="alice")
    assert open_verifier(gitrepo, policy).verify(gitrepo.head.peel(pygit2.Commit)).state == VALIDATED


# -- configuration ----------------------------------------------------------------------

def test_policy_from_pyproject_selects_the_github_source(server, gitrepo, repo, keygen):
    alice = keygen("ed25519", "alice")
    server.publish("alice", alice)
    write_files(repo, {"pyproject.toml": f'[tool.gpu_proof]\nsigner_source = "github"\n'
                                         f'github_url = "{server.url}"\ngithub_cache_minutes = 5\n'})
    commit_all(repo, "policy")
    attach_receipt(repo, alice, principal="alice")
    verifier = open_verifier(gitrepo)
    assert isinstance(verifier.trust.source, GitHubSource)
    assert "cached for 5 min" in verifier.trust.source.describe()
    assert verifier.trust.warnings == []
    assert verifier.verify(gitrepo.head.peel(pygit2.Commit)).state == VALIDATED


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc", "github.com", "https://"])
def test_unusable_github_url_is_a_trust_error(gitrepo, url):
    with pytest.raises(TrustError, match="github_url"):
        load_trust(gitrepo, Policy(signer_source="github", github_url=url))


def test_plain_http_to_a_remote_host_warns():
    assert GitHubSource("http://ghe.example.com").warnings
    assert GitHubSource("https://ghe.example.com").warnings == []
    assert github_source(Policy(signer_source="github"), None).base_url == "https://github.com"


def test_fetch_keys_reports_errors_and_refuses_other_schemes(server, tmp_path):
    with pytest.raises(Exception, match="only http"):
        fetch_keys(f"file://{tmp_path}/x.keys")
    with pytest.raises(Exception, match="404") as info:
        fetch_keys(server.url + "/ghost.keys")
    assert info.value.not_found
