"""gitproof.receipt.checks: a ``check:`` record as a typed CheckRecord, and the receipt's typed
accessors for its JSON-valued fields."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gitproof.gpu import GpuDevice, GpuFacts, GpuUse
from gitproof.receipt import CHECK_OUTCOMES, CheckRecord, ReceiptFormatError, check_outcome, parse_note
from gitproof.receipt.fields import check_object
from tests.factories import make_receipt

EVIDENCE = sorted((Path(__file__).parent.parent.parent / "docs" / "gpu-evidence").glob("*.receipt"))
JSON_FIELDS = ("test", "name", "outcome", "message", "max_abs_err", "max_rel_err", "rtol", "atol", "metadata")


def test_a_full_record_reads_as_written():
    data = {"test": "t::a", "name": "sum", "outcome": "failed", "ok": False, "message": "off by 1",
            "max_abs_err": 1, "max_rel_err": "inf", "rtol": 1e-5, "atol": 0, "metadata": {"n": 3}}
    record = CheckRecord.from_dict(check_object(json.dumps(data)))
    assert record == CheckRecord("t::a", "sum", "failed", "off by 1", 1, "inf", 1e-5, 0, {"n": 3})
    assert not record.passed
    assert list(record.to_json()) == list(JSON_FIELDS)
    assert record.to_json() == {key: data[key] for key in JSON_FIELDS}


@pytest.mark.parametrize("ok, outcome", [(True, "passed"), (False, "failed")])
def test_an_older_record_gets_its_outcome_from_ok_and_nulls_for_what_it_lacks(ok, outcome):
    record = CheckRecord.from_dict({"test": "t::a", "name": "n", "ok": ok, "rtol": 1e-5, "atol": 0})
    assert record.outcome == outcome == check_outcome({"ok": ok}) and record.passed == ok
    assert record.to_json() == {"test": "t::a", "name": "n", "outcome": outcome, "message": "",
                                "max_abs_err": None, "max_rel_err": None, "rtol": 1e-5, "atol": 0,
                                "metadata": {}}


def test_to_json_is_a_copy():
    record = CheckRecord.from_dict({"test": "t", "name": "n", "outcome": "passed", "metadata": {"k": 1}})
    record.to_json()["metadata"]["k"] = 2
    assert record.metadata == {"k": 1}


@pytest.mark.parametrize("data", [
    {},
    {"test": 1, "name": None, "outcome": "maybe", "message": ["x"], "metadata": [1]},
    {"test": "t", "name": "n", "ok": "yes"},
    {"test": "t", "name": "n", "outcome": None, "ok": True},
    {"test": "t", "name": "n", "outcome": ["passed"]},
])
def test_a_hostile_record_never_reads_as_passed_and_never_raises(data):
    record = CheckRecord.from_dict(data)
    assert record.outcome == "error" and not record.passed
    assert isinstance(record.test, str) and isinstance(record.name, str)
    assert isinstance(record.message, str) and isinstance(record.metadata, dict)
    json.dumps(record.to_json(), allow_nan=False)  # always valid JSON


@pytest.mark.parametrize("value", [True, "1e-5", float("nan"), float("inf"), 2**64 + 1, -(2**64) - 1, [1], {}, None])
def test_numbers_that_are_not_finite_or_not_numbers_read_as_absent(value):
    record = CheckRecord.from_dict({"test": "t", "name": "n", "outcome": "passed", "rtol": value, "atol": value,
                                    "max_abs_err": value, "max_rel_err": value})
    assert (record.rtol, record.atol, record.max_abs_err, record.max_rel_err) == (None, None, None, None)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", 0, -3, 2**64, 1.5e-300])
def test_error_maxima_keep_what_the_parser_accepts(value):
    line = json.dumps({"test": "t", "name": "n", "outcome": "failed", "max_abs_err": value})
    assert CheckRecord.from_dict(check_object(line)).max_abs_err == value


def test_the_parser_stays_strict_about_what_the_record_reads_leniently():
    for bad in ('{"test": "t", "name": "n", "outcome": "maybe"}', '{"test": 1, "name": "n", "ok": true}',
                '{"test": "t", "name": "n", "ok": true, "rtol": true}',
                '{"test": "t", "name": "n", "ok": true, "max_rel_err": "NaN"}',
                f'{{"test": "t", "name": "n", "ok": true, "atol": {2**64 + 1}}}'):
        with pytest.raises(ReceiptFormatError, match="check field"):
            check_object(bad)


_finite = st.one_of(st.integers(-(2**64), 2**64), st.floats(allow_nan=False, allow_infinity=False))
_records = st.fixed_dictionaries(
    {"test": st.text(), "name": st.text()},
    optional={"outcome": st.sampled_from(CHECK_OUTCOMES), "message": st.text(), "rtol": _finite, "atol": _finite,
              "max_abs_err": st.one_of(_finite, st.sampled_from(["nan", "inf", "-inf"])),
              "max_rel_err": st.one_of(_finite, st.sampled_from(["nan", "inf", "-inf"])),
              "metadata": st.dictionaries(st.text(), st.integers()), "newer": st.integers()},
).flatmap(lambda d: st.just(d) if "outcome" in d else st.booleans().map(lambda ok: {**d, "ok": ok}))


@given(_records)
def test_every_record_the_parser_accepts_reads_back_as_written(data):
    parsed = check_object(json.dumps(data, allow_nan=False))
    record = CheckRecord.from_dict(parsed)
    expected = {"test": data["test"], "name": data["name"], "outcome": check_outcome(data),
                "message": data.get("message", ""), "max_abs_err": data.get("max_abs_err"),
                "max_rel_err": data.get("max_rel_err"), "rtol": data.get("rtol"), "atol": data.get("atol"),
                "metadata": data.get("metadata", {})}
    assert record.to_json() == expected
    assert CheckRecord.from_dict(record.to_json()) == record


# -- the receipt's typed accessors ---------------------------------------------------------------

def test_a_receipt_reads_its_json_fields_as_typed_records():
    use = {"test": "t::a", "used": True, "method": "torch.cuda.memory_stats", "evidence": "3 allocations",
           "devices": [], "nvml": "listed"}
    facts = {"source": "nvml", "cuda_visible_devices": "0", "confidential_computing": None, "notes": []}
    receipt = make_receipt(gpus=[{"index": 0, "name": "H100", "visible": False}], gpu_facts=facts, gpu_use=[use],
                           checks=[{"test": "t::a", "name": "n", "ok": False}])
    assert receipt.device_records == [GpuDevice.from_dict(receipt.gpus[0])]
    assert receipt.device_records[0].visible is False and receipt.device_records[0].name == "H100"
    assert receipt.facts_record == GpuFacts.from_dict(facts, receipt.gpus)
    assert receipt.facts_record.cuda_visible_devices == "0" and receipt.facts_record.devices[0].name == "H100"
    assert receipt.use_records == [GpuUse.from_dict(use)]
    assert [c.outcome for c in receipt.check_records] == ["failed"]


def test_an_older_receipt_has_no_facts_record():
    receipt = make_receipt()
    assert receipt.gpu_facts is None and receipt.facts_record is None
    assert receipt.use_records == [] and receipt.check_records == []


@pytest.mark.parametrize("path", EVIDENCE, ids=lambda p: p.name)
def test_the_check_records_of_real_receipts_read_as_written(path):
    """(tests/gpu/test_records.py reads their GPU records back byte for byte.)"""
    for entry in parse_note(path.read_text()):
        assert entry.signed is not None
        receipt = entry.signed.receipt
        for record, check in zip(receipt.check_records, receipt.checks, strict=True):
            assert record.outcome == check_outcome(check)
            assert {k: v for k, v in record.to_json().items() if k in check} == {k: check[k] for k in JSON_FIELDS
                                                                               if k in check}
