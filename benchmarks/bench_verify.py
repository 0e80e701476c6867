"""Verifying one signed receipt: in-process (gitproof) versus ``ssh-keygen -Y verify``.

Setup, all with the real OpenSSH tools: for each key type (ed25519, ECDSA
P-256, RSA-3072) ``ssh-keygen -t ...`` makes a key; an allowed_signers file
lists it for alice@example.com after ``--other-signers`` unrelated ed25519
lines (a team's file); a receipt with ``--tests`` test lines (built with
``gitproof.receipt.Receipt`` / ``serialize_payload``, the same shape as
tests/factories.py) is signed with ``ssh-keygen -Y sign -n gpu-proof``.

Timed, per verification, median of interleaved samples (see _common.py):

* ``verify_signed_payload(payload, armored, principal, signers, None, "gpu-proof")``
  - warm: the same ``AllowedSigners`` object, called over and over;
  - cold: the first call after ``AllowedSigners.from_file`` on a fresh object
    with gitproof's key caches (``functools.lru_cache`` on key loading)
    cleared, i.e. what one ``git gpu-proof verify`` process pays;
  - load + cold: the same, with ``AllowedSigners.from_file`` itself timed too;
* ``verify_with_ssh_keygen(payload, armored, principal, path, "gpu-proof")``:
  writes the signature to a temporary file and runs ``ssh-keygen -Y verify``
  in a subprocess (the fallback path and what git itself does).

For scale, one more row times ``parse_payload`` on the same receipt (what
reading a receipt from a note costs before any signature is checked); its
ratio column is against the first key type's ssh-keygen row.

Not included: interpreter start-up and imports (paid once per CLI process).

Run:

    python benchmarks/bench_verify.py
    python benchmarks/bench_verify.py --repeat 301 --keys ed25519

Options: ``--repeat R`` (samples per case, default 101), ``--tests N`` (test
lines in the receipt, default 50), ``--other-signers N`` (default 10),
``--keys`` (comma list from ed25519,ecdsa-256,rsa-3072).
"""
from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from _common import Case, fmt_time, measure, print_machine, table

from gitproof.receipt import Receipt, TestResult, parse_payload, serialize_payload
from gitproof.trust import keys, sshsig
from gitproof.trust.allowed_signers import AllowedSigners
from gitproof.trust.sources import verify_signed_payload

NAMESPACE = "gpu-proof"
PRINCIPAL = "alice@example.com"
KEY_TYPES = {  # name -> ssh-keygen arguments
    "ed25519": ["-t", "ed25519"],
    "ecdsa-256": ["-t", "ecdsa", "-b", "256"],
    "rsa-3072": ["-t", "rsa", "-b", "3072"],
}


def run(args: list[str], data: bytes | None = None) -> bytes:
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def make_receipt(fingerprint: str, tests: int) -> Receipt:
    start = datetime(2026, 11, 23, 5, 0, 0, 123456, tzinfo=timezone.utc)
    outcomes = ["passed"] * 8 + ["skipped", "xfailed"]
    return Receipt(
        signer=PRINCIPAL,
        key_fingerprint=fingerprint,
        started=start,
        finished=start + timedelta(seconds=42),
        mode="local",
        trees={"src": "1" * 40, "tests": "2" * 40},
        commit="3" * 40,
        branch="main",
        dirty_outside=False,
        pytest_args=["--gpu-proof", "-q"],
        environment={"os": "Linux", "python": "3.11.7", "pytest": "9.0", "gitproof": "0.1.0",
                     "torch": "2.5.1", "cuda": "12.4"},
        gpus=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15",
               "memory_mib": 81559, "compute_capability": "9.0", "uuid": "GPU-1234"}],
        tests=[TestResult(f"tests/gpu/test_kernels_{i // 10}.py::test_case[{i}-float16-cuda]",
                          outcomes[i % len(outcomes)], 0.125 + i * 0.01) for i in range(tests)],
    )


def other_signer_lines(count: int) -> list[str]:
    lines = []
    for i in range(count):
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        lines.append(f"dev{i}@example.com {line.decode()}")
    return lines


def clear_key_caches() -> None:
    for fn in (keys.load_public_key, keys.load_certificate, keys.plain_key_blob):
        fn.cache_clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=101)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--other-signers", type=int, default=10)
    parser.add_argument("--keys", default=",".join(KEY_TYPES))
    args = parser.parse_args()
    names = [k.strip() for k in args.keys.split(",") if k.strip()]
    unknown = [k for k in names if k not in KEY_TYPES]
    if unknown:
        parser.error(f"unknown key type(s) {unknown}; choose from {', '.join(KEY_TYPES)}")

    print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        tmpdir = Path(tmp)
        others = other_signer_lines(args.other_signers)
        cases: list[Case] = []
        payload_size = 0
        for name in names:
            key = tmpdir / f"id_{name}"
            run(["ssh-keygen", "-q", *KEY_TYPES[name], "-N", "", "-C", PRINCIPAL, "-f", str(key)])
            pub = (tmpdir / f"id_{name}.pub").read_text().split()
            fingerprint = run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"]).decode().split()[1]
            allowed = tmpdir / f"allowed_signers_{name}"
            allowed.write_text("\n".join(others + [f"{PRINCIPAL} {pub[0]} {pub[1]}"]) + "\n")
            payload = serialize_payload(make_receipt(fingerprint, args.tests))
            payload_size = len(payload)
            armored = run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", NAMESPACE],
                          payload).decode()

            # correctness first: both paths must accept it, and reject a modified payload
            decision = verify_signed_payload(payload, armored, PRINCIPAL,
                                             AllowedSigners.from_file(allowed), None, NAMESPACE)
            ok, output = sshsig.verify_with_ssh_keygen(payload, armored, PRINCIPAL, allowed, NAMESPACE)
            bad = verify_signed_payload(payload + b" ", armored, PRINCIPAL,
                                        AllowedSigners.from_file(allowed), None, NAMESPACE)
            if not decision.allowed or not ok or bad.allowed or decision.fingerprint != fingerprint:
                print(f"{name}: unexpected verdicts: {decision}, ssh-keygen={ok} {output!r}, "
                      f"tampered={bad}", file=sys.stderr)
                return 1
            sig_type = base64.b64decode("".join(armored.splitlines()[1:-1]))
            print(f"{name}: {fingerprint}, signature {len(armored)} chars "
                  f"({'rsa-sha2-512' if b'rsa-sha2-512' in sig_type else pub[0]})")

            warm_signers = AllowedSigners.from_file(allowed)
            state: dict[str, AllowedSigners] = {}

            def fresh_signers(allowed=allowed, state=state) -> None:
                clear_key_caches()
                state["signers"] = AllowedSigners.from_file(allowed)

            cases += [
                Case(f"{name}: in-process, warm",
                     lambda p=payload, a=armored, s=warm_signers:
                     verify_signed_payload(p, a, PRINCIPAL, s, None, NAMESPACE)),
                Case(f"{name}: in-process, cold (fresh signers, caches cleared)",
                     lambda p=payload, a=armored, st=state:
                     verify_signed_payload(p, a, PRINCIPAL, st["signers"], None, NAMESPACE),
                     setup=fresh_signers, number=1),
                Case(f"{name}: in-process, from_file + cold verify",
                     lambda p=payload, a=armored, f=allowed:
                     verify_signed_payload(p, a, PRINCIPAL, AllowedSigners.from_file(f), None, NAMESPACE),
                     setup=clear_key_caches, number=1),
                Case(f"{name}: ssh-keygen -Y verify (subprocess)",
                     lambda p=payload, a=armored, f=allowed:
                     sshsig.verify_with_ssh_keygen(p, a, PRINCIPAL, f, NAMESPACE),
                     number=1),
            ]
        cases.append(Case("(for scale) parse_payload of the same receipt, no signature check",
                          lambda p=payload: parse_payload(p)))
        print(f"receipt payload: {payload_size:,} bytes, {args.tests} tests; allowed_signers: "
              f"{args.other_signers + 1} lines")
        print(f"\nmeasuring, {args.repeat} interleaved rounds ...", flush=True)
        measure(cases, args.repeat, target_s=0.005, progress=False)

    rows = []
    by_name = {c.name: c for c in cases}
    for case in cases:
        key = case.name.split(":")[0]
        sub_case = by_name.get(f"{key}: ssh-keygen -Y verify (subprocess)",
                               by_name[f"{names[0]}: ssh-keygen -Y verify (subprocess)"])
        sub = sub_case.median
        lo, hi = case.spread
        rows.append([case.name, f"{case.median * 1e6:,.1f}", f"{sub / case.median:,.1f}x",
                     f"{fmt_time(lo)} .. {fmt_time(hi)}", str(case.number)])
    print()
    print(table(rows, ["verification", "median µs", "ssh-keygen / this", "min .. max", "calls/sample"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
