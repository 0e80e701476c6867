"""GPU evidence in receipts: the gpu-facts and gpu-use fields, require_gpu_use, attestation.

Receipts are built and signed for real (real keys, real notes); how the
evidence is gathered is tested in tests/gpu/.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from gitproof.receipt import ReceiptFormatError, TestResult, parse_payload, serialize_payload
from tests.factories import make_receipt
from tests.helpers import commit_all, write_files
from tests.receipts import POLICY, Project
from tests.remotes import gp

MATMUL = TestResult("tests/test_k.py::test_matmul", "passed", 0.2)
FALLBACK = TestResult("tests/test_k.py::test_cpu_fallback", "passed", 0.1)
NO_METHOD = TestResult("tests/test_k.py::test_opaque", "passed", 0.1)
SKIPPED = TestResult("tests/test_k.py::test_later", "skipped", 0.0)
BUS = "00000000:18:00.0"
FACTS = {"source": "nvml", "cuda_visible_devices": None,
         "confidential_computing": {"feature": "off", "environment": "unavailable", "dev_tools": "off"},
         "notes": []}


def use(test: TestResult, used: bool | None, method: str | None = "torch.cuda.memory_stats",
        evidence: str = "") -> dict:
    return {"test": test.nodeid, "used": used, "method": method,
            "evidence": evidence or {True: "2 device allocations on cuda:0",
                                     False: "no device allocation", None: "no method applies"}[used],
            "devices": [BUS] if used else [], "nvml": "listed" if used else None}


GPU_USE = [use(MATMUL, True), use(FALLBACK, False), use(NO_METHOD, None, method=None)]


# -- the fields ---------------------------------------------------------------------

def test_gpu_facts_and_gpu_use_round_trip_byte_for_byte():
    receipt = make_receipt(tests=[MATMUL, FALLBACK, NO_METHOD], gpu_facts=FACTS, gpu_use=GPU_USE)
    payload = serialize_payload(receipt)
    text = payload.decode()
    assert text.index("gpu: {") < text.index("gpu-facts: {") < text.index("signer: ")
    assert text.count("\ngpu-use: {") == 3
    parsed = parse_payload(payload)
    assert (parsed.gpu_facts, parsed.gpu_use, parsed.extra) == (FACTS, GPU_USE, [])
    assert serialize_payload(parsed) == payload


def test_receipts_without_the_new_fields_still_parse():
    parsed = parse_payload(serialize_payload(make_receipt()))
    assert parsed.gpu_facts is None and parsed.gpu_use == []


@pytest.mark.parametrize("record, message", [
    ({"used": True}, "string 'test'"),
    ({"test": MATMUL.nodeid}, "'used' true, false or null"),
    ({"test": MATMUL.nodeid, "used": 1}, "'used' true, false or null"),
    ({"test": MATMUL.nodeid, "used": "yes"}, "'used' true, false or null"),
    ({"test": "tests/test_k.py::test_not_listed", "used": True}, "does not list"),
])
def test_malformed_gpu_use_records_are_refused(record, message):
    payload = serialize_payload(make_receipt(tests=[MATMUL], gpu_use=[record]))
    with pytest.raises(ReceiptFormatError, match=message):
        parse_payload(payload)


def test_two_records_for_one_test_are_refused():
    payload = serialize_payload(make_receipt(tests=[MATMUL], gpu_use=[use(MATMUL, True), use(MATMUL, False)]))
    with pytest.raises(ReceiptFormatError, match="two gpu-use records"):
        parse_payload(payload)


@pytest.mark.parametrize("facts, message", [
    ({"devices": []}, "string 'source'"),
    ({"source": 3}, "string 'source'"),
])
def test_malformed_gpu_facts_are_refused(facts, message):
    with pytest.raises(ReceiptFormatError, match=message):
        parse_payload(serialize_payload(make_receipt(gpu_facts=facts)))


def test_gpu_facts_appear_once():
    text = serialize_payload(make_receipt(gpu_facts=FACTS)).decode()
    line = next(line for line in text.splitlines() if line.startswith("gpu-facts: "))
    with pytest.raises(ReceiptFormatError, match="twice"):
        parse_payload(text.replace(line, line + "\n" + line).encode())


# -- require_gpu_use -----------------------------------------------------------------

@pytest.fixture
def project(repo: Path, keygen) -> Project:
    return Project(repo, keygen("ed25519"))


def codes(verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


GPU_USE_POLICY = replace(POLICY, require_gpu_use=True)


def test_require_gpu_use_accepts_a_run_whose_passing_tests_all_used_the_gpu(project):
    project.attach(tests=[MATMUL], gpu_use=[use(MATMUL, True)], gpu_facts=FACTS)
    assert project.verify(policy=GPU_USE_POLICY).ok


def test_require_gpu_use_names_the_cpu_fallback_test(project):
    project.attach(tests=[MATMUL, FALLBACK], gpu_use=[use(MATMUL, True), use(FALLBACK, False)])
    assert project.verify().ok  # not required by default
    verdict = project.verify(policy=GPU_USE_POLICY)
    assert codes(verdict) == ["gpu-not-used"]
    message = verdict.reasons[0].message
    assert FALLBACK.nodeid in message and "not used: no device allocation" in message
    assert MATMUL.nodeid not in message


def test_unknown_evidence_is_not_use(project):
    project.attach(tests=[MATMUL, NO_METHOD], gpu_use=[use(MATMUL, True), use(NO_METHOD, None, method=None)])
    verdict = project.verify(policy=GPU_USE_POLICY)
    assert codes(verdict) == ["gpu-not-used"]
    assert f"{NO_METHOD.nodeid} (unknown: no method applies)" in verdict.reasons[0].message


def test_a_passing_test_without_a_record_is_not_use(project):
    project.attach(tests=[MATMUL, FALLBACK], gpu_use=[use(MATMUL, True)])
    verdict = project.verify(policy=GPU_USE_POLICY)
    assert f"{FALLBACK.nodeid} (no gpu-use record)" in verdict.reasons[0].message


def test_receipts_from_before_gpu_use_evidence_fail_require_gpu_use(project):
    project.attach(tests=[MATMUL])
    verdict = project.verify(policy=GPU_USE_POLICY)
    assert codes(verdict) == ["gpu-not-used"] and "records no per-test GPU use" in verdict.reasons[0].message


def test_skipped_tests_need_no_gpu_use(project):
    project.attach(tests=[MATMUL, SKIPPED], gpu_use=[use(MATMUL, True), use(SKIPPED, False)])
    assert project.verify(policy=replace(GPU_USE_POLICY, allow_skipped=True)).ok


def test_long_lists_are_cut_short(project):
    tests = [TestResult(f"tests/test_k.py::test_{i}", "passed", 0.0) for i in range(8)]
    project.attach(tests=tests, gpu_use=[use(t, False) for t in tests])
    message = project.verify(policy=GPU_USE_POLICY).reasons[0].message
    assert ": 8 passing test(s) show no GPU use: " in message and message.endswith("(+3 more)")


def test_require_gpu_refuses_a_run_that_saw_no_visible_device(project):
    hidden = [dict(make_receipt().gpus[0], visible=False)]
    project.attach(gpus=hidden, gpu_facts=dict(FACTS, cuda_visible_devices=""))
    verdict = project.verify(policy=replace(POLICY, require_gpu=True))
    assert codes(verdict) == ["no-gpu"] and "CUDA_VISIBLE_DEVICES=''" in verdict.reasons[0].message
    project.attach(gpus=[dict(hidden[0], visible=True)], gpu_facts=FACTS)
    assert project.verify(policy=replace(POLICY, require_gpu=True)).ok


# -- the command line ----------------------------------------------------------------

@pytest.fixture
def cli_project(project: Project) -> Project:
    write_files(project.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    commit_all(project.root, "policy")
    return project


def test_verify_require_gpu_use_flag_and_policy_key(cli_project):
    cli_project.attach(tests=[MATMUL, FALLBACK], gpu_use=[use(MATMUL, True), use(FALLBACK, False)])
    root = cli_project.root
    assert gp(root, "verify").returncode == 0
    refused = gp(root, "verify", "--require-gpu-use")
    assert refused.returncode == 1 and FALLBACK.nodeid in refused.stdout + refused.stderr
    as_json = json.loads(gp(root, "verify", "--require-gpu-use", "--json").stdout)
    reasons = as_json["results"][0]["reasons"]
    assert [r["code"] for r in reasons] == ["gpu-not-used"]
    write_files(root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
                                         "require_gpu_use = true\n"})
    assert gp(root, "verify").returncode == 1
    bad = gp(root, "verify", "--policy", str(_policy_file(root, "require_gpu_use = 'yes'\n")))
    assert bad.returncode == 2 and "require_gpu_use" in bad.stderr


def _policy_file(root: Path, body: str) -> Path:
    path = root.parent / "policy.toml"
    path.write_text(body)
    return path


def test_show_prints_facts_and_per_test_use(cli_project):
    cli_project.attach(tests=[MATMUL, FALLBACK, NO_METHOD], gpu_facts=FACTS, gpu_use=GPU_USE)
    shown = gp(cli_project.root, "show")
    assert shown.returncode == 0, shown.stderr
    assert "(facts from nvml; confidential computing off)" in shown.stdout
    assert "1 used a GPU, 1 did not, 1 unknown" in shown.stdout
    lines = shown.stdout.splitlines()
    assert any("gpu " in line and MATMUL.nodeid in line for line in lines)
    assert any("NO-GPU" in line and FALLBACK.nodeid in line for line in lines)
    assert any("gpu?" in line and NO_METHOD.nodeid in line for line in lines)
    data = json.loads(gp(cli_project.root, "show", "--json").stdout)
    assert data["receipts"][0]["gpu_use"] == GPU_USE and data["receipts"][0]["gpu_facts"] == FACTS


# -- attestation: reserved, never claimed ----------------------------------------------

ATTESTATION = {"kind": "nvidia-cc", "nonce": "sha256:" + "0" * 64,
               "evidence": [{"gpu": BUS, "report": "AAAA", "certificates": ["BBBB"]}],
               "verifier": {"kind": "nras", "result": "pass"}}


def test_a_receipt_with_an_attestation_block_verifies_but_claims_no_attestation(cli_project):
    signed = cli_project.signed(tests=[MATMUL], gpu_use=[use(MATMUL, True)])
    line = f"attestation: {json.dumps(ATTESTATION, separators=(', ', ': '))}\n".encode()
    payload = signed.payload.replace(b"\n\ntest:", b"\n" + line.rstrip(b"\n") + b"\n\ntest:", 1)
    receipt = parse_payload(payload)
    assert receipt.extra == [("attestation", line.decode()[len("attestation: "):-1])]
    from gitproof import signing
    from gitproof.notes import NotesStore
    from gitproof.receipt import SignedReceipt
    key = signing.resolve_signing_key(cli_project.repo, str(cli_project.key.private))
    resigned = SignedReceipt(receipt, payload, signing.sign(payload, key))
    NotesStore(cli_project.repo).add(str(cli_project.repo.head.target), resigned)
    assert cli_project.verify(policy=GPU_USE_POLICY).ok
    shown = gp(cli_project.root, "show")
    assert "attestation  present, NOT checked" in shown.stdout
    assert "attested" not in shown.stdout.replace("attestation", "")


def test_tampering_with_an_attestation_block_breaks_the_signature(cli_project):
    signed = cli_project.signed(tests=[MATMUL])
    payload = signed.payload.replace(b"\n\ntest:", b'\nattestation: {"verifier": {"result": "pass"}}\n\ntest:', 1)
    from gitproof.notes import NotesStore
    from gitproof.receipt import SignedReceipt
    forged = SignedReceipt(parse_payload(payload), payload, signed.signature)
    NotesStore(cli_project.repo).add(str(cli_project.repo.head.target), forged)
    assert codes(cli_project.verify()) == ["bad-signature"]


def test_a_pull_request_cannot_switch_off_require_gpu_use_under_trust_ref(cli_project):
    root = cli_project.root
    signers = '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
    write_files(root, {"pyproject.toml": signers + "require_gpu_use = true\n"})
    commit_all(root, "main requires GPU use")
    from tests.helpers import git

    git(root, "branch", "protected")
    write_files(root, {"pyproject.toml": signers + "require_gpu_use = false\n"})
    commit_all(root, "pull request relaxes it")
    cli_project.attach(tests=[MATMUL, FALLBACK], gpu_use=[use(MATMUL, True), use(FALLBACK, False)])
    assert gp(root, "verify").returncode == 0  # the working tree's own policy
    trusted = gp(root, "verify", "--trust-ref", "protected")
    assert trusted.returncode == 1
    assert f"show no GPU use: {FALLBACK.nodeid}" in trusted.stdout


def test_c1_controls_and_bidi_overrides_never_reach_the_terminal(cli_project):
    sneaky = "ran on \u009b31mGPU\u202e"
    cli_project.attach(tests=[MATMUL], gpu_use=[use(MATMUL, False, evidence=sneaky)],
                       gpu_facts=dict(FACTS, cuda_visible_devices="0\u009b"))
    shown = gp(cli_project.root, "show").stdout
    cli_project.attach(tests=[MATMUL], shard="s\u009b1", key_fingerprint="SHA256:x\u202e")
    shown += gp(cli_project.root, "show").stdout
    assert "(shard s%C2%9B1)" in shown and "SHA256:x%E2%80%AE" in shown
    outputs = [shown, gp(cli_project.root, "verify", "--require-gpu-use").stdout]
    for output in outputs:
        assert "\u009b" not in output and "\u202e" not in output
    assert "ran on %C2%9B31mGPU%E2%80%AE" in outputs[1]
    assert "CUDA_VISIBLE_DEVICES=0%C2%9B" in outputs[0]


@pytest.mark.parametrize("change", [{"method": 5}, {"evidence": None}, {"devices": "x"}, {"devices": [1]},
                                    {"nvml": True}])
def test_known_gpu_use_keys_must_have_their_types(change):
    payload = serialize_payload(make_receipt(tests=[MATMUL], gpu_use=[{**use(MATMUL, True), **change}]))
    with pytest.raises(ReceiptFormatError, match="bad"):
        parse_payload(payload)


@pytest.mark.parametrize("change", [{"notes": 5}, {"notes": [None]}, {"cuda_visible_devices": 0},
                                    {"confidential_computing": "on"}])
def test_known_gpu_facts_keys_must_have_their_types(change):
    with pytest.raises(ReceiptFormatError, match="bad"):
        parse_payload(serialize_payload(make_receipt(gpu_facts={**FACTS, **change})))


def test_newer_keys_in_gpu_use_and_gpu_facts_are_kept():
    receipt = make_receipt(tests=[MATMUL], gpu_use=[{**use(MATMUL, True), "power_w": 12}],
                           gpu_facts={**FACTS, "fabric": {"state": "ok"}})
    parsed = parse_payload(serialize_payload(receipt))
    assert parsed.gpu_use[0]["power_w"] == 12 and parsed.gpu_facts["fabric"] == {"state": "ok"}


def test_require_gpu_use_needs_a_visible_gpu_in_the_receipt(project):
    project.attach(tests=[MATMUL], gpu_use=[use(MATMUL, True)], gpus=[])
    verdict = project.verify(policy=GPU_USE_POLICY)
    assert codes(verdict) == ["gpu-not-used"] and "lists no GPU visible" in verdict.reasons[0].message


# -- kernel evidence (require_gpu_kernels) ------------------------------------------------

KERNELS = {"tracer": "cupti 130000 (libcupti.so.13)", "launches": 3, "gpu_time_ns": 5000,
           "devices": [BUS], "top": [{"name": "gemm", "launches": 3, "gpu_time_ns": 5000}],
           "memcpy": {"count": 2, "bytes": 4096}, "memset": {"count": 0, "bytes": 0}, "dropped": 0}
KERNEL_POLICY = replace(POLICY, require_gpu_kernels=True)


def traced(test: TestResult, **change) -> dict:
    return {**use(test, True), "kernels": {**KERNELS, **change}}


def test_kernel_records_round_trip():
    receipt = make_receipt(tests=[MATMUL], gpu_use=[traced(MATMUL)])
    assert parse_payload(serialize_payload(receipt)).gpu_use[0]["kernels"] == KERNELS


@pytest.mark.parametrize("change", [{"launches": -1}, {"launches": True}, {"launches": "3"},
                                    {"gpu_time_ns": 1.5}, {"tracer": 7}, {"devices": [3]},
                                    {"memcpy": {"count": "x"}}, {"memcpy": []}, {"top": [{"launches": 1}]},
                                    {"top": [{"name": "k", "gpu_time_ns": -5}]}, {"top": ["gemm"]},
                                    {"gpu_time_ns": 10**400}, {"launches": 2**64}, {"incomplete": -1},
                                    {"untimed": "2"}])
def test_hostile_kernel_records_are_malformed(change):
    payload = serialize_payload(make_receipt(tests=[MATMUL], gpu_use=[traced(MATMUL, **change)]))
    with pytest.raises(ReceiptFormatError, match="gpu-use kernels field has a"):
        parse_payload(payload)


def test_a_kernels_value_that_is_not_an_object_is_malformed():
    payload = serialize_payload(make_receipt(tests=[MATMUL], gpu_use=[{**use(MATMUL, True), "kernels": 12}]))
    with pytest.raises(ReceiptFormatError, match="bad 'kernels'"):
        parse_payload(payload)


def test_require_gpu_kernels_accepts_tests_that_launched_kernels(project):
    project.attach(tests=[MATMUL, SKIPPED], gpu_use=[traced(MATMUL), use(SKIPPED, None)])
    assert project.verify(policy=replace(KERNEL_POLICY, allow_skipped=True)).ok


def test_require_gpu_kernels_names_the_test_that_only_copied_data(project):
    copied = traced(FALLBACK, launches=0, gpu_time_ns=0, top=[])
    project.attach(tests=[MATMUL, FALLBACK], gpu_use=[traced(MATMUL), copied])
    assert project.verify(policy=GPU_USE_POLICY).ok  # it did touch the GPU
    verdict = project.verify(policy=KERNEL_POLICY)
    assert codes(verdict) == ["gpu-no-kernels"]
    assert verdict.reasons[0].message.endswith(": 1 passing test(s) launched no GPU kernel: "
                                               f"{FALLBACK.nodeid} (0 kernels, 2 copies)")


def test_require_gpu_kernels_needs_kernel_evidence_in_the_receipt(project):
    untraced = {**use(MATMUL, True), "kernels": {"tracer": None, "error": "CUPTI not found"}}
    project.attach(tests=[MATMUL, FALLBACK], gpu_use=[untraced, use(FALLBACK, True)])
    message = project.verify(policy=KERNEL_POLICY).reasons[0].message
    assert f"{MATMUL.nodeid} (kernels not traced: CUPTI not found)" in message
    assert f"{FALLBACK.nodeid} (kernels not traced: record with --gpu-proof-kernels)" in message


def test_require_gpu_kernels_is_a_policy_key_and_a_flag(cli_project):
    cli_project.attach(tests=[MATMUL, FALLBACK], gpu_use=[traced(MATMUL), traced(FALLBACK, launches=0)])
    root = cli_project.root
    assert gp(root, "verify").returncode == 0
    refused = gp(root, "verify", "--require-gpu-kernels")
    assert refused.returncode == 1 and FALLBACK.nodeid in refused.stdout
    write_files(root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
                                         "require_gpu_kernels = true\n"})
    assert gp(root, "verify").returncode == 1
    bad = gp(root, "verify", "--policy", str(_policy_file(root, "require_gpu_kernels = 1\n")))
    assert bad.returncode == 2 and "require_gpu_kernels" in bad.stderr


def test_show_lists_each_tests_kernels_and_the_tracer(cli_project):
    copied = traced(FALLBACK, launches=0, gpu_time_ns=0, top=[], memcpy={"count": 1, "bytes": 8})
    cli_project.attach(tests=[MATMUL, FALLBACK], gpu_use=[traced(MATMUL), copied])
    out = gp(cli_project.root, "show").stdout
    assert "  kernels   1 of 2 tests launched GPU kernels (traced by cupti 130000 (libcupti.so.13))" in out
    assert f"{MATMUL.nodeid}  (3 kernels, 0.005 ms on GPU, 2 copies)" in out
    assert f"{FALLBACK.nodeid}  (0 kernels, 1 copy)" in out
    shown = json.loads(gp(cli_project.root, "show", "--json").stdout)
    assert "kernels" in json.dumps(shown) and '"launches": 3' in json.dumps(shown)


def test_show_says_why_kernels_were_not_traced_and_escapes_it(cli_project):
    untraced = {**use(MATMUL, True), "kernels": {"tracer": None, "error": "CUPTI \x1b[31mnot found"}}
    cli_project.attach(tests=[MATMUL], gpu_use=[untraced])
    out = gp(cli_project.root, "show").stdout
    assert "kernels   not traced: CUPTI " in out and "\x1b" not in out
    assert f"{MATMUL.nodeid}  (kernels not traced)" in out


def test_the_largest_counts_a_receipt_may_hold_are_shown_without_error(cli_project):
    cli_project.attach(tests=[MATMUL], gpu_use=[traced(MATMUL, gpu_time_ns=2**64 - 1, launches=2**64 - 1)])
    shown = gp(cli_project.root, "show")
    assert shown.returncode == 0 and "18446744073709.551 ms on GPU" in shown.stdout


@pytest.mark.parametrize("record, gpus, says", [
    (lambda: traced(MATMUL), [], "lists no GPU visible"),
    (lambda: {**use(MATMUL, True), "kernels": {"tracer": None, "error": "CUPTI not found", "launches": 3}},
     None, "kernels not traced: CUPTI not found"),
    (lambda: {**traced(MATMUL), "used": False}, None, "kernels recorded, but the record says used: False"),
])
def test_require_gpu_kernels_refuses_receipts_that_contradict_themselves(project, record, gpus, says):
    extra = {} if gpus is None else {"gpus": gpus}
    project.attach(tests=[MATMUL], gpu_use=[record()], **extra)
    verdict = project.verify(policy=KERNEL_POLICY)
    assert codes(verdict) == ["gpu-no-kernels"] and says in verdict.reasons[0].message


def test_a_pull_request_cannot_shrink_the_required_tests_manifest_under_trust_ref(cli_project):
    from tests.helpers import git

    root = cli_project.root
    policy = ('[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'
              'required_tests = ".gpu-proof/required-tests.txt"\n')
    write_files(root, {"pyproject.toml": policy,
                       ".gpu-proof/required-tests.txt": f"{MATMUL.nodeid}\n{FALLBACK.nodeid}\n"})
    commit_all(root, "main requires both tests")
    git(root, "branch", "protected")
    write_files(root, {".gpu-proof/required-tests.txt": f"{MATMUL.nodeid}\n"})
    commit_all(root, "pull request drops one")
    cli_project.attach(tests=[MATMUL])
    assert gp(root, "verify").returncode == 0  # the working tree's own manifest
    trusted = gp(root, "verify", "--trust-ref", "refs/heads/protected", "--json")
    assert trusted.returncode == 1
    assert [r["code"] for r in json.loads(trusted.stdout)["results"][0]["reasons"]] == ["required-tests"]
