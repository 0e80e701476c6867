"""`verify --format junit|github|markdown`: reports that CI systems show, from real verdicts.

The verdicts come from real repositories with receipts signed by the real ssh-keygen; the
JUnit XML is read back with junitparser, a JUnit consumer library, not with our own parser.
Hostile text (commit subjects, signer names, reasons) must come out escaped in every format.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from xml.etree import ElementTree

import junitparser
import pygit2
import pytest

from gitproof import report
from gitproof.cli.verify import Format
from gitproof.git import subject
from gitproof.receipt import TestResult
from tests.helpers import Key, commit_all, git, make_project_repo, write_files
from tests.receipts import POLICY, Project
from tests.verify.test_shards import SHARDS, Suite

BIN = str(Path(sys.executable).parent)
HOSTILE = ("evil | <script>alert(1)</script> [x](http://e.example) ![i](http://t.example/p.png) `tick` "
           "&amp; \"q\" ]]> \x00\x07\x1b[31m\x0b\ufffe\u202e bidi\n::error::injected\r\n##[error]v1 %0A")


def gp(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["git", "gpu-proof", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


class History:
    """initial (no receipt) <- kernel (receipt) <- docs (unchanged) <- change (unvalidated)."""

    def __init__(self, root: Path, key: Key) -> None:
        make_project_repo(root)
        self.project = Project(root, key)
        self.root = root
        self.initial = git(root, "rev-parse", "HEAD")
        write_files(root, {"src/kernels.py": "def add(a, b):\n    return a + b + 0\n"})
        self.kernel = commit_all(root, "kernel: faster add")
        self.project.attach(tests=[TestResult("tests/t.py::a", "passed", 0.1),
                                   TestResult("tests/t.py::b", "passed", 0.1),
                                   TestResult("tests/t.py::c", "skipped", 0.0)])
        write_files(root, {"README.md": "docs\n"})
        self.docs = commit_all(root, "docs only")
        write_files(root, {"src/kernels.py": "def add(a, b):\n    return a - b\n"})
        self.change = commit_all(root, "kernel: subtract instead")

    def results(self) -> list[dict]:
        policy = replace(POLICY, allow_skipped=True)
        return [{"rev": c, **self.project.verify(c, policy).to_json()} for c in (self.change, self.docs, self.kernel)]

    def subjects(self) -> dict[str, str]:
        repo = pygit2.Repository(str(self.root))
        return {c: subject(repo[c]) for c in (self.initial, self.kernel, self.docs, self.change)}

    def reports(self) -> list[report.CommitReport]:
        return report.commit_reports(self.results(), self.subjects())

    def hostile_reports(self) -> list[report.CommitReport]:
        """The same verdicts, with hostile text wherever a note or a commit can put some."""
        results = self.results()
        results[0]["reasons"][0]["message"] = HOSTILE
        results[2]["receipt"]["signer"] = HOSTILE
        results[2]["receipt"]["gpus"][0]["name"] = HOSTILE
        return report.commit_reports(results, {**self.subjects(), self.change: HOSTILE})


@pytest.fixture
def history(tmp_path: Path, keygen) -> History:
    return History(tmp_path / "project", keygen("ed25519"))


def test_the_cli_formats_are_the_reports_formats():
    assert [f.value for f in Format] == list(report.FORMATS)


def test_reports_carry_what_the_verdicts_say(history):
    change, docs, kernel = history.reports()
    assert (change.state, docs.state, kernel.state) == ("unvalidated", "unchanged", "validated")
    assert [r.code for r in change.reasons] == ["fingerprint-changed"]
    assert change.subject == "kernel: subtract instead" and change.short == history.change[:10]
    (part,) = kernel.parts
    assert part.signer == "alice@example.com" and part.gpu == "NVIDIA H100 80GB HBM3"
    assert report.counts_text(part.counts) == "2 passed, 0 failed, 1 skipped"
    assert docs.parts[0].holder == history.kernel
    assert change.command() == (f"git switch --detach {history.change[:10]} && git gpu-proof run "
                                "&& git switch - && git gpu-proof push")
    assert kernel.command() is None


# -- JUnit ------------------------------------------------------------------------------------


def parse_junit(text: str, tmp_path: Path) -> junitparser.TestSuite:
    path = tmp_path / "report.xml"
    path.write_text(text, encoding="utf-8")
    xml = junitparser.JUnitXml.fromfile(str(path))
    suites = list(xml) if isinstance(xml, junitparser.JUnitXml) else [xml]
    assert len(suites) == 1, "one <testsuite> for the run"
    return suites[0]


def test_junit_has_a_case_per_commit_and_names_each_failing_one(history, tmp_path):
    suite = parse_junit(report.junit(history.reports(), trust_ref="refs/remotes/origin/main"), tmp_path)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (3, 1, 0, 0)
    cases = {case.name: case for case in suite}
    assert set(cases) == {f"{history.change[:10]} kernel: subtract instead",
                          f"{history.docs[:10]} docs only", f"{history.kernel[:10]} kernel: faster add"}
    failing = cases[f"{history.change[:10]} kernel: subtract instead"]
    assert not failing.is_passed
    (failure,) = failing.result
    assert isinstance(failure, junitparser.Failure)
    assert failure.type == "fingerprint-changed"
    assert "GPU code changed since the receipt" in failure.message and "src/kernels.py" in failure.message
    assert f"run: git switch --detach {history.change[:10]} && git gpu-proof run" in failure.text
    assert all(cases[name].is_passed for name in cases if name != failing.name)
    assert "signed by alice@example.com" in cases[f"{history.kernel[:10]} kernel: faster add"].system_out
    assert suite.properties is not None and {p.name: p.value for p in suite.properties()} == {
        "trust-ref": "refs/remotes/origin/main"}


def test_junit_holds_hostile_text_as_text(history, tmp_path):
    text = report.junit(history.hostile_reports())
    ElementTree.fromstring(text.encode("utf-8"))  # well-formed XML 1.0
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]", text)
    suite = parse_junit(text, tmp_path)
    assert (suite.tests, suite.failures) == (3, 1)
    (failing,) = [case for case in suite if not case.is_passed]
    assert failing.name.startswith(history.change[:10])
    # Shown as the terminal shows it: controls and the bidi override as %XX, markup as text.
    for name in (failing.name, failing.result[0].message):
        assert "<script>alert(1)</script>" in name and "%1B[31m" in name and "%E2%80%AE" in name
        assert "%0A::error::injected%0D%0A##[error]v1 %250A" in name and "\n" not in name
    assert "\ufffd" in failing.name  # U+FFFE, which XML 1.0 cannot hold
    validated = next(case for case in suite if case.name.startswith(history.kernel[:10]))
    assert "signed by evil | <script>" in validated.system_out


def test_junit_of_a_sharded_commit_has_a_case_per_shard(tmp_path, keygen):
    suite = Suite(tmp_path / "suite", keygen("ed25519"))
    suite.commit({"src/kernels/add.py": "def add(a, b):\n    return b + a\n"}, "kernels: swap")
    suite.attach("kernels")
    verdict = suite.verify()
    head = git(suite.root, "rev-parse", "HEAD")
    reports = report.commit_reports([{"rev": "HEAD", **verdict.to_json()}], {head: "kernels: swap"})
    parsed = parse_junit(report.junit(reports), tmp_path)
    cases = {case.name: case for case in parsed}
    assert set(cases) == {f"{head[:10]} kernels: swap [shard {name}]" for name in SHARDS}
    assert cases[f"{head[:10]} kernels: swap [shard kernels]"].is_passed
    io = cases[f"{head[:10]} kernels: swap [shard io]"]
    assert not io.is_passed and "git gpu-proof run --shard io" in io.result[0].text
    markdown = report.markdown(reports)
    assert "❌ unvalidated (shards: kernels validated, io unvalidated)" in markdown
    assert "- shard io: `no-receipt`: no receipt" in markdown
    assert f"- Run: `git switch --detach {head[:10]} && git gpu-proof run --shard io && git switch -" in markdown


# -- GitHub workflow commands ---------------------------------------------------------------


def runner_parse(line: str) -> tuple[str, dict[str, str], str] | None:
    """A workflow command line read the way the Actions runner reads one (``::name props::data``)."""
    line = line.lstrip()
    if not line.startswith("::"):
        return None
    end = line.find("::", 2)
    if end < 0:
        return None
    head, data = line[2:end], line[end + 2:]
    name, _, props = head.partition(" ")
    unescape = lambda s: (s.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":")  # noqa: E731
                          .replace("%2C", ",").replace("%25", "%"))
    properties = dict(p.split("=", 1) for p in props.split(",") if "=" in p)
    return name, {k: unescape(v) for k, v in properties.items()}, unescape(data)


def test_github_errors_for_each_unvalidated_commit_and_nothing_else(history):
    lines = report.github(history.reports()).splitlines()
    assert len(lines) == 1
    name, props, data = runner_parse(lines[0])
    assert name == "error" and props == {"title": f"gpu-proof: {history.change[:10]} unvalidated"}
    assert data.splitlines()[0] == f"{history.change[:10]} kernel: subtract instead"
    assert "fingerprint-changed: GPU code changed since the receipt" in data
    assert f"run: git switch --detach {history.change[:10]}" in data


def test_github_notices_when_everything_is_validated(history):
    reports = [r for r in history.reports() if r.ok]
    (line,) = report.github(reports).splitlines()
    assert runner_parse(line) == ("notice", {"title": "gpu-proof"}, "2 commits validated")


def test_hostile_text_cannot_start_a_workflow_command(history):
    text = report.github(history.hostile_reports(), warnings=["skipped: tests/x.py::a\n::add-mask::x,y:z"])
    lines = text.splitlines()
    assert len(lines) == 2 and text.endswith("\n") and "\r" not in text
    parsed = [runner_parse(line) for line in lines]
    assert [p[0] for p in parsed] == ["warning", "error"]
    assert parsed[0][2] == "skipped: tests/x.py::a%0A::add-mask::x,y:z"  # the hostile newline as text
    title, data = parsed[1][1]["title"], parsed[1][2]
    assert title == f"gpu-proof: {history.change[:10]} unvalidated"
    # Every line of the message is ours: hostile line breaks stay %0A, as text.
    first, reason, run = data.splitlines()
    assert first.startswith(history.change[:10]) and "%0A::error::injected%0D%0A##[error]v1 %250A" in first
    assert reason.startswith("fingerprint-changed: evil | <script>") and run.startswith("run: git switch")


def test_workflow_command_escaping():
    assert report.command_data("50%\r\nx") == "50%25%0D%0Ax"
    assert report.command_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert report.workflow_command("error", "m::n", "t: u,v") == "::error title=t%3A u%2Cv::m::n"


# -- Markdown ---------------------------------------------------------------------------------


def cells(row: str) -> list[str]:
    """A GFM table row's cells: split on the pipes that are not escaped."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def test_markdown_has_a_row_per_commit_then_reasons_and_the_command(history):
    text = report.markdown(history.reports(), trust_ref="refs/remotes/origin/main")
    lines = text.splitlines()
    assert lines[0] == "### GPU receipts: 1 of 3 commits unvalidated"
    header = lines.index("| Commit | Verdict | Signer | GPU | Tests |")
    rows = [cells(line) for line in lines[header + 2:header + 5]]
    assert rows == [
        [f"`{history.change[:10]}` kernel: subtract instead", "❌ unvalidated", "-", "-", "-"],
        [f"`{history.docs[:10]}` docs only", "✅ unchanged", "alice@example.com", "NVIDIA H100 80GB HBM3",
         "2 passed, 0 failed, 1 skipped"],
        [f"`{history.kernel[:10]}` kernel: faster add", "✅ validated", "alice@example.com",
         "NVIDIA H100 80GB HBM3", "2 passed, 0 failed, 1 skipped"],
    ]
    assert lines[header + 5] == ""
    failure = "\n".join(lines[header + 6:])
    assert f"#### ❌ `{history.change[:10]}` kernel: subtract instead" in failure
    assert "- `fingerprint-changed`: GPU code changed since the receipt on" in failure
    assert f"- Run: `git switch --detach {history.change[:10]} && git gpu-proof run" in failure
    assert "Policy and allowed signers read from `refs/remotes/origin/main`." in text


def test_markdown_escapes_hostile_text(history):
    text = report.markdown(history.hostile_reports())
    row = next(line for line in text.splitlines() if line.startswith(f"| `{history.change[:10]}`"))
    assert len(cells(row)) == 5, "the subject's | does not add a column"
    signed = next(line for line in text.splitlines() if line.startswith(f"| `{history.kernel[:10]}`"))
    assert len(cells(signed)) == 5 and cells(signed)[2] == cells(signed)[3], "signer and GPU name escaped alike"
    for raw in ("<script>", "](http", "![i]", "`tick`", "\x1b", "\u202e", "\r"):
        assert raw not in text
    assert "&lt;script&gt;" in row and "\\[x\\]\\(http://e.example\\)" in row and "\\`tick\\`" in row
    assert "&amp;amp;" in row and "evil \\|" in row and "%0A::error::injected" in row
    assert all(line == "" or line.startswith(("#", "|", "-")) for line in text.splitlines()), \
        "a subject's line break never starts a line of its own"


def test_md_code_fences_backticks():
    assert report.md_code("a`b") == "``a`b``"
    assert report.md_code("`x") == "`` `x ``"


# -- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize("results, says", [
    ([1], "results[0] is not an object"),
    ([{"commit": "x" * 40, "state": "validated"}], "results[0].commit is not a commit id"),
    ([{"commit": "a" * 40, "state": "bogus"}], "results[0].state is not one of"),
    ([{"commit": "a" * 40, "state": "unvalidated", "reasons": [{"code": 1}]}], "reasons[0].code is not a string"),
    ([{"commit": "a" * 40, "state": "unvalidated", "shards": []}], "results[0].shards is not an object"),
    ([{"commit": "a" * 40, "state": "unvalidated", "reasons": "no"}], "results[0].reasons is not a list"),
])
def test_malformed_results_are_one_clear_error(results, says):
    with pytest.raises(report.ReportError, match=re.escape(says)):
        report.commit_reports(results)


def test_odd_receipt_fields_do_not_break_a_report():
    results = [{"commit": "a" * 40, "state": "validated", "reasons": [],
                "receipt": {"signer": 5, "gpus": [{"name": 3}, "x"], "counts": {"passed": "2", "failed": 1}}}]
    (row,) = report.commit_reports(results)
    part = row.parts[0]
    assert part.signer is None and part.gpu == "2x ?" and part.counts == {"failed": 1}
    assert "| `aaaaaaaaaa` | ✅ validated | - | 2x ? | 0 passed, 1 failed, 0 skipped |" in report.markdown([row])


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli_history(history: History) -> History:
    """The history with its policy committed, so that the command can verify it."""
    write_files(history.root, {"pyproject.toml": '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\n'})
    git(history.root, "add", "-A")
    git(history.root, "commit", "-q", "-m", "policy")  # no GPU code change: HEAD stays unvalidated
    history.head = git(history.root, "rev-parse", "HEAD")
    return history


@pytest.mark.slow
def test_verify_formats_from_the_command(cli_history, tmp_path):
    root, revs = cli_history.root, ("--allow-skipped", "HEAD", cli_history.kernel)
    text = gp(root, "verify", *revs)
    assert gp(root, "verify", "--format", "text", *revs).stdout == text.stdout
    assert text.returncode == 1 and text.stdout.splitlines()[0].startswith(cli_history.head[:10])
    as_json = gp(root, "verify", "--json", *revs)
    assert gp(root, "verify", "--format", "json", *revs).stdout == as_json.stdout
    assert gp(root, "verify", "--json", "--format", "json", *revs).stdout == as_json.stdout
    assert json.loads(as_json.stdout)["ok"] is False

    junit = gp(root, "verify", "--format", "junit", "--trust-ref", "refs/heads/main", *revs)
    assert junit.returncode == 1, junit.stderr
    suite = parse_junit(junit.stdout, tmp_path)
    assert (suite.tests, suite.failures) == (2, 1)
    (failing,) = [case.name for case in suite if not case.is_passed]
    assert failing == f"{cli_history.head[:10]} policy"

    github = gp(root, "verify", "--format", "github", *revs)
    assert github.returncode == 1
    warning, error = github.stdout.splitlines()
    assert warning.startswith("::warning title=gpu-proof%3A warning::accepted 1 skipped test(s)")
    assert error.startswith(f"::error title=gpu-proof%3A {cli_history.head[:10]} unvalidated::")

    markdown = gp(root, "verify", "--format", "markdown", "--allow-skipped", cli_history.kernel)
    assert markdown.returncode == 0 and "### GPU receipts: 1 commit validated" in markdown.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args, says", [
    (["--json", "--format", "junit"], "--json and --format junit ask for different outputs"),
    (["--format", "xml"], "Invalid value for '--format'"),
])
def test_conflicting_or_unknown_formats_are_usage_errors(cli_history, args, says):
    result = gp(cli_history.root, "verify", *args)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_github_format_sends_accepted_warnings_as_commands(cli_history):
    result = gp(cli_history.root, "verify", "--format", "github", "--allow-skipped", cli_history.kernel)
    assert result.returncode == 0, result.stderr
    kinds = [runner_parse(line)[0] for line in result.stdout.splitlines()]
    assert kinds == ["warning", "notice"] and "tests/t.py::c" in result.stdout
    assert "gpu-proof: warning:" not in result.stderr
