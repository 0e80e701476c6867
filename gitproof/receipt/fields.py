"""The JSON-valued header fields of a receipt, checked as strictly as the rest of it.

``gpu``, ``gpu-facts``, ``gpu-use``, ``check`` and ``ci`` lines carry one JSON
object each. A receipt is hostile input until verified, so each object must be
an object, and each key this version knows must hold a value of the right
type; keys it does not know are a newer writer's and are kept unread.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from gitproof.receipt.checks import CHECK_OUTCOMES, is_error_maximum, is_finite_number
from gitproof.receipt.model import ReceiptFormatError

MAX_CHECK_QUOTE = 300  # what a refusal quotes of a check line, whose message may run to kilobytes

_OPTIONAL_TEXT = (str, type(None))
_TEXT_LIST = "list of strings"
# Known keys and their types; other keys are a newer writer's and are kept unread.
_GPU_USE_KEYS = {"method": _OPTIONAL_TEXT, "evidence": (str,), "devices": _TEXT_LIST,
                 "nvml": _OPTIONAL_TEXT, "kernels": (dict, type(None))}
# The kernels object of a gpu-use record (CUPTI's totals); counts are whole numbers in 0 .. 2**64-1.
_KERNEL_KEYS = {"tracer": _OPTIONAL_TEXT, "error": (str,), "devices": _TEXT_LIST, "top": (list,),
                "memcpy": (dict,), "memset": (dict,)}
_KERNEL_COUNTS = ("launches", "gpu_time_ns", "dropped", "incomplete", "untimed")
_MAX_COUNT = 2**64 - 1  # CUPTI's counters and timestamps are 64-bit
_GPU_FACTS_KEYS = {"cuda_visible_devices": _OPTIONAL_TEXT, "confidential_computing": (dict, type(None)),
                   "notes": _TEXT_LIST}


def json_object(value: str, what: str) -> dict[str, Any]:
    """The JSON object on a ``what:`` line; ReceiptFormatError for anything else."""
    try:
        parsed = _JSON_DECODER.decode(value)
    except (ValueError, RecursionError) as exc:
        raise ReceiptFormatError(f"{what} field is not valid JSON: {value!r}") from exc
    if not isinstance(parsed, dict):
        raise ReceiptFormatError(f"{what} field must be a JSON object: {value!r}")
    return parsed


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


# json.loads(value, parse_constant=_reject_constant), without building a decoder per call (json.loads
# also refuses a leading byte-order mark, which this decoder refuses as not JSON).
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def gpu_use_object(value: str) -> dict[str, Any]:
    """A ``gpu-use:`` record: the ``test`` it speaks for, ``used``, and the evidence."""
    use = json_object(value, "gpu-use")
    if not isinstance(use.get("test"), str):
        raise ReceiptFormatError(f"gpu-use field needs a string 'test': {value!r}")
    if "used" not in use or not (use["used"] is None or isinstance(use["used"], bool)):
        raise ReceiptFormatError(f"gpu-use field needs 'used' true, false or null: {value!r}")
    _check_known_keys(use, _GPU_USE_KEYS, "gpu-use", value)
    if isinstance(use.get("kernels"), dict):
        _check_kernels(use["kernels"], value)
    return use


def _check_kernels(kernels: dict[str, Any], value: str) -> None:
    _check_known_keys(kernels, _KERNEL_KEYS, "gpu-use kernels", value)
    counts = [kernels[key] for key in _KERNEL_COUNTS if key in kernels]
    for part in ("memcpy", "memset"):
        counts += [kernels[part].get(key) for key in ("count", "bytes") if key in kernels.get(part, {})]
    for entry in kernels.get("top", []):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
            raise ReceiptFormatError(f"gpu-use kernels field has a bad 'top' entry: {value!r}")
        counts += [entry[key] for key in ("launches", "gpu_time_ns") if key in entry]
    if not all(_is_count(n) for n in counts):
        raise ReceiptFormatError(f"gpu-use kernels field has a count that is not a whole number "
                                 f"from 0 to 2**64-1: {value!r}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT


def gpu_facts_object(value: str) -> dict[str, Any]:
    """The ``gpu-facts:`` record: where the device facts came from (``source``), and more."""
    facts = json_object(value, "gpu-facts")
    if not isinstance(facts.get("source"), str):
        raise ReceiptFormatError(f"gpu-facts field needs a string 'source': {value!r}")
    _check_known_keys(facts, _GPU_FACTS_KEYS, "gpu-facts", value)
    return facts


# A check record's known keys: a test for the value, and what it must be; others are kept unread.
_CHECK_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "test": (lambda v: isinstance(v, str), "a string"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "outcome": (lambda v: v in CHECK_OUTCOMES, "passed, failed or error"),
    "ok": (lambda v: isinstance(v, bool), "true or false"),
    "message": (lambda v: isinstance(v, str), "a string"),
    "rtol": (is_finite_number, "a finite number"),
    "atol": (is_finite_number, "a finite number"),
    "max_abs_err": (is_error_maximum, 'a finite number, "nan", "inf" or "-inf"'),
    "max_rel_err": (is_error_maximum, 'a finite number, "nan", "inf" or "-inf"'),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
}


def _quoted(value: str) -> str:
    return repr(value) if len(value) <= MAX_CHECK_QUOTE else repr(value[:MAX_CHECK_QUOTE]) + "..."


def check_object(value: str) -> dict[str, Any]:
    """A ``check:`` record: ``test`` and ``name``, and an ``outcome`` or (written before
    outcomes, and still beside them) ``ok``; each known key of the right type."""
    check = json_object(value, "check")
    for key in ("test", "name"):
        if key not in check:
            raise ReceiptFormatError(f"check field has no {key!r}: {_quoted(value)}")
    for key, (valid, wanted) in _CHECK_FIELDS.items():
        if key in check and not valid(check[key]):
            raise ReceiptFormatError(f"check field has a bad {key!r} (must be {wanted}): {_quoted(value)}")
    if "outcome" not in check and "ok" not in check:
        raise ReceiptFormatError(f"check field has neither 'outcome' nor 'ok': {_quoted(value)}")
    if "outcome" in check and "ok" in check and check["ok"] != (check["outcome"] == "passed"):
        raise ReceiptFormatError(f"check field's 'ok' contradicts its 'outcome': {_quoted(value)}")
    return check


def _check_known_keys(data: dict[str, Any], known: dict[str, Any], what: str, value: str) -> None:
    for key, kind in known.items():
        if key not in data:
            continue
        item = data[key]
        ok = (isinstance(item, list) and all(isinstance(x, str) for x in item)) if kind == _TEXT_LIST \
            else isinstance(item, kind)
        if not ok:
            raise ReceiptFormatError(f"{what} field has a bad {key!r}: {value!r}")
