"""`git gpu-proof export`: the audit trail as JSON, CSV and in-toto statements (validated with the
in-toto-attestation bindings), written atomically; real repositories, real keys."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gitproof.export import CSV_HEADER, neutralised
from tests.helpers import git, run_tool
from tests.verify.test_audit import DAY, Team

START = datetime.now(timezone.utc).replace(microsecond=0) - 10 * DAY
HOSTILE_GPU = {"index": 0, "name": '@SUM(1+1)*cmd|" /C calc"!A0', "driver": "1", "memory_mib": 1,
               "compute_capability": "9.0", "uuid": "GPU-1"}


@pytest.mark.parametrize("cell, shown", [
    ("=1+2", "'=1+2"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("plain", "plain"), ("a=b", "a=b"), ("", ""), ("2024-01-01", "2024-01-01"),
])
def test_cells_that_start_like_a_formula_are_neutralised(cell, shown):
    assert neutralised(cell) == shown


@pytest.fixture
def keys(keygen):
    return {name: keygen("ed25519", name) for name in ("alice", "bob")}


@pytest.fixture
def history(tmp_path: Path, keys) -> Team:
    """base (alice, since rotated out) <- "=HYPERLINK" docs commit <- rotate <- kernel (bob) <- kernel again."""
    team = Team(tmp_path / "team", keys, start=START)
    team.attach("HEAD", "alice", START + DAY / 2, gpus=[HOSTILE_GPU])
    team.commit({"README.md": "docs\n"}, START + DAY, '=HYPERLINK("http://evil.example","x")')
    team.trust(["bob"], START + 2 * DAY, "rotate: bob replaces alice")
    team.commit({"src/kernels.py": "def add(a, b):\n    return b + a\n"}, START + 3 * DAY, "kernel: swap")
    team.attach("HEAD", "bob", START + 3 * DAY + DAY / 2)
    team.commit({"src/kernels.py": "def add(a, b):\n    return a + b + 0\n"}, START + 4 * DAY, "kernel: again")
    return team


def export(root: Path, *args: str) -> str:
    result = run_tool(root, "export", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_json_is_the_audit_with_the_log_fields(history):
    commits = json.loads(export(history.root, "--format", "json"))["commits"]
    assert [c["status"] for c in commits] == ["never-valid", "valid", "was-valid", "was-valid", "was-valid"]
    assert commits == json.loads(run_tool(history.root, "log", "--audit", "--json").stdout)["commits"]
    base = commits[-1]
    assert base["audit"]["scopes"][0]["signer"] == "alice@example.com"
    assert base["author"]["email"] == "runner@example.com" and base["date"] and base["subject"]


@pytest.mark.slow
def test_csv_has_a_header_and_one_neutralised_row_per_commit(history, keys):
    rows = list(csv.reader(io.StringIO(export(history.root, "--format", "csv"), newline="")))
    assert tuple(rows[0]) == CSV_HEADER
    records = [dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]]
    assert [r["status"] for r in records] == ["never-valid", "valid", "was-valid", "was-valid", "was-valid"]
    again, swap, rotate, docs, base = records
    assert again["signer"] == again["passed"] == again["note_commit"] == ""
    assert swap["signer"] == "bob@example.com" and swap["key"] == keys["bob"].fingerprint
    assert (swap["passed"], swap["failed"], swap["skipped"], swap["mode"], swap["dirty"]) == ("2", "0", "0", "local",
                                                                                                "false")
    assert docs["subject"] == '\'=HYPERLINK("http://evil.example","x")'
    assert docs["gpus"] == "'" + HOSTILE_GPU["name"] and docs["signer"] == "alice@example.com"
    assert base["commit"] == base["note_commit"] == base["made_on"] == history.base
    assert base["author"] == "Test Runner <runner@example.com>"
    assert base["date"] == git(history.root, "log", "-1", "--format=%cI", history.base)


@pytest.mark.slow
def test_in_toto_statements_pass_the_attestation_bindings(history):
    from google.protobuf import json_format
    from in_toto_attestation.predicates.test_result.v0 import test_result_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    lines = export(history.root, "--format", "in-toto").splitlines()
    assert len(lines) == 2  # bob's receipt and alice's; the never-valid commit has none
    subjects = {}
    for line in lines:
        data = json.loads(line)
        Statement.copy_from_pb(json_format.ParseDict(data, statement_pb2.Statement())).validate()
        predicate = json_format.ParseDict(data["predicate"], test_result_pb2.TestResult())
        assert predicate.result == "PASSED" and len(predicate.passed_tests) == 2
        assert data["predicateType"] == "https://in-toto.io/attestation/test-result/v0.1"
        signer = data["predicate"]["configuration"][0]["annotations"]["signer"]
        subjects[signer] = [s["digest"].get("gitCommit") for s in data["subject"] if "gitCommit" in s["digest"]]
    ids = git(history.root, "rev-list", "HEAD").split()
    assert subjects["bob@example.com"] == [ids[1]]
    assert subjects["alice@example.com"] == ids[2:]  # the commits it validates, the commit it was made on last


@pytest.mark.slow
def test_output_file_is_written_whole_and_a_refusal_leaves_it_alone(history, tmp_path):
    target = tmp_path / "out" / "audit.csv"
    assert export(history.root, "--format", "csv", "-o", str(target), "-n", "2") == ""
    assert target.read_text().splitlines()[0] == ",".join(CSV_HEADER) and len(target.read_text().splitlines()) == 3
    before = target.read_bytes()
    refused = run_tool(history.root, "export", "-o", str(target), "--trust-ref", "no-such-ref")
    assert refused.returncode == 2 and target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["audit.csv"]  # no temporary file left


@pytest.mark.slow
def test_filters_apply_to_the_export(history):
    since = (START + 3 * DAY).isoformat()
    commits = json.loads(export(history.root, "--since", since))["commits"]
    assert [c["subject"] for c in commits] == ["kernel: again", "kernel: swap"]
    assert len(json.loads(export(history.root, "HEAD~2..HEAD~1"))["commits"]) == 1
    assert len(json.loads(export(history.root, "--trust-ref", "main", "-n", "3"))["commits"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--format", "xml"], "unknown --format 'xml': choose one of json, csv, in-toto"),
    (["nothing..HEAD"], "cannot list the commits of 'nothing..HEAD'"),
    (["--since", "not a date"], "--since 'not a date' is not a date git understands"),
    (["--trust-ref", "no-such-ref"], "no-such-ref"),
    (["-n", "0"], "at least 1"),
])
def test_refusals_exit_2_with_one_clear_line(history, args, message):
    result = run_tool(history.root, "export", *args)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_unwritable_output_is_refused(history, tmp_path):
    result = run_tool(history.root, "export", "-o", str(tmp_path))  # a directory
    assert result.returncode == 2 and f"cannot write {tmp_path}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_help(tmp_path):
    result = run_tool(tmp_path, "export", "--help")
    assert result.returncode == 0
    for option in ("--format", "-o", "--since", "--until", "--first-parent", "--author", "--trust-ref"):
        assert option in result.stdout


def intoto_subjects(root: Path, *args: str) -> list[tuple[list[str], dict]]:
    """Each exported statement's gitCommit subjects, and its receipt descriptor's annotations."""
    found = []
    for line in export(root, "--format", "in-toto", *args).splitlines():
        data = json.loads(line)
        commits = [s["digest"]["gitCommit"] for s in data["subject"] if "gitCommit" in s["digest"]]
        found.append((commits, data["predicate"]["configuration"][0]["annotations"]))
    return found


@pytest.mark.slow
def test_a_commit_whose_code_the_run_did_not_test_is_no_subject_only_an_annotation(tmp_path, keys):
    team = Team(tmp_path / "team", keys, start=START)
    made_on = team.base
    changed = team.commit({"src/kernels.py": "def add(a, b):\n    return b + a\n"}, START + DAY, "kernel: swap")
    # A run on the base checkout with the kernel change uncommitted: it records the base commit,
    # the changed code's trees, and is attached to the commit that holds that code.
    team.attach(changed, "alice", START + DAY + DAY / 2, commit=made_on)
    [(commits, annotations)] = intoto_subjects(team.root, "-n", "1")
    assert commits == [changed] and annotations["commit"] == made_on


@pytest.mark.slow
def test_the_commit_a_run_tested_is_a_subject_and_one_not_here_is_not(tmp_path, keys):
    team = Team(tmp_path / "team", keys, start=START)
    team.attach("HEAD", "alice", START + DAY / 2)
    docs = team.commit({"README.md": "docs\n"}, START + DAY, "docs")
    [(commits, _)] = intoto_subjects(team.root, "-n", "1")
    assert commits == [docs, team.base]  # the commit it validates, then the commit it was made on
    team.attach("HEAD", "alice", START + DAY + DAY / 2, commit="e" * 40)  # a commit this clone lacks
    [(commits, annotations)] = intoto_subjects(team.root, "-n", "1")
    assert commits == [docs] and annotations["commit"] == "e" * 40
