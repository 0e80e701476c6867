"""Human-readable lines for verdicts and receipts, shared by verify, show, log and status."""
from __future__ import annotations

from gitproof.cli.common import short, styled
from gitproof.receipt import Receipt, escape
from gitproof.verification import UNCHANGED, VALIDATED, CommitVerdict, ReceiptVerdict


def gpu_text(receipt: Receipt) -> str:
    if not receipt.gpus:
        return "no GPU"
    names = [escape(str(g.get("name", "?"))) for g in receipt.gpus]
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)}x {names[0]}"
    return ", ".join(names)


def receipt_brief(receipt: Receipt) -> str:
    when = receipt.started.strftime("%Y-%m-%d %H:%M UTC")
    return f"{escape(receipt.signer)} on {gpu_text(receipt)}, {when}, {receipt.mode}"


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
    return f"{head} {subject + ' - ' if subject else ''}{detail}"


def receipt_block(verdict: ReceiptVerdict, number: int) -> list[str]:
    status = styled("valid" if verdict.ok else "not valid", verdict.ok)
    lines = [f"receipt {number} on {short(verdict.note_commit)}: {status}"]
    lines += [f"  ! {f.message}" for f in verdict.failures]
    if verdict.signed is None:
        return lines
    r = verdict.signed.receipt
    counts = ", ".join(f"{n} {k}" for k, n in r.counts.items() if n) or "no tests"
    lines += [
        f"  verdict   {r.verdict} ({counts})",
        f"  signer    {escape(r.signer)} {r.key_fingerprint}",
        f"  time      {r.started.isoformat()} .. {r.finished.isoformat()}",
        f"  mode      {r.mode}" + (f" (shard {r.shard})" if r.shard else ""),
        f"  gpu       {gpu_text(r)}",
        f"  commit    {r.commit} ({escape(r.branch) if r.branch else 'detached HEAD'})",
        *[f"  tree      {tree or 'absent'} {path}" for path, tree in r.trees.items()],
        f"  dirty outside fingerprint paths: {'yes' if r.dirty_outside else 'no'}",
        *(["  ci        " + ", ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in r.ci.items())]
          if r.ci else []),
        *(["  UNSIGNED  a dry run: nobody vouches for it"] if verdict.signed.unsigned else []),
        "  tests:",
        *[f"    {t.outcome:8} {t.duration:8.3f}s  {escape(t.nodeid)}" for t in r.tests],
    ]
    return lines
