"""``run --attest`` and ``verify --attestations``: DSSE envelopes over receipts' in-toto statements.

Real repositories, real ssh-keygen keys, the recorder called as the plugin calls it, and the
CLI end to end (marked slow). Every way `verify --attestations` refuses has its test.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pygit2
import pytest
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope

from gitproof import attestation_notes, intoto
from gitproof.attestation_notes import ATTESTATIONS_REF, MAX_ENVELOPE_BYTES, envelope_lines, read_note
from gitproof.pending import attach_pending
from gitproof.policy import Policy, load_policy
from gitproof.receipt import TestResult
from gitproof.record import RecordError, RecordOptions, finish, prepare
from gitproof.signing.attest import AttestError, envelope_line
from gitproof.verify import UNCHANGED, UNVALIDATED, Code, CommitVerdict, open_verifier
from gitproof.verify import attestations
from gitproof.verify.attestations import MAX_EXAMINED_ENVELOPES, require_attestations
from tests.attestations import attest, envelope, signer_of
from tests.helpers import Key, commit_all, git, notes_tip, run_tool, write_files
from tests.receipts import POLICY, Project

PASSED = [TestResult("tests/test_kernels.py::test_add", "passed", 0.01)]
PRINCIPAL = "runner@example.com"


def project_with(root: Path, key: Key) -> Project:
    git(root, "config", "user.signingKey", str(key.private))
    return Project(root, key, principal=PRINCIPAL)


@pytest.fixture
def project(repo: Path, keygen) -> Project:
    return project_with(repo, keygen("ed25519"))


def recorded(root: Path, **options):
    return finish(prepare(root, RecordOptions(attest=True, **options)), PASSED, 0, ["--gpu-proof"])


def attested(repo: pygit2.Repository, rev: str = "HEAD", policy: Policy | None = None) -> CommitVerdict:
    """``verify --attestations`` on one revision, as the command judges it (the repository's policy
    unless one is given)."""
    return require_attestations(open_verifier(repo, policy), repo.revparse_single(rev).peel(pygit2.Commit))


def checked(project: Project, rev: str = "HEAD") -> CommitVerdict:
    verdict = project.verify(rev)
    assert verdict.ok, verdict.reasons
    return attested(project.repo, rev, POLICY)


def refused(project: Project, code: Code, *fragments: str) -> str:
    verdict = checked(project)
    assert verdict.state == UNVALIDATED and [r.code for r in verdict.reasons] == [code]
    message = verdict.reasons[0].message
    for fragment in fragments:
        assert fragment in message, message
    return message


def head(project: Project, rev: str = "HEAD") -> str:
    return str(project.repo.revparse_single(rev).peel(pygit2.Commit).id)


def set_note(root: Path, data: bytes, rev: str = "HEAD") -> None:
    """Replace the attestation note by hand, as anyone with push access could."""
    path = root / ".git" / "attestation-note"
    path.write_bytes(data)
    git(root, "notes", f"--ref={ATTESTATIONS_REF}", "add", "-f", "-F", str(path), rev)


def note_lines(project: Project, rev: str = "HEAD") -> list[bytes]:
    return envelope_lines(read_note(project.repo, str(project.repo.revparse_single(rev).peel(pygit2.Commit).id))
                          or b"")


# -- recording ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa", "ecdsa-384", "rsa"])
def test_an_attesting_run_writes_an_envelope_that_verifies(repo, keygen, key_type):
    project = project_with(repo, keygen(key_type))
    outcome = recorded(repo)
    assert outcome.stored_as == "note" and outcome.attestation == ATTESTATIONS_REF
    assert checked(project).ok
    [line] = note_lines(project)
    data = json.loads(line)
    assert data["payloadType"] == "application/vnd.in-toto+json"
    assert [s["keyid"] for s in data["signatures"]] == [project.key.fingerprint]
    statement = json_format.Parse(base64.b64decode(data["payload"]), statement_pb2.Statement())
    Statement.copy_from_pb(statement).validate()
    assert statement.subject[0].digest["gitCommit"] == head(project)


def test_a_key_from_the_environment_attests(project, keygen):
    ci_key = keygen("ecdsa", "ci")
    project.trust_key(ci_key, PRINCIPAL)
    environ = {"GPU_PROOF_KEY": ci_key.private.read_text(), "GITLAB_CI": "true",
               "CI_JOB_URL": "https://gitlab.example.com/p/-/jobs/7"}
    rec = prepare(project.root, RecordOptions(key_env="GPU_PROOF_KEY", attest=True), environ)
    finish(rec, PASSED, 0, ["--gpu-proof"])
    assert checked(project).ok
    payload = json.loads(base64.b64decode(json.loads(note_lines(project)[0])["payload"]))
    assert payload["predicate"]["url"] == "https://gitlab.example.com/p/-/jobs/7"


def test_the_same_receipt_is_attested_once(project):
    line = attest(project.root, project.key, project.attach())
    assert not attestation_notes.append_envelope(project.repo, head(project), line)
    assert note_lines(project) == [line]


def test_the_policy_key_turns_attestation_on_and_the_flag_off(project):
    write_files(project.root, {"pyproject.toml": '[tool.gpu_proof]\nattest = true\n'})
    commit_all(project.root, "attest")
    assert prepare(project.root, RecordOptions()).attest is not None
    assert prepare(project.root, RecordOptions(attest=False)).attest is None
    assert prepare(project.root, RecordOptions(unsigned=True)).attest is None  # a dry run signs nothing


def test_a_pending_receipt_s_envelope_follows_it_to_its_commit(project):
    write_files(project.root, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    outcome = recorded(project.root)
    assert outcome.stored_as == "pending" and outcome.attestation is not None
    assert git(project.root, "for-each-ref", "--format=%(refname)", "refs/gpu-proof/pending-attestations/")
    commit_all(project.root, "swap")
    repo = pygit2.Repository(str(project.root))
    [attached] = attach_pending(repo, load_policy(repo), [repo.head.peel(pygit2.Commit)])
    assert attached.commit == head(project)
    assert git(project.root, "for-each-ref", "refs/gpu-proof/") == ""
    assert checked(project).ok
    statement = json.loads(base64.b64decode(json.loads(note_lines(project)[0])["payload"]))
    assert all("gitTree" in s["digest"] for s in statement["subject"])  # made before the commit existed


# -- refused before any test runs --------------------------------------------------------------

def test_an_ssh_agent_key_cannot_attest_and_says_what_to_do(project):
    literal = f"key::{project.key.public_line}"
    for spec in (literal, str(project.key.public)):
        with pytest.raises(AttestError, match="signs through ssh-agent") as refusal:
            prepare(project.root, RecordOptions(key=spec, attest=True))
        assert "--key-env" in str(refusal.value) and "--no-attest" in str(refusal.value)
    assert prepare(project.root, RecordOptions(key=literal)).attest is None  # without --attest: fine
    assert notes_tip(project.root) == ""


def test_a_passphrase_key_held_by_the_agent_cannot_attest(project, tmp_path):
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-N", "secret words", "-t", "ed25519", "-f", str(locked)], check=True)
    with pytest.raises(AttestError, match="passphrase") as refusal:
        prepare(project.root, RecordOptions(key=str(locked), attest=True))
    assert f"ssh-add -d {locked}" in str(refusal.value)


def test_unsigned_and_attest_exclude_each_other(project):
    with pytest.raises(RecordError, match="--unsigned signs nothing"):
        prepare(project.root, RecordOptions(unsigned=True, attest=True))


def test_an_envelope_too_large_to_store_refuses_the_receipt_too(project, monkeypatch):
    monkeypatch.setattr(attestation_notes, "MAX_ENVELOPE_BYTES", 100)
    with pytest.raises(RecordError, match="over the 100-byte limit"):
        recorded(project.root)
    assert notes_tip(project.root) == ""


# -- verify --attestations: every refusal --------------------------------------------------------

def test_a_receipt_without_an_envelope_is_refused(project):
    project.attach()
    refused(project, Code.ATTESTATION_MISSING, "no in-toto attestation", "run --attest")


def test_an_envelope_changed_after_signing_is_refused(project):
    line = attest(project.root, project.key, project.attach())
    data = json.loads(line)
    statement = json.loads(base64.b64decode(data["payload"]))
    statement["predicate"]["result"] = "PASSED" if statement["predicate"]["result"] != "PASSED" else "WARNED"
    data["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    set_note(project.root, json.dumps(data).encode() + b"\n")
    refused(project, Code.ATTESTATION_INVALID, "does not verify", "changed after it was signed")


@pytest.mark.parametrize("claims_receipt_key", [False, True])
def test_an_envelope_signed_by_another_key_is_refused(project, keygen, claims_receipt_key):
    signed = project.attach()
    other = keygen("ed25519", "other")
    statement = intoto.statement(signed, intoto.stored_bytes(signed), [head(project)])
    data = json.loads(envelope_line(statement, signer_of(other)))
    if claims_receipt_key:  # the key id is not signed: naming the receipt's key changes nothing
        data["signatures"][0]["keyid"] = project.key.fingerprint
    set_note(project.root, json.dumps(data).encode())
    refused(project, Code.ATTESTATION_INVALID,
            "does not verify" if claims_receipt_key else f"not signed by the receipt's key {project.key.fingerprint}")


def test_an_envelope_for_another_receipt_is_refused(project):
    other = project.signed()
    set_note(project.root, envelope(other, project.key, [head(project)]))
    project.attach()
    refused(project, Code.ATTESTATION_MISSING, "attests another receipt",
            intoto.receipt_digest(intoto.stored_bytes(other))[:16])


def signed_envelope(project: Project, payload: bytes) -> bytes:
    envelope = Envelope(payload, intoto.PAYLOAD_TYPE, {})
    envelope.sign(signer_of(project.key))
    return json.dumps(envelope.to_dict()).encode()


def statement_with(project: Project, signed, change) -> bytes:
    statement = intoto.statement(signed, intoto.stored_bytes(signed), [head(project)])
    change(statement)
    return signed_envelope(project, json.dumps(statement).encode())


NOT_ENVELOPES = "lines that do not start with '{' are not envelopes"
GARBAGE = [
    (b"this is not an envelope", NOT_ENVELOPES),
    (b"\xff\xfe\x00 binary", NOT_ENVELOPES),
    (b"[" * 100_000, NOT_ENVELOPES),
    (b"{" * 100_000, "envelope 1: not JSON"),
    (b"{not json", "envelope 1: not JSON"),
    (b'{"payload": 1}', "not a DSSE envelope"),
    (b'{"payload": "!!!!", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
     "not a DSSE envelope"),
    (b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", '
     b'"signatures": [{"keyid": "k", "sig": "not base64!"}]}', "not a DSSE envelope"),
    (b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", '
     b'"signatures": [{"keyid": "k", "sig": "AA=="}, {"keyid": "k", "sig": "AA=="}]}', "not a DSSE envelope"),
    (b'{"payload": "e30=", "payloadType": "text/plain", "signatures": []}', "its payloadType is 'text/plain'"),
]


@pytest.mark.parametrize("line, problem", GARBAGE)
def test_garbage_in_the_note_is_refused_with_a_reason(project, line, problem):
    project.attach()
    set_note(project.root, line)
    refused(project, Code.ATTESTATION_INVALID, problem if problem.startswith(("envelope", "lines")) else
            "envelope 1: " + problem)


@pytest.mark.parametrize("change, problem", [
    (lambda s: s.update(predicateType="https://slsa.dev/provenance/v1"), "predicateType is 'https://slsa.dev"),
    (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "not an in-toto Statement v1"),
    (lambda s: s["predicate"].update(configuration=[]), "names no gpu-proof-receipt"),
    (lambda s: s["predicate"]["configuration"][0].update(content="AAAA"), "content is not the receipt"),
])
def test_a_signed_statement_that_does_not_attest_the_receipt_is_refused(project, change, problem):
    signed = project.attach()
    set_note(project.root, statement_with(project, signed, change))
    refused(project, Code.ATTESTATION_INVALID, problem)


def test_a_signed_payload_that_is_not_json_is_refused(project):
    project.attach()
    set_note(project.root, signed_envelope(project, b"\x00not json"))
    refused(project, Code.ATTESTATION_INVALID, "payload is not JSON")


def test_garbage_beside_a_valid_envelope_does_not_hide_it(project):
    line = envelope(project.attach(), project.key, [head(project)])
    set_note(project.root, b"junk\n\n" + GARBAGE[6][0] + b"\n" + line + b"\n")
    assert checked(project).ok


def test_an_oversized_envelope_is_not_read(project):
    project.attach()
    set_note(project.root, b'{"payload": "' + b"A" * MAX_ENVELOPE_BYTES + b'"}')
    refused(project, Code.ATTESTATION_INVALID, "over the", "limit; not read")


def test_an_oversized_note_is_not_read(project, monkeypatch):
    attest(project.root, project.key, project.attach())
    monkeypatch.setattr(attestation_notes, "MAX_ATTESTATION_NOTE_BYTES", 64)
    refused(project, Code.ATTESTATION_INVALID, "over the 64-byte limit; not read")


def test_many_bad_envelopes_are_summarised(project):
    project.attach()
    set_note(project.root, b"\n".join(b"{junk %d" % i for i in range(5)))
    refused(project, Code.ATTESTATION_INVALID, "envelope 3: not JSON", "(+2 more)")


# -- end to end --------------------------------------------------------------------------------

def verify_json(root: Path, *args: str) -> tuple[int, dict]:
    result = run_tool(root, "verify", "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.slow
def test_run_attest_then_verify_attestations_end_to_end(cli_project):
    result = run_tool(cli_project, "run", "--attest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in-toto attestation -> refs/notes/gpu-proof-attestations" in result.stdout
    assert verify_json(cli_project, "--attestations")[0] == 0
    note = cli_project / ".git" / "note"
    note.write_text(git(cli_project, "notes", f"--ref={ATTESTATIONS_REF}", "show", "HEAD").replace("e", "f", 1))
    git(cli_project, "notes", f"--ref={ATTESTATIONS_REF}", "add", "-f", "-F", str(note), "HEAD")
    code, report = verify_json(cli_project, "--attestations")
    assert code == 1 and not report["ok"]
    assert report["results"][0]["reasons"][0]["code"] == "attestation-invalid"
    assert verify_json(cli_project)[0] == 0  # without --attestations, the receipt alone decides


@pytest.mark.slow
def test_verify_attestations_fails_a_receipt_recorded_without_one(cli_project):
    assert run_tool(cli_project, "run").returncode == 0
    text = run_tool(cli_project, "verify", "--attestations")
    assert text.returncode == 1 and "no in-toto attestation" in text.stdout, text.stdout + text.stderr


@pytest.fixture
def agent(tmp_path: Path):
    """A real ssh-agent; its environment."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("OpenSSH's ssh-agent and ssh-add are not installed here")
    socket = tmp_path / "agent.sock"
    out = subprocess.run(["ssh-agent", "-s", "-a", str(socket)], capture_output=True, text=True, check=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+);", out).group(1))
    try:
        yield {"SSH_AUTH_SOCK": str(socket)}
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_run_attest_with_an_agent_only_key_is_refused_before_the_tests(cli_project, keygen, agent):
    key = keygen("ed25519", "agent-held")
    subprocess.run(["ssh-add", "-q", str(key.private)], env={**os.environ, **agent}, check=True,
                   capture_output=True)
    signers = cli_project / ".gpu-proof" / "allowed_signers"
    signers.write_text(signers.read_text() + f'{PRINCIPAL} namespaces="gpu-proof" {key.public_line}\n')
    commit_all(cli_project, "trust the agent's key")
    git(cli_project, "config", "user.signingKey", f"key::{key.public_line}")
    result = run_tool(cli_project, "run", "--attest", **agent)
    assert result.returncode == 4, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "signs through ssh-agent" in output and "--key-env" in output and "Nothing recorded" in output
    assert "1 passed" not in result.stdout and notes_tip(cli_project) == ""
    plain = run_tool(cli_project, "run", **agent)  # the same key signs receipts through the agent
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_each_shard_s_receipt_needs_its_own_attestation(tmp_path, keygen):
    from tests.verify.test_shards import Suite

    suite = Suite(tmp_path / "suite", keygen("ed25519"))
    attest(suite.repo, suite.key, suite.attach("kernels"))
    io = suite.attach("io")
    verdict = attested(suite.repo)
    assert verdict.state == UNVALIDATED and verdict.shards["kernels"].ok and not verdict.shards["io"].ok
    assert [(r.code, r.message.split(":")[0]) for r in verdict.reasons] == [(Code.ATTESTATION_MISSING, "shard io")]
    attest(suite.repo, suite.key, io)
    assert attested(suite.repo).ok


# -- bounded work on hostile notes ---------------------------------------------------------------

def test_a_note_of_millions_of_lines_costs_a_scan_not_an_object_per_line(project):
    import tracemalloc

    line = envelope(project.attach(), project.key, [head(project)])
    note = b"1\n" * (4 * 1024 * 1024) + line + b"\n"  # 8 MiB: four million lines, then the envelope
    set_note(project.root, note)
    verifier = open_verifier(project.repo, POLICY)
    commit = project.repo.revparse_single("HEAD").peel(pygit2.Commit)
    tracemalloc.start()
    try:
        verdict = require_attestations(verifier, commit)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert verdict.ok, verdict.reasons
    assert peak < 3 * len(note), f"{peak} bytes at the peak for a note of {len(note)}"


def test_only_the_first_envelope_lines_are_examined_and_the_reason_says_so(project):
    line = envelope(project.attach(), project.key, [head(project)])
    junk = [b'{"junk": %d}' % n for n in range(MAX_EXAMINED_ENVELOPES + 6)]
    set_note(project.root, b"\n".join([*junk, line]) + b"\n")
    message = refused(project, Code.ATTESTATION_INVALID, "envelope 1: not a DSSE envelope", "(+61 more)",
                      f"only the first {MAX_EXAMINED_ENVELOPES} envelopes were examined, 7 more were not")
    assert message.count("envelope ") < 10


def test_text_that_cannot_be_an_envelope_is_passed_over_and_named(project):
    set_note(project.root, b"hello\n" * 1000 + b'{"payload": 1}\n')
    project.attach()
    refused(project, Code.ATTESTATION_INVALID, "envelope 1: not a DSSE envelope", NOT_ENVELOPES)


def test_a_note_is_judged_once_per_receipt(project):
    signed = project.attach()
    attest(project.root, project.key, signed)
    write_files(project.root, {"README.md": "docs\n"})
    commit_all(project.root, "docs")
    attestations._memo.clear()
    assert checked(project, "HEAD~1").ok and checked(project, "HEAD").ok
    blob = attestation_notes.note_of(project.repo, head(project, "HEAD~1"))
    assert list(attestations._memo) == [(str(blob.id), signed.identity)]


# -- any valid receipt for the code may carry the attestation -------------------------------------

def test_an_attested_receipt_on_an_ancestor_validates_when_a_later_rerun_has_none(project):
    first = project.attach()
    attest(project.root, project.key, first)
    write_files(project.root, {"README.md": "docs\n"})
    commit_all(project.root, "docs")
    rerun = project.attach()  # the same code, run again on the new commit, without --attest
    assert project.verify().receipt.signed.identity == rerun.identity
    verdict = checked(project)
    assert verdict.ok and verdict.state == UNCHANGED and verdict.relation == "ancestor"
    assert verdict.receipt.signed.identity == first.identity
    assert verdict.receipt.note_commit == head(project, "HEAD~1")


def test_without_any_attested_receipt_the_reason_says_the_others_have_none(project):
    project.attach()
    write_files(project.root, {"README.md": "docs\n"})
    commit_all(project.root, "docs")
    project.attach()
    refused(project, Code.ATTESTATION_MISSING, "no in-toto attestation on",
            "none of the 1 other valid receipt(s) for this code has one either")


def test_the_command_reports_the_attested_receipt(project):
    write_files(project.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    made_on = commit_all(project.root, "trust")
    attest(project.root, project.key, project.attach())
    write_files(project.root, {"README.md": "docs\n"})
    commit_all(project.root, "docs")
    project.attach()
    code, report = verify_json(project.root, "--attestations")
    assert code == 0, report
    [result] = report["results"]
    assert result["state"] == "unchanged" and result["validated_by"]["note_commit"] == made_on


def test_a_shard_falls_back_to_its_own_attested_receipt(tmp_path, keygen):
    from tests.verify.test_shards import Suite

    suite = Suite(tmp_path / "suite", keygen("ed25519"))
    first = str(suite.repo.revparse_single("HEAD").id)
    attest(suite.repo, suite.key, suite.attach("kernels"))
    attest(suite.repo, suite.key, suite.attach("io"))
    suite.commit({"README.md": "docs\n"}, "docs")
    suite.attach("kernels")  # a rerun of one shard, not attested
    verdict = attested(suite.repo)
    assert verdict.ok and verdict.state == UNCHANGED, verdict.reasons
    assert verdict.shards["kernels"].receipt.note_commit == first
    assert verdict.receipt.note_commit == first
