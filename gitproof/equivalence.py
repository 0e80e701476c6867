"""Comparing a GPU result with a reference: the ``gpu_proof_check`` fixture's core."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class CheckResult:
    name: str
    ok: bool
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    detail: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_record(self, nodeid: str, rtol: float, atol: float) -> dict[str, Any]:
        record: dict[str, Any] = {"test": nodeid, "name": self.name, "ok": self.ok,
                                  "rtol": rtol, "atol": atol}
        for key in ("max_abs_err", "max_rel_err"):
            value = getattr(self, key)
            if value is not None:
                record[key] = value if math.isfinite(value) else repr(value)
        if self.metadata:
            record["metadata"] = jsonable(self.metadata)
        return record


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


def _numpy():
    try:
        import numpy
    except ImportError:  # numpy is optional; without it only scalars are compared numerically
        return None
    return numpy


def compare_values(name: str, reference: Any, candidate: Any, rtol: float, atol: float) -> CheckResult:
    """Default comparison: shape-checked allclose for float/complex data, equality otherwise."""
    np = _numpy()
    ref, cand = to_host(reference), to_host(candidate)
    if np is not None and (isinstance(ref, np.ndarray) or isinstance(cand, np.ndarray)):
        return _compare_arrays(np, name, np.asarray(ref), np.asarray(cand), rtol, atol)
    if isinstance(ref, (float, complex)) or isinstance(cand, (float, complex)):
        if not isinstance(ref, (int, float, complex)) or not isinstance(cand, (int, float, complex)):
            return CheckResult(name, False, detail=f"type mismatch: {type(ref).__name__} vs {type(cand).__name__}")
        abs_err = abs(ref - cand)
        rel_err = abs_err / abs(ref) if ref else (0.0 if abs_err == 0 else math.inf)
        ok = abs_err <= atol + rtol * abs(ref)
        return CheckResult(name, ok, abs_err, rel_err, "" if ok else f"|{ref} - {cand}| = {abs_err}")
    ok = bool(ref == cand)
    return CheckResult(name, ok, detail="" if ok else f"{ref!r} != {cand!r}")


def _compare_arrays(np, name: str, ref, cand, rtol: float, atol: float) -> CheckResult:
    if ref.shape != cand.shape:
        return CheckResult(name, False, detail=f"shape mismatch: {ref.shape} vs {cand.shape}")
    inexact = np.issubdtype(ref.dtype, np.inexact) or np.issubdtype(cand.dtype, np.inexact)
    if not inexact:
        ok = bool(np.array_equal(ref, cand))
        return CheckResult(name, ok, detail="" if ok else "arrays differ")
    if ref.size == 0:
        return CheckResult(name, True, 0.0, 0.0)
    diff = np.abs(ref.astype(np.complex128) - cand.astype(np.complex128))
    scale = np.abs(ref.astype(np.complex128))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(scale > 0, diff / scale, np.where(diff > 0, np.inf, 0.0))
    max_abs, max_rel = float(np.nanmax(diff)), float(np.nanmax(rel))
    ok = bool(np.allclose(cand, ref, rtol=rtol, atol=atol, equal_nan=False))
    detail = "" if ok else f"max abs error {max_abs:.3g}, max rel error {max_rel:.3g} (rtol={rtol}, atol={atol})"
    return CheckResult(name, ok, max_abs, max_rel, detail)


def run_check(name: str, reference: Callable[..., Any], candidate: Callable[..., Any],
              args: tuple = (), kwargs: dict[str, Any] | None = None,
              compare: Callable[[Any, Any], bool] | None = None,
              metadata: dict[str, Any] | None = None,
              rtol: float = 1e-5, atol: float = 1e-8) -> CheckResult:
    kwargs = kwargs or {}
    expected = reference(*args, **kwargs)
    actual = candidate(*args, **kwargs)
    if compare is not None:
        ok = bool(compare(expected, actual))
        result = CheckResult(name, ok, detail="" if ok else "custom comparison returned False")
    else:
        result = compare_values(name, expected, actual, rtol, atol)
    result.metadata = dict(metadata or {})
    return result
