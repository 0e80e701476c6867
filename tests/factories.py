"""Building receipts for tests without running pytest (the real run is tested elsewhere)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gitproof.receipt import Receipt, TestResult

# "Now", so that receipts made by tests are fresh whenever the suite runs.
START = datetime.now(timezone.utc).replace(microsecond=123456)


def make_receipt(**overrides) -> Receipt:
    fields = dict(
        signer="alice@example.com",
        key_fingerprint="SHA256:" + "A" * 43,
        started=START,
        finished=START + timedelta(seconds=42),
        mode="local",
        trees={"src": "1" * 40, "tests": "2" * 40},
        commit="3" * 40,
        branch="main",
        dirty_outside=False,
        pytest_args=["--gpu-proof"],
        environment={"os": "Linux", "python": "3.11.7", "pytest": "9.0", "gitproof": "0.1.0"},
        gpus=[{"index": 0, "name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15",
               "memory_mib": 81559, "compute_capability": "9.0", "uuid": "GPU-1234"}],
        tests=[TestResult("tests/test_k.py::test_a", "passed", 0.5),
               TestResult("tests/test_k.py::test_b[x]", "passed", 1.25)],
    )
    fields.update(overrides)
    return Receipt(**fields)
