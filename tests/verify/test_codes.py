"""The failure codes are a documented JSON API: the enum and the docs' tables list the same codes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gitproof.verify import Code, Failure

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUN_ONLY = {Code.POLICY}  # `run`'s own policy check: the policy could not be read at all


def documented(page: str, heading: str) -> set[str]:
    text = (DOCS / page).read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {code for row in rows for code in re.findall(r"`([a-z-]+)`", row)}


@pytest.mark.parametrize("page, heading", [("policy.md", "## Failure codes"), ("cli.md", "### Failure codes")])
def test_the_docs_list_exactly_the_codes(page, heading):
    assert documented(page, heading) == {code.value for code in Code} - RUN_ONLY


def test_a_failure_is_written_as_its_code_string():
    failure = Failure(Code.TOO_OLD, "receipt is 31 days old")
    assert failure.to_json() == {"code": "too-old", "message": "receipt is 31 days old"}
    assert json.dumps(failure.to_json()) == '{"code": "too-old", "message": "receipt is 31 days old"}'
    assert f"{failure.code}: x" == "too-old: x" and failure.code == "too-old"
