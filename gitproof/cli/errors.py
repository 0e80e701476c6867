"""The library's error types that the CLI reports as one line with exit status 2."""
from __future__ import annotations

from gitproof.allowed_signers import AllowedSignersError
from gitproof.fingerprint import FingerprintError
from gitproof.install import InstallError
from gitproof.notes import NotesError
from gitproof.policy import PolicyError
from gitproof.record import RecordError
from gitproof.signing import SigningError
from gitproof.sync import SyncError
from gitproof.verification import TrustError

KNOWN_ERRORS = (PolicyError, TrustError, RecordError, SigningError, NotesError,
                FingerprintError, AllowedSignersError, SyncError, InstallError)
