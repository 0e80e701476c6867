"""``verify``'s verdicts as reports that CI systems show: JUnit XML, GitHub workflow commands,
and a Markdown summary.

The reports are built from the commit verdicts' JSON (the documented ``verify --json``
results: ``{"rev": ..., "commit": ..., "state": ..., "reasons": [...], "receipt": {...},
"shards": {...}}``), so the ``verify`` command and the GitHub Action's driver, which reads
that JSON from ``verify --format json``, render the very same report. This module sits in
the foundation layer and imports nothing of gitproof.verify.

Every string a report shows may come from a hostile note or commit (a subject, a signer
name, a test id inside a reason), so each format escapes for its own reader: control
characters and bidirectional overrides become ``%XX`` as on the terminal, then XML drops
what XML 1.0 cannot hold, a workflow command percent-encodes its line breaks so that one
line stays one command, and Markdown escapes its punctuation and HTML.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable
from xml.etree import ElementTree

from gitproof.errors import GitproofError
from gitproof.text import printable

FORMATS = ("text", "json", "junit", "github", "markdown")
VALIDATED, UNCHANGED, UNVALIDATED = "validated", "unchanged", "unvalidated"
STATES = (VALIDATED, UNCHANGED, UNVALIDATED)
SHORT = 10
MAX_MESSAGE = 2000  # one reason, as a report shows it
MAX_NAME = 200  # a subject, signer or GPU name

# What helps beyond running the tests again, by failure code.
HINTS = {
    "no-receipt": "If the tests already ran, the receipt may not have been pushed: run `git gpu-proof push` "
                  "in the clone that made it.",
    "signer-not-allowed": "The signer's key must be in allowed_signers on the trusted branch first (merge it "
                          "in its own pull request), or someone whose key is there runs the tests.",
    "no-trust": "Configure allowed_signers on the trusted branch ([tool.gpu_proof] allowed_signers).",
    "key-revoked": "The key is revoked: run the tests again and sign with a key that is not.",
}


class ReportError(GitproofError, ValueError):
    """The verdicts' JSON does not have the shape ``verify --json`` gives."""


# -- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class Part:
    """One scope of a commit: its whole fingerprint (``shard`` is None) or one shard."""

    shard: str | None
    state: str
    reasons: tuple[Reason, ...]
    signer: str | None = None
    gpu: str | None = None
    counts: Mapping[str, int] | None = None
    holder: str | None = None  # the commit whose note holds the validating receipt

    @property
    def ok(self) -> bool:
        return self.state in (VALIDATED, UNCHANGED)


@dataclass(frozen=True)
class CommitReport:
    """One verified revision, as every report shows it."""

    rev: str
    commit: str
    subject: str
    state: str
    reasons: tuple[Reason, ...]
    parts: tuple[Part, ...]  # one unsharded part, or one per shard

    @property
    def ok(self) -> bool:
        return self.state in (VALIDATED, UNCHANGED)

    @property
    def short(self) -> str:
        return self.commit[:SHORT]

    @property
    def sharded(self) -> bool:
        return any(part.shard is not None for part in self.parts)

    @property
    def title(self) -> str:
        """``0123456789 subject``, safe to show anywhere a line of text goes."""
        subject = _clip(printable(self.subject), MAX_NAME)
        return f"{self.short} {subject}" if subject else self.short

    def command(self, part: Part | None = None) -> str | None:
        """The command that makes a receipt for this commit (or one shard of it); None when valid."""
        if part is None:
            failing = [p for p in self.parts if not p.ok]
            if not failing:
                return None
            if self.sharded:
                runs = " && ".join(_run(p.shard) for p in failing)
                return f"git switch --detach {self.short} && {runs} && git switch - && git gpu-proof push"
            part = failing[0]
        if part.ok:
            return None
        return f"git switch --detach {self.short} && {_run(part.shard)} && git switch - && git gpu-proof push"

    def hints(self, part: Part | None = None) -> list[str]:
        """What else can fix it, beyond running the tests, for the failure codes of the commit (or part)."""
        parts = self.parts if part is None else (part,)
        codes = {reason.code for p in parts for reason in p.reasons}
        if part is None:
            codes |= {r.code for r in self.reasons}
        return [HINTS[code] for code in HINTS if code in codes]


def _run(shard: str | None) -> str:
    return "git gpu-proof run" + (f" --shard {shlex.quote(shard)}" if shard is not None else "")


def commit_reports(results: Iterable[Any], subjects: Mapping[str, str] | None = None) -> list[CommitReport]:
    """The reports of ``verify --json``'s ``results``; ``subjects`` maps commit ids to subjects."""
    subjects = subjects or {}
    reports = []
    for index, result in enumerate(results):
        where = f"results[{index}]"
        data = _mapping(result, where)
        commit = _string(data.get("commit"), f"{where}.commit")
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
            raise ReportError(f"{where}.commit is not a commit id")
        rev = data.get("rev")
        state = _state(data.get("state"), f"{where}.state")
        reasons = _reasons(data.get("reasons"), f"{where}.reasons")
        shards = data.get("shards")
        if shards is None:
            parts: tuple[Part, ...] = (_part(None, data, where),)
        else:
            parts = tuple(_part(_string(name, f"{where}.shards"), value, f"{where}.shards.{name}")
                          for name, value in _mapping(shards, f"{where}.shards").items())
        subject = subjects.get(commit, "")
        reports.append(CommitReport(rev if isinstance(rev, str) else commit, commit,
                                    subject if isinstance(subject, str) else "", state, reasons, parts))
    return reports


def _part(shard: str | None, value: Any, where: str) -> Part:
    data = _mapping(value, where)
    state = _state(data.get("state"), f"{where}.state")
    reasons = _reasons(data.get("reasons"), f"{where}.reasons")
    receipt = data.get("receipt")
    if state == UNVALIDATED or not isinstance(receipt, Mapping):
        return Part(shard, state, reasons)
    counts = receipt.get("counts")
    signer = receipt.get("signer")
    holder = receipt.get("note_commit")
    return Part(shard, state, reasons,
                signer=signer if isinstance(signer, str) else None,
                gpu=_gpu_text(receipt.get("gpus")),
                counts=({k: v for k, v in counts.items() if isinstance(k, str) and type(v) is int}
                        if isinstance(counts, Mapping) else None),
                holder=holder if isinstance(holder, str) else None)


def _gpu_text(gpus: Any) -> str | None:
    """``NVIDIA H100``, ``2x NVIDIA H100``, ``A, B`` or ``no GPU``, as ``verify``'s text says it."""
    if not isinstance(gpus, list):
        return None
    if not gpus:
        return "no GPU"
    names = [str(g.get("name")) if isinstance(g, Mapping) and isinstance(g.get("name"), str) else "?"
             for g in gpus]
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return ", ".join(names)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReportError(f"{where} is not an object")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ReportError(f"{where} is not a string")
    return value


def _state(value: Any, where: str) -> str:
    if value not in STATES:
        raise ReportError(f"{where} is not one of {', '.join(STATES)}")
    return str(value)


def _reasons(value: Any, where: str) -> tuple[Reason, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ReportError(f"{where} is not a list")
    reasons = []
    for i, item in enumerate(value):
        data = _mapping(item, f"{where}[{i}]")
        reasons.append(Reason(_string(data.get("code"), f"{where}[{i}].code"),
                              _string(data.get("message"), f"{where}[{i}].message")))
    return tuple(reasons)


# -- shared wording ---------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def safe(text: str, limit: int = MAX_MESSAGE) -> str:
    """Untrusted text on one line, with what could drive or disguise a display shown as %XX."""
    return _clip(printable(text), limit)


def counts_text(counts: Mapping[str, int] | None) -> str:
    if counts is None:
        return ""
    failed = counts.get("failed", 0) + counts.get("error", 0)
    return f"{counts.get('passed', 0)} passed, {failed} failed, {counts.get('skipped', 0)} skipped"


def _sum_counts(parts: Sequence[Part]) -> Mapping[str, int] | None:
    known = [p.counts for p in parts if p.counts is not None]
    if not known:
        return None
    total: dict[str, int] = {}
    for counts in known:
        for key, number in counts.items():
            total[key] = total.get(key, 0) + number
    return total


def _distinct(values: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def summary_line(reports: Sequence[CommitReport]) -> str:
    bad = sum(not r.ok for r in reports)
    noun = "commit" if len(reports) == 1 else "commits"
    if not reports:
        return "no commits to verify"
    if bad:
        return f"{bad} of {len(reports)} {noun} unvalidated"
    return f"{len(reports)} {noun} validated"


def part_label(part: Part) -> str:
    return f"shard {safe(part.shard, MAX_NAME)}" if part.shard is not None else "GPU code"


def failure_lines(report: CommitReport, part: Part | None = None) -> list[str]:
    """Why ``report`` (or one part of it) is unvalidated, and what to run: plain text lines."""
    reasons = part.reasons if part is not None else (report.reasons or
                                                     tuple(r for p in report.parts for r in p.reasons))
    lines = [f"{safe(r.code, MAX_NAME)}: {safe(r.message)}" for r in reasons] or ["unvalidated"]
    command = report.command(part)
    if command:
        lines.append(f"run: {command}")
    lines += [f"note: {hint}" for hint in report.hints(part)]
    return lines


def validated_text(part: Part, state: bool = True) -> str:
    """``validated, signed by alice@example.com, on NVIDIA H100, 2 passed, 0 failed, 0 skipped, receipt
    on 0123456789`` (without the state first when ``state`` is False)."""
    bits = [part.state] if state else []
    if part.signer is not None:
        bits.append(f"signed by {safe(part.signer, MAX_NAME)}")
    if part.gpu is not None:
        bits.append(f"on {safe(part.gpu, MAX_NAME)}")
    if part.counts is not None:
        bits.append(counts_text(part.counts))
    if part.holder is not None:
        bits.append(f"receipt on {safe(part.holder)[:SHORT]}")
    return ", ".join(bits)


# -- JUnit XML --------------------------------------------------------------------------------

# What XML 1.0 cannot hold even as a character reference: C0 controls but tab, newline and
# carriage return; surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def junit(reports: Sequence[CommitReport], trust_ref: str | None = None) -> str:
    """One ``<testsuite>`` for the run; one ``<testcase>`` per commit, or per shard of a sharded one.

    A test case's name is the commit's short id and subject (and the shard); an unvalidated one
    carries a ``<failure>`` whose message is the reasons and whose text adds the command to run.
    """
    cases: list[ElementTree.Element] = []
    for report in reports:
        for part in report.parts:
            name = report.title + (f" [{part_label(part)}]" if part.shard is not None else "")
            case = ElementTree.Element("testcase", classname="gpu-proof", name=xml_safe(name), time="0")
            if part.ok:
                out = ElementTree.SubElement(case, "system-out")
                out.text = xml_safe(f"{report.commit}: {validated_text(part)}")
            else:
                lines = failure_lines(report, part)
                reasons = "; ".join(line for line in lines if not line.startswith(("run: ", "note: ")))
                failure = ElementTree.SubElement(
                    case, "failure", type=xml_safe(part.reasons[0].code if part.reasons else UNVALIDATED),
                    message=xml_safe(_clip(f"{report.short} unvalidated: {reasons}", MAX_MESSAGE)))
                failure.text = xml_safe("\n".join([f"{report.commit} unvalidated ({part_label(part)})",
                                                   *lines]))
            cases.append(case)
    failures = sum(1 for case in cases if case.find("failure") is not None)
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0", "skipped": "0", "time": "0"}
    root = ElementTree.Element("testsuites", {"name": "git gpu-proof verify", **counts})
    suite = ElementTree.SubElement(root, "testsuite", {"name": "gpu-proof", **counts})
    if trust_ref is not None:
        properties = ElementTree.SubElement(suite, "properties")
        ElementTree.SubElement(properties, "property", name="trust-ref", value=xml_safe(safe(trust_ref)))
    suite.extend(cases)
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


# -- GitHub workflow commands -----------------------------------------------------------------


def command_data(text: str) -> str:
    """A workflow command's message: its line breaks encoded, so that it stays one line."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def command_property(text: str) -> str:
    """A workflow command's property value (``title=``): also ``:`` and ``,``, which end it."""
    return command_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(kind: str, message: str, title: str | None = None) -> str:
    properties = f" title={command_property(title)}" if title else ""
    return f"::{kind}{properties}::{command_data(message)}"


def github(reports: Sequence[CommitReport], warnings: Iterable[str] = (),
           severity: Callable[[CommitReport], str] | None = None) -> str:
    """Workflow commands: ``::error`` (or what ``severity`` says) per unvalidated commit, a
    ``::warning`` per accepted warning, and one ``::notice`` when everything is validated.

    Every line is a command this function wrote; untrusted text only ever lands in a
    command's message or title, escaped, so it cannot start a command of its own."""
    lines = [workflow_command("warning", safe(w), "gpu-proof: warning") for w in warnings]
    for report in reports:
        if report.ok:
            continue
        kind = severity(report) if severity else "error"
        lines.append(workflow_command(kind, "\n".join([report.title, *failure_lines(report)]),
                                      f"gpu-proof: {report.short} unvalidated"))
    if reports and all(r.ok for r in reports):
        lines.append(workflow_command("notice", summary_line(reports), "gpu-proof"))
    return "".join(line + "\n" for line in lines)


# -- Markdown ---------------------------------------------------------------------------------

_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
# Backslash-escaped: what could start emphasis, code, a link or image, strike-through, a heading, or
# end a table cell. (Text from notes never starts a line here, so list markers need nothing.)
_MD_PUNCTUATION = set("\\`*_{}[]()#!|~")
ICONS = {VALIDATED: "✅", UNCHANGED: "✅", UNVALIDATED: "❌"}


def md_text(text: str, limit: int = MAX_MESSAGE) -> str:
    """Untrusted text as literal Markdown: on one line, no HTML, no links, no table breaks."""
    out = []
    for ch in safe(text, limit):
        if ch in _MD_ENTITIES:
            out.append(_MD_ENTITIES[ch])
        elif ch in _MD_PUNCTUATION:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def md_code(text: str) -> str:
    """A code span that holds ``text`` literally (not for a table cell, where ``|`` ends it)."""
    text = safe(text)
    longest = max((len(run) for run in re.findall("`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _verdict_cell(report: CommitReport) -> str:
    cell = f"{ICONS[report.state]} {report.state}"
    if report.sharded:
        shards = ", ".join(f"{md_text(p.shard or '', MAX_NAME)} {p.state}" for p in report.parts)
        cell += f" (shards: {shards})"
    return cell


def markdown(reports: Sequence[CommitReport], trust_ref: str | None = None, heading: str | None = None,
             context: Iterable[str] = ()) -> str:
    """A summary table, one row per commit (commit, verdict, signer, GPU, tests), then for each
    unvalidated commit the reasons and the command to run. ``context`` lines are Markdown we wrote."""
    lines = [f"### {heading or 'GPU receipts'}: {summary_line(reports)}", ""]
    lines += [*context, *([""] if context else [])]
    if trust_ref is not None:
        lines += [f"Policy and allowed signers read from {md_code(trust_ref)}.", ""]
    if reports:
        lines += ["| Commit | Verdict | Signer | GPU | Tests |", "| --- | --- | --- | --- | --- |"]
    for report in reports:
        valid = [p for p in report.parts if p.ok]
        signers = ", ".join(md_text(s, MAX_NAME) for s in _distinct(p.signer for p in valid))
        gpus = ", ".join(md_text(g, MAX_NAME) for g in _distinct(p.gpu for p in valid))
        tests = counts_text(_sum_counts(valid))
        commit = f"`{report.short}` {md_text(report.subject, MAX_NAME)}".rstrip()
        lines.append(f"| {commit} | {_verdict_cell(report)} | {signers or '-'} | {gpus or '-'} | {tests or '-'} |")
    failing = [r for r in reports if not r.ok]
    for report in failing:
        lines += ["", f"#### ❌ `{report.short}` {md_text(report.subject, MAX_NAME)}".rstrip(), ""]
        for part in report.parts:
            if part.ok:
                continue
            where = f"{md_text(part_label(part))}: " if part.shard is not None else ""
            reasons = part.reasons or (Reason(UNVALIDATED, "unvalidated"),)
            lines += [f"- {where}{md_code(r.code)}: {md_text(r.message)}" for r in reasons]
        command = report.command()
        if command:
            lines.append(f"- Run: {md_code(command)}")
        lines += [f"- {hint}" for hint in report.hints()]  # our own Markdown
    return "\n".join(lines) + "\n"


def log_lines(reports: Sequence[CommitReport]) -> list[str]:
    """One plain line per commit, for a CI log."""
    lines = []
    for report in reports:
        if report.ok:
            detail = "; ".join((f"{part_label(p)}: " if p.shard is not None else "") + validated_text(p, False)
                               for p in report.parts)
        else:
            detail = "; ".join(line for line in failure_lines(report) if not line.startswith("note: "))
        lines.append(f"{report.title} - {report.state}: {detail}")
    return lines


def render(fmt: str, reports: Sequence[CommitReport], trust_ref: str | None = None,
           warnings: Iterable[str] = ()) -> str:
    """``junit``, ``github`` or ``markdown`` (``text`` and ``json`` are the CLI's own)."""
    if fmt == "junit":
        return junit(reports, trust_ref)
    if fmt == "github":
        return github(reports, warnings)
    if fmt == "markdown":
        return markdown(reports, trust_ref)
    raise ValueError(f"no report format {fmt!r}")
