"""The failure codes: why a receipt does not validate a commit.

They are a documented JSON API (``"code"`` in ``verify --json``, ``show --json``,
``status --json``, ``plan --json``; docs/cli.md and docs/policy.md list them):
a ``StrEnum``, so each code is its string wherever it is written or compared.
"""
from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    # reading the note
    MALFORMED = "malformed"
    NOTE_TOO_LARGE = "note-too-large"
    # the signature (decided by gitproof.trust)
    BAD_SIGNATURE = "bad-signature"
    KEY_REVOKED = "key-revoked"
    SIGNER_NOT_ALLOWED = "signer-not-allowed"
    UNSIGNED = "unsigned"
    NO_TRUST = "no-trust"
    # the policy's rules
    WRONG_SHARD = "wrong-shard"
    TESTS_FAILED = "tests-failed"
    CHECK_FAILED = "check-failed"
    SKIPPED_TESTS = "skipped-tests"
    UNEXPECTED_SKIP = "unexpected-skip"
    STALE_SKIP_BASELINE = "stale-skip-baseline"
    REQUIRED_TESTS = "required-tests"
    TOO_OLD = "too-old"
    FUTURE_RECEIPT = "future-receipt"
    BEFORE_COMMIT = "before-commit"
    WRONG_MODE = "wrong-mode"
    MODE_NOT_ALLOWED = "mode-not-allowed"
    NO_GPU = "no-gpu"
    GPU_NOT_USED = "gpu-not-used"
    GPU_NO_KERNELS = "gpu-no-kernels"
    DIRTY = "dirty"
    PATHS_NOT_COVERED = "paths-not-covered"
    FINGERPRINT_CHANGED = "fingerprint-changed"
    # nothing to judge
    NO_RECEIPT = "no-receipt"
    # run_check: the policy itself could not be read
    POLICY = "policy"
    # verify --attestations: the DSSE envelope of the receipt that validates the commit
    ATTESTATION_MISSING = "attestation-missing"
    ATTESTATION_INVALID = "attestation-invalid"
