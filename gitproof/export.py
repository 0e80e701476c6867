"""The audit trail of a range of commits, as records `log --json` and `export` write.

* ``commit_record``: one commit as ``log --json`` lists it (the verdict, plus the commit's
  date, author and subject, and the validating receipt(s) in brief);
* ``audit_record``: the same, plus the audit status (gitproof.verify.audit);
* ``render``: an audited range as JSON, CSV (one row per commit, cells neutralised against
  spreadsheet formulas) or in-toto (JSON Lines, one Statement v1 per receipt that
  validates, or validated, a commit of the range).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pygit2

from gitproof.git import author_of, commit_date, subject
from gitproof.receipt import SignedReceipt
from gitproof.verify import CommitVerdict
from gitproof.verify.audit import VALID, WAS_VALID, Auditor, CommitAudit, RunSummary, validating_runs

FORMATS = ("json", "csv", "in-toto")
CSV_HEADER = ("commit", "date", "author", "subject", "status", "signer", "key", "gpus", "passed", "failed",
              "skipped", "mode", "dirty", "note_commit", "made_on")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may read as a formula


@dataclass(frozen=True)
class Audited:
    """One commit of the range: the commit, the audit verifier's verdict, and its audit."""

    commit: pygit2.Commit
    verdict: CommitVerdict
    audit: CommitAudit


def audit_commits(auditor: Auditor, commits: list[pygit2.Commit]) -> list[Audited]:
    verdicts = auditor.verifier.verify_all(commits)
    return [Audited(c, v, auditor.audit_verdict(c, v)) for c, v in zip(commits, verdicts, strict=True)]


def commit_record(commit: pygit2.Commit, verdict: CommitVerdict) -> dict[str, Any]:
    """The verdict's JSON with the commit's date, author and subject, and ``runs``: the
    receipt(s) that validate it, in brief (one per scope)."""
    return {**verdict.to_json(), "subject": subject(commit), "date": commit_date(commit),
            "author": author_of(commit), "runs": [run.to_json() for run in validating_runs(verdict)]}


def audit_record(audited: Audited) -> dict[str, Any]:
    return {**commit_record(audited.commit, audited.verdict), "status": audited.audit.status,
            "audit": audited.audit.to_json()}


def render(fmt: str, audited: list[Audited], repo: pygit2.Repository) -> bytes:
    """The range in one of FORMATS; ValueError for any other."""
    if fmt == "json":
        return as_json(audited)
    if fmt == "csv":
        return as_csv(audited)
    if fmt == "in-toto":
        return as_intoto(audited, repo)
    raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")


def as_json(audited: list[Audited]) -> bytes:
    data = {"commits": [audit_record(a) for a in audited]}
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


# -- CSV ---------------------------------------------------------------------------------------


def as_csv(audited: list[Audited]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in audited:
        writer.writerow([neutralised(cell) for cell in csv_row(row)])
    return out.getvalue().encode("utf-8")


def csv_row(audited: Audited) -> list[str]:
    """One row per commit; a sharded commit's receipts are joined with "; " (counts summed)."""
    commit = audited.commit
    author = author_of(commit)
    runs = [run for run in (scope.run for scope in audited.audit.scopes) if run is not None]
    return [str(commit.id), commit_date(commit) or "", f"{author['name']} <{author['email']}>", subject(commit),
            audited.audit.status, _joined(r.signer for r in runs), _joined(r.key for r in runs),
            _joined(g for r in runs for g in r.gpus), *_counts(runs),
            _joined(r.mode for r in runs), _dirty(runs), _joined(r.note_commit for r in runs),
            _joined(r.made_on for r in runs)]


def neutralised(cell: str) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe
    (subjects, signers and GPU names are written by whoever made the commit or the receipt)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _joined(values: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v))


def _counts(runs: list[RunSummary]) -> list[str]:
    if not runs:
        return ["", "", ""]
    return [str(sum(r.counts.get(outcome, 0) for r in runs)) for outcome in ("passed", "failed", "skipped")]


def _dirty(runs: list[RunSummary]) -> str:
    return "" if not runs else "true" if any(r.dirty for r in runs) else "false"


# -- in-toto -----------------------------------------------------------------------------------


def as_intoto(audited: list[Audited], repo: pygit2.Repository) -> bytes:
    """JSON Lines: one in-toto Statement v1 per distinct receipt behind a valid or was-valid commit,
    its subjects the commits of the range it validates, then the commit it was made on when the run
    tested that commit's code (intoto.tested_commits); otherwise that commit is only the receipt
    descriptor's ``commit`` annotation."""
    from gitproof import intoto

    lines = []
    for signed, commits in _receipts_by_identity(audited).values():
        commits += intoto.tested_commits(repo, signed.receipt, [signed.receipt.commit])
        stmt = intoto.statement(signed, intoto.stored_bytes(signed), list(dict.fromkeys(commits)),
                                blob_paths=intoto.file_paths(repo, signed.receipt.trees))
        lines.append(json.dumps(stmt, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


def _receipts_by_identity(audited: list[Audited]) -> dict[str, tuple[SignedReceipt, list[str]]]:
    found: dict[str, tuple[SignedReceipt, list[str]]] = {}
    for row in audited:
        if row.audit.status not in (VALID, WAS_VALID):
            continue
        for scope in row.audit.scopes:
            signed = scope.receipt.signed if scope.receipt else None
            if signed is not None:
                found.setdefault(signed.identity, (signed, []))[1].append(str(row.commit.id))
    return found
