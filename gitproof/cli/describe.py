"""Human-readable lines for verdicts and receipts, shared by verify, show, log and status."""
from __future__ import annotations

import json
from typing import Any

from gitproof.cli.common import short, styled
from gitproof.gpu import milliseconds as _milliseconds
from gitproof.receipt import Receipt, TestResult, check_outcome
from gitproof.text import printable, terminal_safe
from gitproof.verify import UNCHANGED, VALIDATED, CommitVerdict, ReceiptVerdict


def gpu_text(receipt: Receipt) -> str:
    if not receipt.gpus:
        return "no GPU"
    names = [printable(str(g.get("name", "?"))) for g in receipt.gpus]
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return ", ".join(names)


def facts_text(receipt: Receipt) -> str:
    """Where the device facts came from, and the confidential-computing state when known."""
    facts = receipt.gpu_facts
    if not facts:
        return ""
    source = printable(str(facts.get("source", "?")))
    parts = ["no source of GPU facts answered" if source == "none" else f"facts from {source}"]
    cc = facts.get("confidential_computing")
    if isinstance(cc, dict) and "feature" in cc:
        parts.append(f"confidential computing {printable(str(cc['feature']))}")
    visible = facts.get("cuda_visible_devices")
    if isinstance(visible, str):
        parts.append(f"CUDA_VISIBLE_DEVICES={printable(visible)}")
    return " (" + "; ".join(parts) + ")"


USE_LABELS = {True: "gpu", False: "NO-GPU", None: "gpu?"}


def use_labels(receipt: Receipt) -> dict[str, str]:
    """``gpu`` / ``NO-GPU`` / ``gpu?`` per test node id; empty when the receipt records no use."""
    if not receipt.gpu_use:
        return {}
    used = {u.get("test"): u.get("used") for u in receipt.gpu_use}
    return {t.nodeid: USE_LABELS.get(used.get(t.nodeid), "gpu?") for t in receipt.tests}


def use_summary(labels: dict[str, str]) -> str:
    counts = list(labels.values())
    return (f"{counts.count('gpu')} used a GPU, {counts.count('NO-GPU')} did not, "
            f"{counts.count('gpu?')} unknown (self-reported by the test process)")


def kernel_notes(receipt: Receipt) -> dict[str, str]:
    """``5 kernels, 0.020 ms on GPU`` per test whose record carries kernel evidence."""
    notes = {}
    for use in receipt.gpu_use:
        kernels = use.get("kernels")
        if not isinstance(kernels, dict):
            continue
        if kernels.get("tracer") is None:
            notes[use["test"]] = "kernels not traced"
            continue
        launches, copies = kernels.get("launches", 0), (kernels.get("memcpy") or {}).get("count", 0)
        text = f"{launches} kernel{'' if launches == 1 else 's'}"
        if launches:
            text += f", {_milliseconds(kernels.get('gpu_time_ns', 0))} ms on GPU"
        notes[use["test"]] = text + (f", {copies} cop{'y' if copies == 1 else 'ies'}" if copies else "")
    return notes


def kernel_summary(receipt: Receipt) -> str | None:
    """Which tracer recorded kernels, and how many tests launched any; None when none did."""
    traced = [u["kernels"] for u in receipt.gpu_use if isinstance(u.get("kernels"), dict)]
    if not traced:
        return None
    tracers = sorted({printable(str(k["tracer"])) for k in traced if k.get("tracer") is not None})
    if not tracers:
        error = next((k.get("error") for k in traced if isinstance(k.get("error"), str)), "unknown reason")
        return f"not traced: {printable(error)}"
    launched = sum(1 for k in traced if k.get("launches"))
    return f"{launched} of {len(receipt.tests)} tests launched GPU kernels (traced by {', '.join(tracers)})"


ATTESTATION_KEY = "attestation"


def _test_line(test: TestResult, labels: dict[str, str], kernels: dict[str, str] | None = None) -> str:
    label = labels.get(test.nodeid, "")
    column = f"{label:6} " if label else ""
    note = (kernels or {}).get(test.nodeid)
    return f"    {test.outcome:8} {test.duration:8.3f}s  {column}{printable(test.nodeid)}" + (
        f"  ({note})" if note else "")


def check_lines(receipt: Receipt) -> dict[str, list[str]]:
    """The lines of each test's ``gpu_proof_check`` records, by node id, in receipt order."""
    lines: dict[str, list[str]] = {}
    for check in receipt.checks:
        lines.setdefault(check["test"], []).append(_check_line(check))
    return lines


def _check_line(check: dict[str, Any]) -> str:
    """``check passed  name  max abs err 1e-07, max rel err 2e-07 (rtol 1e-05, atol 1e-08)``,
    then the metadata, and for a check that did not pass its message, on one line."""
    outcome = check_outcome(check)
    text = f"      check {outcome:6}  {printable(check['name'])}"
    errors = ", ".join(f"{label} {_number(check[key])}" for key, label in
                       (("max_abs_err", "max abs err"), ("max_rel_err", "max rel err")) if key in check)
    tolerances = ", ".join(f"{key} {_number(check[key])}" for key in ("rtol", "atol") if key in check)
    text += f"  {errors}" if errors else ""
    text += f" ({tolerances})" if tolerances else ""
    if check.get("metadata"):
        text += "  metadata " + _clipped(json.dumps(check["metadata"], ensure_ascii=False, sort_keys=True))
    if outcome != "passed" and check.get("message"):
        text += ": " + _clipped(" ".join(check["message"].split()))
    return text


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else printable(str(value))


def _clipped(text: str, limit: int = 200) -> str:
    """Free text on one line (a message, metadata as JSON), cut, and safe for a terminal."""
    return terminal_safe(text if len(text) <= limit else text[:limit] + "...")


def receipt_brief(receipt: Receipt) -> str:
    when = receipt.started.strftime("%Y-%m-%d %H:%M UTC")
    return f"{printable(receipt.signer)} on {gpu_text(receipt)}, {when}, {receipt.mode}"


def _shard_summary(verdict: CommitVerdict) -> str:
    parts = []
    for name, part in verdict.shards.items():
        if part.state == UNCHANGED and part.receipt:
            parts.append(f"{name} unchanged since {short(part.receipt.note_commit)}")
        else:
            parts.append(f"{name} {part.state}")
    return "shards: " + ", ".join(parts)


def commit_line(verdict: CommitVerdict, subject: str = "") -> str:
    label = {VALIDATED: "validated", UNCHANGED: "unchanged"}.get(verdict.state, "unvalidated")
    head = f"{short(verdict.commit)} {styled(label.ljust(11), verdict.ok)}"
    if verdict.shards:
        detail = _shard_summary(verdict)
        if not verdict.ok:
            detail += "; " + "; ".join(r.message for r in verdict.reasons)
    elif verdict.ok and verdict.receipt and verdict.receipt.signed:
        detail = receipt_brief(verdict.receipt.signed.receipt)
        if verdict.state == UNCHANGED:
            detail = f"GPU paths unchanged since {short(verdict.receipt.note_commit)}: {detail}"
    else:
        detail = "; ".join(r.message for r in verdict.reasons)
    return f"{head} {printable(subject) + ' - ' if subject else ''}{detail}"


def receipt_block(verdict: ReceiptVerdict, number: int) -> list[str]:
    status = styled("valid" if verdict.ok else "not valid", verdict.ok)
    lines = [f"receipt {number} on {short(verdict.note_commit)}: {status}"]
    lines += [f"  ! {f.message}" for f in verdict.failures]
    if verdict.signed is None:
        return lines
    r = verdict.signed.receipt
    labels, notes = use_labels(r), kernel_notes(r)
    counts = ", ".join(f"{n} {k}" for k, n in r.counts.items() if n) or "no tests"
    lines += [
        f"  verdict   {r.verdict} ({counts})",
        f"  signer    {printable(r.signer)} {printable(r.key_fingerprint)}",
        f"  time      {r.started.isoformat()} .. {r.finished.isoformat()}",
        f"  mode      {r.mode}" + (f" (shard {printable(r.shard)})" if r.shard else ""),
        f"  gpu       {gpu_text(r)}{facts_text(r)}",
        *([f"  gpu use   {use_summary(labels)}"] if labels else []),
        *([f"  kernels   {summary}"] if (summary := kernel_summary(r)) else []),
        *(["  attestation  present, NOT checked: this version verifies no hardware attestation"]
          if any(key == ATTESTATION_KEY for key, _ in r.extra) else []),
        f"  commit    {r.commit} ({printable(r.branch) if r.branch else 'detached HEAD'})",
        *[f"  tree      {tree or 'absent'} {printable(path)}" for path, tree in r.trees.items()],
        f"  dirty outside fingerprint paths: {'yes' if r.dirty_outside else 'no'}",
        *(["  ci        " + ", ".join(f"{printable(str(k))}={printable(str(v))}" for k, v in r.ci.items())]
          if r.ci else []),
        *(["  UNSIGNED  a dry run: nobody vouches for it"] if verdict.signed.unsigned else []),
        "  tests:",
    ]
    checks = check_lines(r)
    for test in r.tests:
        lines += [_test_line(test, labels, notes), *checks.pop(test.nodeid, [])]
    for nodeid, unlisted in checks.items():  # a receipt that lists checks of tests it does not list
        lines += [f"    (test not listed) {printable(nodeid)}", *unlisted]
    return lines
