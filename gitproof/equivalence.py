"""Comparing a GPU result with a reference: the ``gpu_proof_check`` fixture's core.

docs/comparator.md is the contract: what the default comparison accepts, and
how a custom ``compare=`` signals a match (None or True), a mismatch (False,
or ``AssertionError``) or an error (any other exception).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

PASSED, FAILED, ERROR = "passed", "failed", "error"
OUTCOMES = (PASSED, FAILED, ERROR)
MAX_MESSAGE_CHARS = 4096  # a check's message in the receipt; an assert_allclose report fits
MAX_NAME_CHARS = 1024
MAX_METADATA_BYTES = 16 * 1024  # a check's metadata in the receipt: notes have a size limit


@dataclass
class CheckResult:
    """What one ``gpu_proof_check`` call found; ``to_record`` is its receipt line."""

    name: str
    outcome: str
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    message: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # What reference, candidate or comparator raised (outcome error): kept for the traceback only.
    exception: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome == PASSED

    @property
    def detail(self) -> str:
        """The message, under its name before checks had outcomes."""
        return self.message

    def to_record(self, nodeid: str, rtol: float, atol: float) -> dict[str, Any]:
        record: dict[str, Any] = {"test": str(nodeid), "name": bounded(str(self.name), MAX_NAME_CHARS),
                                  "outcome": self.outcome,
                                  "ok": self.ok,  # for readers older than "outcome"
                                  "rtol": tolerance("rtol", rtol), "atol": tolerance("atol", atol)}
        for key in ("max_abs_err", "max_rel_err"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value if math.isfinite(value) else repr(value)
        if self.message:
            record["message"] = bounded(self.message)
        if self.metadata:
            record["metadata"] = bounded_metadata(self.metadata)
        return record


def bounded_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata as strict JSON, or, when it is larger than MAX_METADATA_BYTES (or nested too
    deeply to walk), a preview: a receipt carries every check, and a note has a size limit."""
    value: dict[str, Any] | None
    try:
        value = jsonable(metadata)
        text = json.dumps(value, sort_keys=True)
    except RecursionError:
        value, text = None, "nested too deeply to record"
    if value is not None and len(text.encode()) <= MAX_METADATA_BYTES:
        return value
    return {"truncated": True, "bytes": len(text.encode()), "preview": text[:1024]}


def bounded(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """The message, cut to ``limit`` characters (saying so) so that one check cannot bloat a note."""
    if len(message) <= limit:
        return message
    note = f" ... [cut: {len(message)} characters in all]"
    return message[:limit - len(note)] + note


def jsonable(value: Any) -> Any:
    """Make user-supplied metadata fit the receipt's strict JSON (no NaN, no objects)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "item"):  # NumPy and framework scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def to_host(value: Any) -> Any:
    """Move torch / CuPy / JAX arrays to a NumPy array on the host; leave others alone."""
    module = type(value).__module__.split(".")[0]
    if module == "torch":
        return value.detach().cpu().numpy()
    if module == "cupy":
        return value.get()
    if module in ("jax", "jaxlib"):
        import numpy

        return numpy.asarray(value)
    return value


def _numpy() -> Any:  # the numpy module, or None
    try:
        import numpy
    except ImportError:  # numpy is optional; without it, nested lists are compared element by element
        return None
    return numpy


# -- the default comparison ----------------------------------------------------------

@dataclass(frozen=True)
class _Diff:
    """How two values differ: ``ok``, the error maxima when numeric, and why not ok."""

    ok: bool
    max_abs: float | None = None
    max_rel: float | None = None
    message: str = ""


def compare_values(name: str, reference: Any, candidate: Any, rtol: float, atol: float) -> CheckResult:
    """Default comparison: numbers within ``atol + rtol * |reference|``, anything else with ``==``.

    Arrays, NumPy scalars and nested lists or tuples of numbers are numeric;
    integer and boolean data must be equal; NaN equals NaN at the same place.
    """
    diff = _compare(reference, candidate, rtol, atol, "")
    return CheckResult(name, PASSED if diff.ok else FAILED, diff.max_abs, diff.max_rel, diff.message)


def _compare(ref: Any, cand: Any, rtol: float, atol: float, where: str) -> _Diff:
    ref, cand = to_host(ref), to_host(cand)
    np = _numpy()
    arrays = _as_arrays(np, ref, cand) if np is not None else None
    if arrays is not None:
        return _compare_arrays(np, *arrays, rtol, atol, where)
    if isinstance(ref, (list, tuple)) and isinstance(cand, (list, tuple)):
        return _compare_sequences(ref, cand, rtol, atol, where)
    if _is_number(ref) and _is_number(cand):
        return _compare_numbers(ref, cand, rtol, atol, where)
    ok = bool(ref == cand)
    return _Diff(ok, message="" if ok else f"{_at(where)}{_short(ref)} != {_short(cand)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, complex))


def _as_arrays(np: Any, ref: Any, cand: Any) -> tuple[Any, Any] | None:
    """Both values as NumPy arrays when either is NumPy data, or both are lists/tuples that
    make numeric arrays; None to compare them otherwise."""
    if isinstance(ref, (np.ndarray, np.generic)) or isinstance(cand, (np.ndarray, np.generic)):
        return _asarray(np, ref), _asarray(np, cand)
    if not (isinstance(ref, (list, tuple)) and isinstance(cand, (list, tuple))):
        return None
    pair = _asarray(np, ref), _asarray(np, cand)
    if any(a is None or a.dtype.kind not in "biufc" for a in pair):
        return None  # ragged, or not numbers: element by element
    return pair


def _asarray(np: Any, value: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older NumPy warns about ragged lists
            return np.asarray(value)
    except (ValueError, TypeError):
        return None


def _compare_arrays(np: Any, ref: Any, cand: Any, rtol: float, atol: float, where: str) -> _Diff:
    if ref is None or cand is None:
        return _Diff(False, message=f"{_at(where)}a value cannot be made into an array")
    if ref.shape != cand.shape:
        return _Diff(False, message=f"{_at(where)}shape mismatch: {ref.shape} vs {cand.shape}")
    if not (ref.dtype.kind in "fc" or cand.dtype.kind in "fc"):
        ok = bool(np.array_equal(ref, cand))
        return _Diff(ok, message="" if ok else f"{_at(where)}{_count(np, ref != cand, ref.size)} "
                                                "differ (integer or other data must be equal)")
    if ref.size == 0:
        return _Diff(True, 0.0, 0.0)
    return _inexact_arrays(np, ref.astype(np.complex128), cand.astype(np.complex128), rtol, atol, where)


def _inexact_arrays(np: Any, ref: Any, cand: Any, rtol: float, atol: float, where: str) -> _Diff:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        same = (ref == cand) | (np.isnan(ref) & np.isnan(cand))
        diff = np.where(same, 0.0, np.abs(ref - cand))
        scale = np.abs(ref)
        usable = (scale > 0) & np.isfinite(scale)
        rel = np.where(diff == 0, 0.0, np.where(np.isnan(diff), np.nan,
                                                np.where(usable, diff / np.where(usable, scale, 1.0), np.inf)))
        finite = np.isfinite(ref) & np.isfinite(cand)
        close = same | (finite & (diff <= atol + rtol * scale))
    max_abs, max_rel = float(np.max(diff)), float(np.max(rel))
    if close.all():
        return _Diff(True, max_abs, max_rel)
    first = tuple(int(i) for i in np.argwhere(~close)[0])
    values = f"reference {_real(ref[first])}, candidate {_real(cand[first])}"
    if first:  # not a 0-d array (a NumPy scalar)
        values = f"{_count(np, ~close, close.size)} not close, the first at {list(first)}: {values}"
    return _Diff(False, max_abs, max_rel, _not_close(where, max_abs, max_rel, rtol, atol, values))


def _not_close(where: str, max_abs: float, max_rel: float, rtol: float, atol: float, detail: str) -> str:
    return (f"{_at(where)}max abs error {max_abs:.3g}, max rel error {max_rel:.3g} "
            f"(rtol={rtol}, atol={atol}): {detail}")


def _count(np: Any, mask: Any, size: int) -> str:
    return f"{int(np.count_nonzero(mask))} of {size} element(s)"


def _real(value: complex) -> str:
    """A value as Python writes it (not ``np.float64(...)``); the real part when that is all."""
    value = complex(value)
    return repr(value.real) if value.imag == 0 else repr(value)


def _compare_numbers(ref: Any, cand: Any, rtol: float, atol: float, where: str) -> _Diff:
    """Python scalars: as one element of an array would be."""
    if isinstance(ref, int) and isinstance(cand, int):  # bool too: exact
        return _Diff(ref == cand, message="" if ref == cand else f"{_at(where)}{ref!r} != {cand!r}")
    ref, cand = complex(ref), complex(cand)
    if ref == cand or (_isnan(ref) and _isnan(cand)):
        return _Diff(True, 0.0, 0.0)
    diff = abs(ref - cand)
    rel = _relative(diff, abs(ref))
    finite = all(math.isfinite(x) for x in (ref.real, ref.imag, cand.real, cand.imag))
    if finite and diff <= atol + rtol * abs(ref):
        return _Diff(True, diff, rel)
    values = f"reference {_real(ref)}, candidate {_real(cand)}"
    return _Diff(False, diff, rel, _not_close(where, diff, rel, rtol, atol, values))


def _relative(diff: float, scale: float) -> float:
    """``diff / scale``, as the array path computes it: 0 for no difference, NaN for an
    undefined one, infinite where the reference is 0 or infinite."""
    if diff == 0:
        return 0.0
    if math.isnan(diff):
        return math.nan
    return diff / scale if 0 < scale < math.inf else math.inf


def _isnan(value: complex) -> bool:
    return math.isnan(value.real) or math.isnan(value.imag)


def _compare_sequences(ref: list[Any] | tuple[Any, ...], cand: list[Any] | tuple[Any, ...], rtol: float, atol: float,
                       where: str) -> _Diff:
    if len(ref) != len(cand):
        return _Diff(False, message=f"{_at(where)}length mismatch: {len(ref)} vs {len(cand)}")
    parts = [_compare(r, c, rtol, atol, f"{where}[{i}]") for i, (r, c) in enumerate(zip(ref, cand, strict=True))]
    max_abs = _worst([p.max_abs for p in parts])
    max_rel = _worst([p.max_rel for p in parts])
    failed = [p for p in parts if not p.ok]
    if not failed:
        return _Diff(True, max_abs, max_rel)
    more = f" (and {len(failed) - 1} more element(s))" if len(failed) > 1 else ""
    return _Diff(False, max_abs, max_rel, failed[0].message + more)


def _worst(errors: list[float | None]) -> float | None:
    """The largest error; NaN (an error that has no size) wins, as in an array's max."""
    known = [e for e in errors if e is not None]
    if not known:
        return None
    return math.nan if any(math.isnan(e) for e in known) else max(known)


def _at(where: str) -> str:
    return f"at {where}: " if where else ""


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- one check -------------------------------------------------------------------------

def run_check(name: str, reference: Callable[..., Any], candidate: Callable[..., Any],
              args: tuple[Any, ...] | None = (), kwargs: dict[str, Any] | None = None,
              compare: Callable[[Any, Any], Any] | None = None,
              metadata: dict[str, Any] | None = None,
              rtol: float = 1e-5, atol: float = 1e-8) -> CheckResult:
    """Call both functions, compare their results, and say how it went. What the user's
    code raises (an ``Exception``) becomes outcome ``error``; only a tolerance that is not a
    finite number >= 0 raises here (ValueError), before anything is called."""
    rtol, atol = tolerance("rtol", rtol), tolerance("atol", atol)
    args, kwargs = tuple(args or ()), kwargs or {}  # None as pytest-gpu-proof accepts it
    result = _evaluate(name, reference, candidate, args, kwargs, compare, rtol, atol)
    result.metadata = dict(metadata or {})
    return result


def tolerance(name: str, value: Any) -> float:
    """A tolerance as a float: a finite number >= 0 (the receipt's JSON holds no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, (bool, str, bytes)) or not (math.isfinite(number) and number >= 0):
        raise ValueError(f"gpu_proof_check: {name} must be a finite number >= 0, got {value!r}")
    return number


def _evaluate(name: str, reference: Callable[..., Any], candidate: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], compare: Callable[[Any, Any], Any] | None,
              rtol: float, atol: float) -> CheckResult:
    try:
        expected = reference(*args, **kwargs)
    except Exception as exc:
        return _error(name, "reference raised", exc)
    try:
        actual = candidate(*args, **kwargs)
    except Exception as exc:
        return _error(name, "candidate raised", exc)
    if compare is None:
        try:
            return compare_values(name, expected, actual, rtol, atol)
        except Exception as exc:
            return _error(name, "the default comparison raised (pass compare= for such values)", exc)
    return _custom(name, compare, expected, actual)


def _custom(name: str, compare: Callable[[Any, Any], Any], expected: Any, actual: Any) -> CheckResult:
    """Both conventions: None or True is a match (pytest-gpu-proof's comparators return
    None), False or ``AssertionError`` a mismatch, any other exception an error."""
    try:
        verdict = compare(expected, actual)
    except AssertionError as exc:  # assert_allclose's report starts with a newline
        return CheckResult(name, FAILED, message=str(exc).strip() or "comparison raised AssertionError")
    except Exception as exc:
        return _error(name, "comparison raised", exc)
    truth = _truth(verdict)
    if truth is None:
        return CheckResult(name, ERROR, message=f"comparison returned {_short(verdict)} "
                                                f"({type(verdict).__name__}); return None or True for a "
                                                "match, False (or raise AssertionError) for a mismatch")
    return CheckResult(name, PASSED if truth else FAILED, message="" if truth else "comparison returned False")


def _truth(verdict: Any) -> bool | None:
    """True for None/True, False for False; a one-element bool from NumPy or a framework
    (``np.allclose``, ``(a == b).all()``) counts too. None: anything else."""
    if verdict is None or verdict is True:
        return True
    if verdict is False:
        return False
    item = getattr(verdict, "item", None)
    if callable(item) and getattr(verdict, "shape", None) in ((), (1,)):
        try:
            value = item()
        except Exception:
            return None
        return value if isinstance(value, bool) else None
    return None


def _error(name: str, what: str, exc: Exception) -> CheckResult:
    text = str(exc).strip()
    return CheckResult(name, ERROR, message=f"{what} {type(exc).__name__}" + (f": {text}" if text else ""),
                       exception=exc)
