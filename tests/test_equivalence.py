"""The comparator contract (docs/comparator.md), function by function: gitproof/equivalence.py."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitproof.equivalence import (ERROR, FAILED, MAX_MESSAGE_CHARS, PASSED, CheckResult, bounded,
                                  compare_values, run_check, tolerance)

np = pytest.importorskip("numpy")

NAN, INF = math.nan, math.inf


def outcome(reference, candidate, rtol=1e-5, atol=1e-8) -> str:
    return compare_values("c", reference, candidate, rtol, atol).outcome


# -- default comparison ----------------------------------------------------------------

@pytest.mark.parametrize("reference, candidate", [
    (np.ones(4), np.ones(4) + 1e-9),
    (np.float32(1.0), np.float32(1.0) + np.float32(1e-7)),       # a GPU reduction's result
    (np.float32(3.0), 3.0000001),                                 # NumPy scalar against a float
    ([1.0, 2.0, 3.0], [1.0, 2.0 * (1 + 1e-6), 3.0]),              # within rtol, not equal
    ([1.0, 2.0], (1.0, 2.0)),                                     # a list and a tuple
    ([[1.0, 2.0], [3.0, 4.0]], np.array([[1.0, 2.0], [3.0, 4.0 + 1e-7]])),
    ([[1.0], [2.0, 3.0]], [[1.0], [2.0, 3.0 + 1e-7]]),           # ragged: element by element
    ((np.ones(2), np.zeros(3)), (np.ones(2), np.zeros(3))),       # outputs of different shapes
    (np.array([1.0, NAN, 3.0]), np.array([1.0, NAN, 3.0])),       # NaN at the same place
    ([NAN, 1.0], [NAN, 1.0]),
    (NAN, NAN),
    (np.array([INF, -INF]), np.array([INF, -INF])),
    (1 + 2j, 1 + 2j + 1e-9),
    (np.array([1 + 1j]), np.array([1 + 1j + 1e-9j])),
    (2, 2.0000000001),                                            # int against float: a tolerance
    (np.arange(5), np.arange(5)),
    ([1, 2, 3], (1, 2, 3)),
    (np.array([True, False]), [True, False]),
    ([], []),
    ("text", "text"),
    (None, None),
    (["a", None, 1.0], ("a", None, 1.0 + 1e-9)),                  # not numbers: element by element
])
def test_matching_values_pass(reference, candidate):
    assert outcome(reference, candidate) == PASSED


@pytest.mark.parametrize("reference, candidate, says", [
    (np.ones(4), np.ones(4) * 2,
     "max abs error 1, max rel error 1 (rtol=1e-05, atol=1e-08): 4 of 4 element(s) not close, "
     "the first at [0]: reference 1.0, candidate 2.0"),
    (np.float32(1.0), np.float32(1.1), "(rtol=1e-05, atol=1e-08): reference 1.0, candidate 1.100000023841858"),
    ([1.0, 2.0], [1.0, 2.1], "1 of 2 element(s) not close"),
    ([[1.0], [2.0, 3.0]], [[1.0], [2.0, 3.5]],
     "at [1]: max abs error 0.5, max rel error 0.167 (rtol=1e-05, atol=1e-08): "
     "1 of 2 element(s) not close, the first at [1]: reference 3.0, candidate 3.5"),
    ([[1.0], [2.0, 3.0]], [[1.5], [2.0, 3.5]], "at [0]: max abs error 0.5, max rel error 0.5 (rtol=1e-05, "
     "atol=1e-08): 1 of 1 element(s) not close, the first at [0]: reference 1.0, candidate 1.5 "
     "(and 1 more element(s))"),
    (np.ones(4), np.ones(5), "shape mismatch: (4,) vs (5,)"),
    (np.ones(2), [[1.0], [2.0, 3.0]], "a value cannot be made into an array"),
    ([[1.0], [2.0]], [[1.0], [2.0, 3.0]], "at [1]: shape mismatch: (1,) vs (2,)"),
    ([1.0, NAN], [NAN, 1.0], "2 of 2 element(s) not close"),       # NaN at another place
    (NAN, 1.0, "reference nan, candidate 1.0"),
    (INF, -INF, "reference inf, candidate -inf"),
    (1.0, INF, "reference 1.0, candidate inf"),
    (np.arange(4), np.arange(4) + [0, 0, 0, 1], "1 of 4 element(s) differ (integer or other data must be equal)"),
    ([1, 2], [1, 3], "1 of 2 element(s) differ"),
    (7, 8, "7 != 8"),
    (1 + 1j, 1 - 1j, "reference (1+1j), candidate (1-1j)"),
    ("a", "b", "'a' != 'b'"),
    (1.0, None, "1.0 != None"),
])
def test_mismatches_fail_saying_why(reference, candidate, says):
    result = compare_values("c", reference, candidate, 1e-5, 1e-8)
    assert result.outcome == FAILED and not result.ok
    assert says in result.message


def test_lists_are_compared_element_by_element_without_numpy():
    """Without NumPy the same rules hold: a tolerance for float lists, NaN equal to NaN."""
    script = (
        "import sys; sys.modules['numpy'] = None\n"
        "from gitproof.equivalence import compare_values as c\n"
        "print(c('a', [1.0, [2.0, float('nan')]], (1.0, (2.0000001, float('nan'))), 1e-5, 1e-8).outcome)\n"
        "print(c('b', [1.0, 2.0], [1.0, 2.1], 1e-5, 1e-8).message)\n"
        "print(c('c', [1.0, 2.0], [1.0], 1e-5, 1e-8).message)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "passed",
        "at [1]: max abs error 0.1, max rel error 0.05 (rtol=1e-05, atol=1e-08): reference 2.0, candidate 2.1",
        "length mismatch: 2 vs 1"]


def test_tolerances_decide_and_errors_are_recorded_either_way():
    close = compare_values("c", [10.0], [10.05], 1e-2, 0.0)
    assert close.ok and close.max_abs_err == pytest.approx(0.05) and close.max_rel_err == pytest.approx(0.005)
    far = compare_values("c", [10.0], [10.05], 1e-3, 0.0)
    assert not far.ok and far.max_abs_err == pytest.approx(0.05)
    assert compare_values("c", [0.0], [1e-9], 0.0, 1e-8).ok  # atol alone, at a zero reference


def test_relative_error_is_infinite_at_a_zero_reference_and_nan_against_nan():
    assert compare_values("c", np.array([0.0]), np.array([1.0]), 1e-5, 1e-8).max_rel_err == INF
    assert compare_values("c", 0.0, 1.0, 1e-5, 1e-8).max_rel_err == INF
    against_nan = compare_values("c", np.array([NAN, 1.0]), np.array([1.0, 1.0]), 1e-5, 1e-8)
    assert math.isnan(against_nan.max_abs_err) and math.isnan(against_nan.max_rel_err)


def test_integer_data_records_no_error_maxima():
    result = compare_values("c", np.arange(3), np.arange(3), 1e-5, 1e-8)
    assert result.ok and result.max_abs_err is None and result.max_rel_err is None


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
element = st.one_of(finite, st.just(NAN), st.just(INF))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(element, element), min_size=1, max_size=8),
       st.sampled_from([0.0, 1e-5, 1e-2]), st.sampled_from([0.0, 1e-8, 1e-3]))
def test_a_list_is_compared_as_its_elements_are(pairs, rtol, atol):
    """The array path (NumPy) and the scalar path (plain Python) agree, element by element."""
    reference, candidate = [p[0] for p in pairs], [p[1] for p in pairs]
    whole = compare_values("c", reference, candidate, rtol, atol)
    parts = [compare_values("c", r, c, rtol, atol) for r, c in pairs]
    assert whole.ok == all(p.ok for p in parts)
    for key in ("max_abs_err", "max_rel_err"):
        values = [getattr(p, key) for p in parts]
        expected = NAN if any(math.isnan(v) for v in values) else max(values)
        assert getattr(whole, key) == pytest.approx(expected, nan_ok=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(element, max_size=6))
def test_any_value_matches_itself(values):
    assert outcome(values, list(values), rtol=0.0, atol=0.0) == PASSED
    assert outcome(np.array(values, dtype=np.float32), np.array(values, dtype=np.float32), 0.0, 0.0) == PASSED


# -- custom comparators ------------------------------------------------------------------

def check(compare, reference=lambda: np.ones(3), candidate=lambda: np.ones(3)) -> CheckResult:
    return run_check("c", reference, candidate, compare=compare)


@pytest.mark.parametrize("compare", [
    lambda r, c: np.testing.assert_allclose(r, c),  # pytest-gpu-proof's convention: returns None
    lambda r, c: True,
    lambda r, c: np.allclose(r, c),                 # numpy.bool_
    lambda r, c: (r == c).all(),
    lambda r, c: np.array([True]),
])
def test_none_or_true_passes(compare):
    result = check(compare)
    assert result.outcome == PASSED and result.message == ""


def test_false_fails():
    result = check(lambda r, c: np.False_)
    assert (result.outcome, result.message) == (FAILED, "comparison returned False")
    assert check(lambda r, c: False).outcome == FAILED


def test_assertion_error_fails_with_its_message():
    result = check(lambda r, c: np.testing.assert_allclose(r, c), candidate=lambda: np.ones(3) * 2)
    assert result.outcome == FAILED and "Not equal to tolerance" in result.message


def test_a_bare_assertion_error_still_says_what_happened():
    def compare(r, c):
        raise AssertionError

    bare = check(compare)
    assert (bare.outcome, bare.message) == (FAILED, "comparison raised AssertionError")


def test_another_exception_is_an_error_keeping_the_exception():
    def compare(r, c):
        raise KeyError("missing")

    result = check(compare)
    assert (result.outcome, result.message) == (ERROR, "comparison raised KeyError: 'missing'")
    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize("returned, says", [
    (np.array([True, True]), "comparison returned array([ True,  True]) (ndarray)"),
    (1, "comparison returned 1 (int)"),
    (0.0, "comparison returned 0.0 (float)"),
    ("yes", "comparison returned 'yes' (str)"),
])
def test_a_value_that_is_no_verdict_is_an_error(returned, says):
    result = check(lambda r, c: returned)
    assert result.outcome == ERROR and result.message.startswith(says)
    assert "return None or True for a match" in result.message


# -- the user's functions raising ----------------------------------------------------------

def test_reference_raising_is_an_error_and_the_candidate_is_not_called():
    called = []
    result = run_check("c", lambda: 1 / 0, lambda: called.append(1))
    assert (result.outcome, result.message) == (ERROR, "reference raised ZeroDivisionError: division by zero")
    assert called == []


def test_candidate_raising_is_an_error():
    def candidate():
        raise RuntimeError("CUDA error: out of memory")

    result = run_check("c", lambda: 1.0, candidate)
    assert (result.outcome, result.message) == (ERROR, "candidate raised RuntimeError: CUDA error: out of memory")


def test_an_exception_without_text_is_named():
    def reference():
        raise ValueError

    assert run_check("c", reference, lambda: 1).message == "reference raised ValueError"


def test_values_the_default_comparison_cannot_judge_are_an_error():
    result = run_check("c", lambda: {"x": np.ones(2)}, lambda: {"x": np.ones(2)})
    assert result.outcome == ERROR and result.message.startswith(
        "the default comparison raised (pass compare= for such values) ValueError")


def test_exceptions_that_are_not_errors_pass_through():
    class Stop(BaseException):
        pass

    def reference():
        raise Stop

    with pytest.raises(Stop):
        run_check("c", reference, lambda: 1)


def test_arguments_reach_both_functions_and_metadata_is_kept():
    result = run_check("c", lambda a, b=0: a + b, lambda a, b=0: b + a, args=(1.5,), kwargs={"b": 2},
                       metadata={"n": 3})
    assert result.ok and result.metadata == {"n": 3}


# -- tolerances and the record -------------------------------------------------------------

@pytest.mark.parametrize("bad", [NAN, INF, -1e-3, None, "1e-5", True])
def test_a_tolerance_must_be_a_finite_number_not_below_zero(bad):
    with pytest.raises(ValueError, match="rtol must be a finite number >= 0"):
        run_check("c", lambda: 1, lambda: 1, rtol=bad)
    with pytest.raises(ValueError, match="atol must be a finite number >= 0"):
        tolerance("atol", bad)


def test_tolerances_of_other_numeric_types_become_floats():
    assert tolerance("rtol", np.float32(0.5)) == 0.5 and tolerance("atol", 0) == 0.0


def test_the_record_keeps_outcome_message_errors_and_metadata():
    result = compare_values("sum", [1.0, NAN], [1.5, 2.0], 1e-5, 1e-8)
    result.metadata = {"dtype": np.dtype("float32"), "n": np.int64(2)}
    record = result.to_record("tests/t.py::test_x", np.float32(1e-5), 0)
    assert record == {"test": "tests/t.py::test_x", "name": "sum", "outcome": "failed", "ok": False,
                      "rtol": pytest.approx(1e-5), "atol": 0.0, "max_abs_err": "nan",
                      "max_rel_err": "nan", "message": result.message,
                      "metadata": {"dtype": "float32", "n": 2}}
    assert type(record["rtol"]) is float


def test_a_passing_record_has_no_message():
    record = compare_values("sum", [1.0], [1.0], 1e-5, 1e-8).to_record("t::x", 1e-5, 1e-8)
    assert record["outcome"] == "passed" and record["ok"] is True and "message" not in record
    assert (record["max_abs_err"], record["max_rel_err"]) == (0.0, 0.0)


def test_long_messages_are_cut_saying_how_long_they_were():
    message = "x" * 10_000
    cut = bounded(message)
    assert len(cut) == MAX_MESSAGE_CHARS and cut.endswith(" ... [cut: 10000 characters in all]")
    assert bounded("short") == "short"
    result = CheckResult("c", FAILED, message=message)
    assert result.to_record("t::x", 0, 0)["message"] == cut
    assert result.detail == message  # the name the message had before outcomes
