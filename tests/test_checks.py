"""``gpu_proof_check`` end to end (docs/comparator.md): real pytest sessions, real git, real keys.

What a check's outcome does to the test, to the receipt (``check:`` lines), to
``verify`` (failure code ``check-failed``) and to ``show``; and check lines from
hostile or older notes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

from gitproof.notes import NotesStore
from gitproof.receipt import (ReceiptFormatError, SignedReceipt, TestResult, check_outcome, parse_note,
                              parse_payload, serialize_payload)
from gitproof.trust import load_trust
from gitproof.verify import UNVALIDATED, VALIDATED, Verifier, check_json, open_verifier
from tests.factories import make_receipt
from tests.helpers import commit_all, git, write_files, init_repo
from tests.receipts import POLICY, Project
from tests.remotes import gp

pytest.importorskip("numpy")
pytest_plugins = ["pytester"]

SIGNERS = ".gpu-proof/allowed_signers"
POLICY_TOML = f'[tool.gpu_proof]\nallowed_signers = "{SIGNERS}"\n'


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A repository whose runs are signed by a key its policy trusts."""
    root = pytester.path
    key = init_repo(root, key_dir=root / ".git" / "test-keys")
    assert key is not None
    write_files(root, {
        ".gitignore": "__pycache__/\n.pytest_cache/\n",
        "src/kernel.py": "X = 1\n",
        "tests/test_gpu.py": "",
        "pyproject.toml": POLICY_TOML,
        SIGNERS: f'runner@example.com namespaces="gpu-proof" {key.public_line}\n',
    })
    commit_all(root, "initial")
    return root


def record(pytester: pytest.Pytester, root: Path, module: str, *args: str):
    """Run ``module`` as the GPU tests under ``--gpu-proof``; the result and the receipt."""
    (root / "tests" / "test_gpu.py").write_text(module)
    commit_all(root, "tests")
    result = pytester.runpytest("--gpu-proof", *args)
    repo = pygit2.Repository(str(root))
    [entry] = NotesStore(repo).entries(str(repo.head.target))
    assert entry.signed is not None, entry.error
    return result, entry.signed.receipt


def checks_by_name(receipt) -> dict[str, dict]:
    return {c["name"]: c for c in receipt.checks}


def outcomes(receipt) -> dict[str, str]:
    return {t.nodeid.split("::")[1]: t.outcome for t in receipt.tests}


def failure_codes(root: Path) -> list[str]:
    repo = pygit2.Repository(str(root))
    [verdict] = open_verifier(repo).receipts_on(repo.head.peel(pygit2.Commit))
    return [f.code for f in verdict.failures]


# -- custom comparators: both conventions -----------------------------------------------

COMPARATORS = """
import numpy as np, pytest

def ones():
    return np.ones(3)

def broken_comparator(r, c):
    raise KeyError("no such field")

def broken_reference():
    raise ValueError("reference blew up")

@pytest.mark.gpu_proof
def test_peer_style(gpu_proof_check):
    gpu_proof_check("peer", ones, lambda: ones() + 1e-9, compare=lambda r, c: np.testing.assert_allclose(r, c))

@pytest.mark.gpu_proof
def test_assertion(gpu_proof_check):
    gpu_proof_check("assertion", ones, lambda: ones() * 2, compare=lambda r, c: np.testing.assert_allclose(r, c))

@pytest.mark.gpu_proof
def test_false(gpu_proof_check):
    gpu_proof_check("false", ones, ones, compare=lambda r, c: False)

@pytest.mark.gpu_proof
def test_comparator_error(gpu_proof_check):
    gpu_proof_check("comparator-error", ones, ones, compare=broken_comparator)

@pytest.mark.gpu_proof
def test_reference_error(gpu_proof_check):
    gpu_proof_check("reference-error", broken_reference, ones)
"""


def test_comparators_of_either_convention_decide_and_each_outcome_is_recorded(pytester, project):
    result, receipt = record(pytester, project, COMPARATORS)
    assert result.ret == 1
    assert outcomes(receipt) == {"test_peer_style": "passed", "test_assertion": "failed", "test_false": "failed",
                                 "test_comparator_error": "failed", "test_reference_error": "failed"}
    checks = checks_by_name(receipt)
    assert {name: (c["outcome"], c["ok"]) for name, c in checks.items()} == {
        "peer": ("passed", True), "assertion": ("failed", False), "false": ("failed", False),
        "comparator-error": ("error", False), "reference-error": ("error", False)}
    assert "message" not in checks["peer"] and "max_abs_err" not in checks["peer"]
    assert "Not equal to tolerance" in checks["assertion"]["message"]
    assert checks["false"]["message"] == "comparison returned False"
    assert checks["comparator-error"]["message"] == "comparison raised KeyError: 'no such field'"
    assert checks["reference-error"]["message"] == "reference raised ValueError: reference blew up"


def test_failures_and_errors_say_why_and_errors_show_the_users_traceback(pytester, project):
    result, _ = record(pytester, project, COMPARATORS)
    out = result.stdout.str()
    assert "gpu_proof_check 'assertion' mismatch: " in out and "Mismatched elements: 3 / 3" in out
    assert "gpu_proof_check 'false' mismatch: comparison returned False" in out
    assert "gpu_proof_check 'reference-error' error: reference raised ValueError: reference blew up" in out
    assert "The above exception was the direct cause of the following exception" in out
    assert 'raise ValueError("reference blew up")' in out  # the user's own frame


# -- the default comparison in a session ------------------------------------------------------

NUMERIC = """
import numpy as np, pytest

@pytest.mark.gpu_proof
def test_float32_close(gpu_proof_check):
    gpu_proof_check("f32-close", lambda: np.float32(1.0), lambda: np.float32(1.0) + np.float32(1e-7))

@pytest.mark.gpu_proof
def test_float32_far(gpu_proof_check):
    gpu_proof_check("f32-far", lambda: np.float32(1.0), lambda: np.float32(1.5))

@pytest.mark.gpu_proof
def test_list_within_rtol(gpu_proof_check):
    gpu_proof_check("list", lambda: [1.0, 2.0], lambda: [1.0, 2.0 * (1 + 1e-6)])

@pytest.mark.gpu_proof
def test_nan_same_positions(gpu_proof_check):
    gpu_proof_check("nan", lambda: np.array([1.0, np.nan]), lambda: np.array([1.0, np.nan]))
"""


def test_numpy_scalars_and_float_lists_get_a_tolerance_and_nan_matches_nan(pytester, project):
    result, receipt = record(pytester, project, NUMERIC)
    assert result.ret == 1
    assert outcomes(receipt) == {"test_float32_close": "passed", "test_float32_far": "failed",
                                 "test_list_within_rtol": "passed", "test_nan_same_positions": "passed"}
    checks = checks_by_name(receipt)
    assert checks["f32-close"]["max_abs_err"] == pytest.approx(1.19e-7, rel=1e-2)
    assert (checks["f32-far"]["max_abs_err"], checks["f32-far"]["max_rel_err"]) == (0.5, 0.5)
    assert checks["list"]["max_rel_err"] == pytest.approx(1e-6)
    assert (checks["nan"]["max_abs_err"], checks["nan"]["max_rel_err"]) == (0.0, 0.0)
    assert checks["f32-far"]["message"] == ("max abs error 0.5, max rel error 0.5 (rtol=1e-05, atol=1e-08): "
                                            "reference 1.0, candidate 1.5")
    result.stdout.fnmatch_lines(["*gpu_proof_check 'f32-far' mismatch: max abs error 0.5, *"])


# -- a failure the test catches ----------------------------------------------------------------

SWALLOWING = """
import pytest

def far():
    return 2.0

@pytest.fixture
def checked_in_setup(gpu_proof_check):
    try:
        gpu_proof_check("in-setup", lambda: 1.0, far)
    except BaseException:
        pass

@pytest.fixture
def checked_in_teardown(gpu_proof_check):
    yield
    try:
        gpu_proof_check("in-teardown", lambda: 1.0, far)
    except BaseException:
        pass

@pytest.mark.gpu_proof
def test_swallowed(gpu_proof_check):
    try:
        gpu_proof_check("swallowed", lambda: 1.0, far)
    except BaseException:
        pass

@pytest.mark.gpu_proof
def test_swallowed_in_setup(checked_in_setup):
    pass

@pytest.mark.gpu_proof
def test_swallowed_in_teardown(checked_in_teardown):
    pass

@pytest.mark.gpu_proof
def test_swallowed_then_skipped(gpu_proof_check):
    try:
        gpu_proof_check("then-skipped", lambda: 1.0, far)
    except BaseException:
        pytest.skip("gave up")

@pytest.mark.gpu_proof
@pytest.mark.xfail(reason="known bad kernel")
def test_expected_to_fail(gpu_proof_check):
    gpu_proof_check("expected", lambda: 1.0, far)

@pytest.mark.gpu_proof
@pytest.mark.xfail(reason="lenient")
def test_xpass_swallowed(gpu_proof_check):
    try:
        gpu_proof_check("xpass", lambda: 1.0, far)
    except BaseException:
        pass

@pytest.mark.gpu_proof
def test_not_swallowed(gpu_proof_check):
    gpu_proof_check("plain", lambda: 1.0, far)

@pytest.mark.gpu_proof
def test_passes(gpu_proof_check):
    gpu_proof_check("fine", lambda: 1.0, lambda: 1.0)
"""


def test_a_caught_check_failure_still_fails_its_test(pytester, project):
    result, receipt = record(pytester, project, SWALLOWING)
    # test_swallowed_in_teardown passed its call, then errored; test_not_swallowed failed once, no teardown error
    result.assert_outcomes(passed=2, failed=4, errors=2, xfailed=1)
    assert outcomes(receipt) == {
        "test_swallowed": "failed", "test_swallowed_in_setup": "error", "test_swallowed_in_teardown": "error",
        "test_swallowed_then_skipped": "failed",
        "test_expected_to_fail": "xfailed", "test_xpass_swallowed": "failed", "test_not_swallowed": "failed",
        "test_passes": "passed"}
    out = result.stdout.str()
    assert ("gpu_proof_check 'swallowed' failed: max abs error 1, max rel error 1 (rtol=1e-05, atol=1e-08): "
            "reference 1.0, candidate 2.0") in out
    assert "(a check that did not pass fails its test, even when the test catches the exception and goes on)" in out


def test_a_receipt_with_a_caught_check_failure_does_not_verify(pytester, project):
    record(pytester, project, SWALLOWING)
    repo = pygit2.Repository(str(project))
    [verdict] = open_verifier(repo).receipts_on(repo.head.peel(pygit2.Commit))
    failure = next(f for f in verdict.failures if f.code == "check-failed")
    assert failure.message.startswith("6 gpu_proof_check(s) did not pass: tests/test_gpu.py::test_swallowed "
                                      "check 'swallowed' failed: max abs error 1")
    assert "'in-teardown' failed" in failure.message and failure.message.endswith("(+3 more)")
    assert "test_expected_to_fail" not in failure.message  # xfailed: expected


def test_a_caught_check_failure_fails_under_xdist_too(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": SWALLOWING})
    commit_all(cli_project, "swallowing tests")
    run = gp(cli_project, "run", "--", "-n", "2")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "receipt failed (1 passed, 4 failed, 2 error, 1 xfailed)" in run.stdout
    verify = json.loads(gp(cli_project, "verify", "--json").stdout)
    codes = {r["code"] for r in verify["results"][0]["reasons"]}
    assert codes == {"tests-failed", "check-failed"}


# -- the verifier rule on its own (receipts another writer made) --------------------------------

def check(outcome: str | None = "passed", test: str = "tests/test_k.py::test_a", **fields) -> dict:
    record = {"test": test, "name": fields.pop("name", "sum")}
    if outcome is not None:
        record.update(outcome=outcome, ok=outcome == "passed")
    record.update(fields)
    return record


@pytest.fixture
def signed_project(repo: Path, keygen) -> Project:
    return Project(repo, keygen("ed25519"))


def test_a_failed_check_in_an_all_passing_receipt_fails_verification(signed_project):
    signed_project.attach(checks=[check(), check("failed", message="sum off by\n0.5 (100%) \u202e")])
    verdict = signed_project.verify()
    assert verdict.state == UNVALIDATED and [r.code for r in verdict.reasons] == ["check-failed"]
    assert verdict.reasons[0].message.endswith(  # on one line, and what could drive a terminal escaped
        "1 gpu_proof_check(s) did not pass: tests/test_k.py::test_a check 'sum' failed: sum off by 0.5 (100%) "
        "%E2%80%AE")


def test_an_errored_check_fails_verification(signed_project):
    signed_project.attach(checks=[check("error", message="reference raised ValueError: x")])
    [reason] = signed_project.verify().reasons
    assert reason.code == "check-failed"
    assert reason.message.endswith("check 'sum' error: reference raised ValueError: x")


def test_an_older_receipts_ok_false_check_fails_and_ok_true_passes(signed_project):
    signed_project.attach(checks=[check(None, ok=True)])
    assert signed_project.verify().state == VALIDATED
    signed_project.attach(checks=[check(None, ok=False)], mode="ci-gpu")
    repo = signed_project.repo
    verdicts = Verifier(repo, POLICY, load_trust(repo, POLICY)).receipts_on(repo.head.peel(pygit2.Commit))
    assert [[f.code for f in v.failures] for v in verdicts] == [[], ["check-failed"]]
    assert verdicts[1].failures[0].message.endswith("check 'sum' failed")


def test_the_checks_of_an_xfailed_test_are_exempt(signed_project):
    tests = [TestResult("tests/test_k.py::test_a", "passed", 0.1),
             TestResult("tests/test_k.py::test_x", "xfailed", 0.1)]
    signed_project.attach(tests=tests, checks=[check("failed", test="tests/test_k.py::test_x")])
    assert signed_project.verify().state == VALIDATED


def test_a_failed_check_of_a_test_the_receipt_does_not_list_still_counts(signed_project):
    signed_project.attach(checks=[check("failed", test="tests/test_k.py::test_gone")])
    assert [r.code for r in signed_project.verify().reasons] == ["check-failed"]


# -- show ---------------------------------------------------------------------------------------

SHOWN = """
import numpy as np, pytest

@pytest.mark.gpu_proof
def test_add(gpu_proof_check):
    gpu_proof_check("add-3", lambda: np.ones(3), lambda: np.ones(3) + 1e-7, rtol=1e-4, atol=1e-6,
                    metadata={"dtype": "float64"})
    gpu_proof_check("peer", lambda: 1, lambda: 1, compare=lambda r, c: None)

@pytest.mark.gpu_proof
def test_far(gpu_proof_check):
    gpu_proof_check("far", lambda: [1.0], lambda: [2.0])
"""


def test_show_lists_each_tests_checks(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": SHOWN})
    commit_all(cli_project, "checks")
    assert gp(cli_project, "run").returncode == 1
    lines = gp(cli_project, "show").stdout.splitlines()
    at = lines.index(next(line for line in lines if line.endswith("tests/test_kernels.py::test_add")))
    assert lines[at + 1] == ("      check passed  add-3  max abs err 1e-07, max rel err 1e-07 (rtol 0.0001, "
                             'atol 1e-06)  metadata {"dtype": "float64"}')
    assert lines[at + 2] == "      check passed  peer (rtol 1e-05, atol 1e-08)"
    assert lines[at + 3].endswith("tests/test_kernels.py::test_far")
    assert lines[at + 4] == ("      check failed  far  max abs err 1, max rel err 1 (rtol 1e-05, atol 1e-08): "
                             "max abs error 1, max rel error 1 (rtol=1e-05, atol=1e-08): 1 of 1 element(s) not "
                             "close, the first at [0]: reference 1.0, candidate 2.0")


def test_show_json_lists_each_check_in_full(cli_project):
    write_files(cli_project, {"tests/test_kernels.py": SHOWN})
    commit_all(cli_project, "checks")
    gp(cli_project, "run")
    [receipt] = json.loads(gp(cli_project, "show", "--json").stdout)["receipts"]
    add, peer, far = receipt["checks"]
    assert add == {"test": "tests/test_kernels.py::test_add", "name": "add-3", "outcome": "passed", "message": "",
                   "max_abs_err": pytest.approx(1e-7), "max_rel_err": pytest.approx(1e-7), "rtol": 1e-4,
                   "atol": 1e-6, "metadata": {"dtype": "float64"}}
    assert (peer["outcome"], peer["max_abs_err"], peer["max_rel_err"], peer["metadata"]) == ("passed", None, None, {})
    assert far["outcome"] == "failed" and far["message"].startswith("max abs error 1, max rel error 1")
    assert {f["code"] for f in receipt["failures"]} == {"tests-failed", "check-failed"}


def test_show_lists_checks_of_tests_the_receipt_does_not_list(signed_project):
    signed_project.attach(checks=[check("failed", test="tests/test_k.py::test_gone")])
    shown = gp(signed_project.root, "show").stdout.splitlines()
    at = shown.index("    (test not listed) tests/test_k.py::test_gone")
    assert shown[at + 1] == "      check failed  sum"


def test_show_puts_a_checks_message_on_one_safe_line_and_cuts_it(signed_project):
    signed_project.attach(checks=[check("error", message="a\nb \u202e 5%", metadata={"k": "\u202e"}),
                                  check("failed", name="long", message="x" * 300)])
    shown = gp(signed_project.root, "show").stdout.splitlines()
    at = shown.index(next(line for line in shown if line.endswith("tests/test_k.py::test_a")))
    assert shown[at + 1] == '      check error   sum  metadata {"k": "%E2%80%AE"}: a b %E2%80%AE 5%'
    assert shown[at + 2] == "      check failed  long: " + "x" * 200 + "..."


def test_check_json_fills_in_what_an_older_record_lacks():
    assert check_json({"test": "t::a", "name": "n", "ok": False, "rtol": 1e-5, "atol": 0}) == {
        "test": "t::a", "name": "n", "outcome": "failed", "message": "", "max_abs_err": None,
        "max_rel_err": None, "rtol": 1e-5, "atol": 0, "metadata": {}}


# -- show on a commit whose receipt is on an ancestor ---------------------------------------------

def test_show_names_the_ancestor_that_holds_the_receipt_of_an_unchanged_commit(cli_project):
    assert gp(cli_project, "run").returncode == 0
    holder = git(cli_project, "rev-parse", "HEAD")
    write_files(cli_project, {"README.md": "docs only\n"})
    head = commit_all(cli_project, "docs")
    shown = gp(cli_project, "show")
    assert shown.returncode == 0
    assert shown.stdout == (f"no receipts on {head[:10]}; its fingerprint trees are unchanged from {holder[:10]}, "
                            f"which holds the receipt (see `git gpu-proof show {holder[:10]}`)\n")
    data = json.loads(gp(cli_project, "show", "--json").stdout)
    validated_by = data.pop("validated_by")
    assert data == {"commit": head, "receipts": [], "unchanged_from": holder}
    assert validated_by["note_commit"] == validated_by["made_on"] == holder
    assert validated_by["relation"] == "ancestor" and validated_by["signer"]


def test_show_without_a_covering_receipt_says_why_and_exits_1(cli_project):
    assert gp(cli_project, "run").returncode == 0
    write_files(cli_project, {"src/kernels.py": "def add(a, b):\n    return b + a\n"})
    head = commit_all(cli_project, "change the kernel")
    shown = gp(cli_project, "show")
    assert shown.returncode == 1
    first, reason = shown.stdout.splitlines()
    assert first == f"no receipts on {head[:10]}"
    assert reason.startswith("  ! GPU code changed since the receipt on ") and reason.endswith("src/kernels.py")
    json_shown = gp(cli_project, "show", "--json")
    assert json_shown.returncode == 1 and json.loads(json_shown.stdout) == {"commit": head, "receipts": []}


def test_show_names_each_shards_ancestor(tmp_path, keygen):
    from tests.verify.test_shards import Suite

    suite = Suite(tmp_path / "suite", keygen("ed25519"))
    a = git(suite.root, "rev-parse", "HEAD")
    suite.attach("kernels")
    b = suite.commit({"src/io/read.py": "def read(path):\n    return path\n"}, "B: io only")
    suite.attach("io")
    c = suite.commit({"README.md": "docs\n"}, "C: docs")
    shown = suite.gp("show")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.splitlines() == [
        f"no receipts on {c[:10]}; its fingerprint trees are the same as those of the commits that hold the receipts:",
        f"  shard kernels: unchanged from {a[:10]} (see `git gpu-proof show {a[:10]}`)",
        f"  shard io: unchanged from {b[:10]} (see `git gpu-proof show {b[:10]}`)"]
    data = json.loads(suite.gp("show", "--json").stdout)
    assert data["unchanged_from"] == b and data["unchanged_from_shards"] == {"kernels": a, "io": b}


# -- check lines from hostile and older notes --------------------------------------------------------

def payload_with_check(raw: str) -> bytes:
    placeholder = {"test": "tests/test_k.py::test_a", "name": "PLACEHOLDER", "outcome": "passed", "ok": True}
    payload = serialize_payload(make_receipt(checks=[placeholder]))
    line = b"check: " + json.dumps(placeholder, separators=(", ", ": ")).encode()
    assert line in payload
    return payload.replace(line, b"check: " + raw.encode())


@pytest.mark.parametrize("raw, says", [
    ('{"name": "n", "outcome": "passed"}', "check field has no 'test'"),
    ('{"test": "t", "outcome": "passed"}', "check field has no 'name'"),
    ('{"test": 1, "name": "n", "outcome": "passed"}', "bad 'test' (must be a string)"),
    ('{"test": "t", "name": null, "outcome": "passed"}', "bad 'name' (must be a string)"),
    ('{"test": "t", "name": "n", "outcome": "maybe"}', "bad 'outcome' (must be passed, failed or error)"),
    ('{"test": "t", "name": "n", "outcome": ["passed"]}', "bad 'outcome'"),
    ('{"test": "t", "name": "n", "ok": "yes"}', "bad 'ok' (must be true or false)"),
    ('{"test": "t", "name": "n"}', "check field has neither 'outcome' nor 'ok'"),
    ('{"test": "t", "name": "n", "outcome": "failed", "ok": true}', "check field's 'ok' contradicts its 'outcome'"),
    ('{"test": "t", "name": "n", "outcome": "passed", "message": 5}', "bad 'message' (must be a string)"),
    ('{"test": "t", "name": "n", "outcome": "passed", "rtol": "1e-5"}', "bad 'rtol' (must be a finite number)"),
    ('{"test": "t", "name": "n", "outcome": "passed", "atol": true}', "bad 'atol'"),
    ('{"test": "t", "name": "n", "outcome": "passed", "rtol": 1' + "0" * 30 + "}", "bad 'rtol'"),
    ('{"test": "t", "name": "n", "outcome": "passed", "max_abs_err": 1e400}', "bad 'max_abs_err'"),
    ('{"test": "t", "name": "n", "outcome": "passed", "max_rel_err": "big"}', "bad 'max_rel_err'"),
    ('{"test": "t", "name": "n", "outcome": "passed", "metadata": []}', "bad 'metadata' (must be an object)"),
    ('["t", "n"]', "check field must be a JSON object"),
    ('{"test": "t", "name": "n", "outcome": "passed", "message": "' + "x" * 5000 + '", "ok": 1}',
     "bad 'ok' (must be true or false)"),  # and the refusal quotes only the start
])
def test_a_hostile_check_line_is_a_parse_error_naming_the_problem(raw, says):
    with pytest.raises(ReceiptFormatError) as caught:
        parse_payload(payload_with_check(raw))
    assert says in str(caught.value) and len(str(caught.value)) < 500


def test_a_hostile_check_line_makes_its_receipt_malformed_for_show_and_verify(signed_project):
    signed_project.attach(checks=[check("maybe")])
    write_files(signed_project.root, {"pyproject.toml": POLICY_TOML})
    commit_all(signed_project.root, "policy")
    shown = gp(signed_project.root, "show", "HEAD~1")
    assert shown.returncode == 0 and "Traceback" not in shown.stdout + shown.stderr
    assert "! malformed receipt: check field has a bad 'outcome' (must be passed, failed or error)" in shown.stdout
    verified = json.loads(gp(signed_project.root, "verify", "--json").stdout)
    assert [r["code"] for r in verified["results"][0]["reasons"]] == ["malformed"]


def test_older_ok_records_and_unknown_keys_are_read():
    records = [{"test": "t::a", "name": "a", "ok": True, "rtol": 1e-5, "atol": 0},
               {"test": "t::a", "name": "b", "ok": False, "rtol": 1e-5, "atol": 1e-8, "max_abs_err": "inf"},
               {"test": "t::a", "name": "c", "outcome": "error", "ok": False, "from-the-future": [1]}]
    parsed = parse_payload(serialize_payload(make_receipt(checks=records)))
    assert parsed.checks == records
    assert [check_outcome(c) for c in parsed.checks] == ["passed", "failed", "error"]


def test_a_real_receipt_from_before_outcomes_still_parses():
    text = (Path(__file__).parent.parent / "docs" / "gpu-evidence" / "h200-2026-11-29-demo-cuda.receipt").read_text()
    [entry] = parse_note(text)
    assert entry.error is None
    assert [check_outcome(c) for c in entry.signed.receipt.checks] == ["passed", "passed"]


def test_a_signed_receipt_keeps_its_check_records_byte_for_byte(signed_project):
    signed = signed_project.attach(checks=[check("failed", message="x" * 10, max_abs_err="nan", rtol=0)])
    repo = signed_project.repo
    [entry] = NotesStore(repo).entries(str(repo.head.target))
    assert isinstance(entry.signed, SignedReceipt) and entry.signed.payload == signed.payload
