"""A receipt's ``check:`` records (``gpu_proof_check``, docs/comparator.md), as typed values.

The parser (:func:`gitproof.receipt.fields.check_object`) checks each record
strictly and keeps it as the JSON object it read, unknown keys included, so
that the receipt re-serialises byte for byte. :class:`CheckRecord` is how the
verifier and ``show`` read one. ``from_dict`` never raises: on a record the
parser let through it reads every value as written; on anything else a
missing or wrong-typed value reads as the field's default, and an outcome it
cannot tell reads as ``error``, never as ``passed``.

This module imports nothing but the standard library.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHECK_OUTCOMES = ("passed", "failed", "error")
NON_FINITE = ("nan", "inf", "-inf")  # how a check writes an error maximum that is not finite
MAX_INTEGER = 2**64  # the largest whole number a check's number may be, either sign


def is_finite_number(value: Any) -> bool:
    """A JSON number a check may hold: not a bool, finite, a whole number within ±2**64."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_INTEGER if isinstance(value, int) else math.isfinite(value)


def is_error_maximum(value: Any) -> bool:
    """A ``max_abs_err``/``max_rel_err``: a finite number, or ``"nan"``, ``"inf"`` or ``"-inf"``."""
    return is_finite_number(value) or (isinstance(value, str) and value in NON_FINITE)


def check_outcome(check: Mapping[str, Any]) -> str:
    """``passed``, ``failed`` or ``error`` for a check record; an older record's ``ok: false``
    is ``failed`` (and ``ok: true`` ``passed``). A record with neither, or with an outcome
    this version does not know, is ``error``: the parser refuses such records."""
    outcome = check.get("outcome")
    if "outcome" in check:
        return outcome if isinstance(outcome, str) and outcome in CHECK_OUTCOMES else "error"
    ok = check.get("ok")
    return "passed" if ok is True else "failed" if ok is False else "error"


def _number(value: Any) -> float | None:
    return value if is_finite_number(value) else None


def _maximum(value: Any) -> float | str | None:
    return value if is_error_maximum(value) else None


def _label(value: Any) -> str:
    """Text a person reads: a string as it is, another JSON value as its str(), absent or null as "?"."""
    return "?" if value is None else value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class CheckRecord:
    """One ``gpu_proof_check`` as a receipt's ``check:`` line records it.

    ``max_abs_err`` and ``max_rel_err`` are numbers, or ``"nan"``/``"inf"``/``"-inf"``
    where the maximum was not finite; they, ``rtol`` and ``atol`` are None when
    the record does not give them (a custom comparator's check gives none).
    """

    test: str  # the node id of the test that ran the check
    name: str
    outcome: str  # one of CHECK_OUTCOMES
    message: str = ""
    max_abs_err: float | str | None = None
    max_rel_err: float | str | None = None
    rtol: float | None = None
    atol: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def to_json(self) -> dict[str, Any]:
        """The record in ``--json`` output: every field present, in this order (docs/cli.md)."""
        return {"test": self.test, "name": self.name, "outcome": self.outcome, "message": self.message,
                "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err, "rtol": self.rtol,
                "atol": self.atol, "metadata": dict(self.metadata)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckRecord:
        """A ``check`` object as parsed; an older record, with ``ok`` and no ``outcome``, included."""
        metadata = data.get("metadata")
        message = data.get("message")
        return cls(
            test=_label(data.get("test")),
            name=_label(data.get("name")),
            outcome=check_outcome(data),
            message=message if isinstance(message, str) else "",
            max_abs_err=_maximum(data.get("max_abs_err")),
            max_rel_err=_maximum(data.get("max_rel_err")),
            rtol=_number(data.get("rtol")),
            atol=_number(data.get("atol")),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        )
