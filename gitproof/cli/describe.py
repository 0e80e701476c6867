"""Human-readable lines for verdicts and receipts, shared by verify, show, log and status."""
from __future__ import annotations

import json

from gitproof.cli.common import short, styled
from gitproof.gpu import milliseconds as _milliseconds
from gitproof.receipt import CheckRecord, Receipt, SignedReceipt, TestResult
from gitproof.text import printable, terminal_safe
from gitproof.verify import ELSEWHERE, UNCHANGED, VALIDATED, CommitVerdict, ReceiptVerdict


def gpu_text(receipt: Receipt) -> str:
    if not receipt.gpus:
        return "no GPU"
    names = [printable(device.name) for device in receipt.device_records]
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return ", ".join(names)


def facts_text(receipt: Receipt) -> str:
    """Where the device facts came from, and the confidential-computing state when known."""
    facts = receipt.facts_record if receipt.gpu_facts else None  # older receipts have no gpu-facts line
    if facts is None:
        return ""
    source = printable(facts.source)
    parts = ["no source of GPU facts answered" if source == "none" else f"facts from {source}"]
    cc = facts.confidential_computing
    if cc is not None and "feature" in cc:
        parts.append(f"confidential computing {printable(cc['feature'])}")
    if facts.cuda_visible_devices is not None:
        parts.append(f"CUDA_VISIBLE_DEVICES={printable(facts.cuda_visible_devices)}")
    return " (" + "; ".join(parts) + ")"


USE_LABELS = {True: "gpu", False: "NO-GPU", None: "gpu?"}


def use_labels(receipt: Receipt) -> dict[str, str]:
    """``gpu`` / ``NO-GPU`` / ``gpu?`` per test node id; empty when the receipt records no use."""
    if not receipt.gpu_use:
        return {}
    used = {use.test: use.used for use in receipt.use_records}
    return {t.nodeid: USE_LABELS.get(used.get(t.nodeid), "gpu?") for t in receipt.tests}


def use_summary(labels: dict[str, str]) -> str:
    counts = list(labels.values())
    return (f"{counts.count('gpu')} used a GPU, {counts.count('NO-GPU')} did not, "
            f"{counts.count('gpu?')} unknown (self-reported by the test process)")


def kernel_notes(receipt: Receipt) -> dict[str, str]:
    """``5 kernels, 0.020 ms on GPU`` per test whose record carries kernel evidence."""
    notes = {}
    for use in receipt.use_records:
        kernels = use.kernels
        if kernels is None:
            continue
        if not kernels.traced:
            notes[use.test] = "kernels not traced"
            continue
        launches, copies = kernels.launches, kernels.memcpy.count
        text = f"{launches} kernel{'' if launches == 1 else 's'}"
        if launches:
            text += f", {_milliseconds(kernels.gpu_time_ns)} ms on GPU"
        notes[use.test] = text + (f", {copies} cop{'y' if copies == 1 else 'ies'}" if copies else "")
    return notes


def kernel_summary(receipt: Receipt) -> str | None:
    """Which tracer recorded kernels, and how many tests launched any; None when none did."""
    traced = [use.kernels for use in receipt.use_records if use.kernels is not None]
    if not traced:
        return None
    tracers = sorted({printable(k.tracer) for k in traced if k.tracer is not None})
    if not tracers:
        error = next((k.error for k in traced if k.error is not None), "unknown reason")
        return f"not traced: {printable(error)}"
    launched = sum(1 for k in traced if k.launches)
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
    for check in receipt.check_records:
        lines.setdefault(check.test, []).append(_check_line(check))
    return lines


def _check_line(check: CheckRecord) -> str:
    """``check passed  name  max abs err 1e-07, max rel err 2e-07 (rtol 1e-05, atol 1e-08)``,
    then the metadata, and for a check that did not pass its message, on one line."""
    text = f"      check {check.outcome:6}  {printable(check.name)}"
    errors = ", ".join(f"{label} {_number(value)}" for value, label in
                       ((check.max_abs_err, "max abs err"), (check.max_rel_err, "max rel err")) if value is not None)
    tolerances = ", ".join(f"{key} {_number(value)}" for value, key in
                           ((check.rtol, "rtol"), (check.atol, "atol")) if value is not None)
    text += f"  {errors}" if errors else ""
    text += f" ({tolerances})" if tolerances else ""
    if check.metadata:
        text += "  metadata " + _clipped(json.dumps(check.metadata, ensure_ascii=False, sort_keys=True))
    if not check.passed and check.message:
        text += ": " + _clipped(" ".join(check.message.split()))
    return text


def _number(value: float | str) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else printable(str(value))


def _clipped(text: str, limit: int = 200) -> str:
    """Free text on one line (a message, metadata as JSON), cut, and safe for a terminal."""
    return terminal_safe(text if len(text) <= limit else text[:limit] + "...")


def receipt_brief(receipt: Receipt) -> str:
    when = receipt.started.strftime("%Y-%m-%d %H:%M UTC")
    return f"{printable(receipt.signer)} on {gpu_text(receipt)}, {when}, {receipt.mode}"


_briefs: dict[str, str] = {}


def _brief(signed: SignedReceipt) -> str:
    """``receipt_brief``, once per receipt: a long log shows one receipt on many lines."""
    if signed.identity not in _briefs:
        _briefs[signed.identity] = receipt_brief(signed.receipt)
    return _briefs[signed.identity]


def found_on(verdict: CommitVerdict) -> str:
    """Where the receipt behind an ``unchanged`` verdict was made, in words."""
    holder = short(verdict.receipt.note_commit) if verdict.receipt else "?"
    if verdict.relation == ELSEWHERE:
        return f"same GPU code as {holder}, where the receipt was made"
    return f"GPU paths unchanged since {holder}"


def _shard_summary(verdict: CommitVerdict) -> str:
    parts = []
    for name, part in verdict.shards.items():
        if part.state == UNCHANGED and part.receipt:
            parts.append(f"{name} {found_on(part)}")
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
        detail = _brief(verdict.receipt.signed)
        if verdict.state == UNCHANGED:
            detail = f"{found_on(verdict)}: {detail}"
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
