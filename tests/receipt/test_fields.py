"""gitproof.receipt.fields: the JSON-valued header fields, checked key by key."""
from __future__ import annotations

import pytest

from gitproof.receipt import ReceiptFormatError, check_outcome
from gitproof.receipt.fields import MAX_CHECK_QUOTE, check_object, gpu_facts_object, gpu_use_object, json_object


@pytest.mark.parametrize("value, message", [
    ("[1]", "must be a JSON object"), ("{", "not valid JSON"), ('{"x": NaN}', "not valid JSON"),
])
def test_a_field_holds_one_json_object(value, message):
    with pytest.raises(ReceiptFormatError, match=message):
        json_object(value, "gpu")


def test_unknown_keys_are_kept_and_known_ones_checked():
    assert gpu_use_object('{"test": "t", "used": null, "newer": [1]}')["newer"] == [1]
    with pytest.raises(ReceiptFormatError, match="bad 'devices'"):
        gpu_use_object('{"test": "t", "used": true, "devices": [1]}')
    with pytest.raises(ReceiptFormatError, match="'used' true, false or null"):
        gpu_use_object('{"test": "t", "used": 1}')


@pytest.mark.parametrize("kernels", ['{"launches": -1}', '{"launches": true}', f'{{"launches": {2**64}}}',
                                     '{"top": [{"launches": 1}]}', '{"memcpy": {"bytes": 1.5}}'])
def test_kernel_counts_are_whole_numbers_in_64_bits(kernels):
    with pytest.raises(ReceiptFormatError, match="kernels"):
        gpu_use_object(f'{{"test": "t", "used": true, "kernels": {kernels}}}')


def test_gpu_facts_name_their_source():
    assert gpu_facts_object('{"source": "nvml", "notes": []}')["source"] == "nvml"
    with pytest.raises(ReceiptFormatError, match="'source'"):
        gpu_facts_object('{"notes": []}')


def test_a_check_has_an_outcome_or_the_older_ok():
    assert check_outcome(check_object('{"test": "t", "name": "n", "outcome": "error"}')) == "error"
    assert check_outcome(check_object('{"test": "t", "name": "n", "ok": false}')) == "failed"
    assert check_outcome(check_object('{"test": "t", "name": "n", "ok": true, "outcome": "passed"}')) == "passed"
    for bad in ('{"test": "t", "name": "n"}', '{"test": "t", "name": "n", "ok": true, "outcome": "failed"}',
                '{"test": "t", "name": "n", "ok": true, "rtol": "x"}', '{"name": "n", "ok": true}'):
        with pytest.raises(ReceiptFormatError, match="check field"):
            check_object(bad)


def test_a_refusal_quotes_a_long_check_line_only_in_part():
    line = '{"test": "t", "name": "n", "message": "' + "m" * 5000 + '"}'
    with pytest.raises(ReceiptFormatError) as refused:
        check_object(line)
    assert len(str(refused.value)) < MAX_CHECK_QUOTE + 100
