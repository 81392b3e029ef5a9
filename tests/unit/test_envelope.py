"""The kernel's decoder of the result channel: strict JSON, whatever a stage sends."""

from __future__ import annotations

import gc
import json
import math
from typing import Any

import pytest

from ipyrunner.errors import InvalidOption
from ipyrunner.process import Completed
from ipyrunner.stages.envelope import Outcome, decode
from ipyrunner.stages.stage import encode_input

HINT = ", which JSON cannot hold; return finite numbers"


def decoded(channel: bytes, language: str = "python") -> Outcome:
    done = Completed(("stage",), 0, "", "", 0.1, channel=channel)
    return decode(done, language, result_cap=1 << 20)


def envelope(value_text: str) -> bytes:
    return ('{"ipyrunner": 1, "ok": true, "value": ' + value_text + "}").encode()


@pytest.mark.parametrize(
    ("value_text", "message"),
    [
        ("NaN", "result is NaN"),
        ('{"a": [1, 2, Infinity]}', 'result["a"][2] is Infinity'),
        ("[0, -Infinity]", "result[1] is -Infinity"),
        ('{"x": {"y": 1e999}}', 'result["x"]["y"] is 1e999, beyond a float\'s range'),
        ("[-1E400]", "result[0] is -1E400, beyond a float's range"),
        ('{"é \\"q\\"": [[NaN]]}', 'result["é \\"q\\""][0][0] is NaN'),
    ],
)
def test_numbers_json_cannot_hold_are_a_decode_error_naming_the_path(
    value_text: str, message: str
) -> None:
    outcome = decoded(envelope(value_text))
    assert not outcome.ok
    assert outcome.value is None
    assert outcome.error is not None
    assert (outcome.error.kind, outcome.error.type) == ("decode", "ResultDecodeError")
    assert outcome.error.message.startswith(message + HINT), outcome.error.message


def test_a_forged_bash_envelope_cannot_bring_nan_in_outside_the_value() -> None:
    # What a bash stage printing `1, "junk": NaN` makes of the envelope.
    channel = b'{"value": 1, "junk": NaN\n, "ipyrunner": 1, "ok": true}'
    outcome = decoded(channel, "bash")
    assert outcome.error is not None
    assert outcome.error.message.startswith('the envelope["junk"] is NaN' + HINT)


def test_nan_in_a_key_a_duplicate_replaced_is_still_refused() -> None:
    outcome = decoded(b'{"ipyrunner": 1, "ok": true, "value": NaN, "value": 1}')
    assert outcome.error is not None
    assert outcome.error.message.startswith("the result channel is NaN" + HINT)


def test_nan_in_an_error_envelope_is_refused() -> None:
    channel = b'{"ipyrunner": 1, "ok": false, "error": {"type": "E", "message": NaN}}'
    outcome = decoded(channel)
    assert outcome.error is not None
    assert outcome.error.type == "ResultDecodeError"


@pytest.mark.parametrize(
    "value",
    [1.5e308, -1.7976931348623157e308, 5e-324, 2**200, -0.0, [0.1, {"k": 1e300}]],
    ids=repr,
)
def test_finite_numbers_still_decode(value: Any) -> None:
    outcome = decoded(envelope(json.dumps(value)))
    assert outcome.ok, outcome.error
    assert outcome.value == value


def test_underflow_to_zero_is_a_finite_number() -> None:
    assert decoded(envelope("1e-999")).value == 0.0


def test_strings_that_spell_nan_are_strings() -> None:
    assert decoded(envelope('["NaN", "Infinity", "1e999"]')).value == ["NaN", "Infinity", "1e999"]


def test_deeply_nested_result_is_walked_without_recursing() -> None:
    depth = 900  # within json's own recursion limit, deeper than a recursive walk should go
    outcome = decoded(envelope("[" * depth + "NaN" + "]" * depth))
    assert outcome.error is not None
    assert outcome.error.message.startswith("result" + "[0]" * depth + " is NaN")


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (math.nan, "input is a float nan"),
        ({"a": [1, math.inf]}, 'input["a"][1] is a float inf'),
        ([-math.inf], "input[0] is a float -inf"),
    ],
)
def test_inputs_json_cannot_hold_are_refused_before_the_run(value: Any, where: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        encode_input(value)
    assert str(caught.value).startswith(where + ", which JSON cannot hold")


@pytest.mark.parametrize("enabled", [True, False], ids=["collecting", "not-collecting"])
def test_decoding_leaves_the_garbage_collector_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        assert decoded(envelope("[1, {}]")).value == [1, {}]
        assert decoded(envelope("[NaN]")).error is not None
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_one_overflow_among_many_floats_is_found() -> None:
    floats = ", ".join(f"{i}.5" for i in range(10_000))
    outcome = decoded(envelope(f'{{"x": [{floats}, -2e308]}}'))
    assert outcome.error is not None
    assert outcome.error.message.startswith('result["x"][10000] is -2e308, beyond')


@pytest.mark.parametrize(
    "literal",
    ["1" * 300 + "e10", "1" * 310, "1" * 309 + ".5", "0.5e+309", "123e0000307"],
)
def test_every_spelling_of_a_float_overflow_is_caught(literal: str) -> None:
    """A float literal overflows by its exponent, its digits or both: each is caught."""
    outcome = decoded(envelope(f"[1.5, {literal}]"))
    expected = json.loads(literal)
    if isinstance(expected, float) and math.isinf(expected):
        assert outcome.error is not None
        assert outcome.error.message.startswith("result[1] is "), outcome.error.message
    else:  # an int: Python keeps it exact, JSON has no limit on it
        assert outcome.ok
        assert outcome.value == [1.5, expected]


def test_many_finite_floats_decode_exactly() -> None:
    values = [i / 7 for i in range(10_000)] + [1e308, -2.5e-300]
    assert decoded(envelope(json.dumps(values))).value == values
