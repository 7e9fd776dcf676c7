"""``bodies.strict_json``: a body's JSON value exactly as the stdlib reads it, ints beyond 64 bits
included (orjson alone would make them floats), whichever parser the digits send it to."""

from __future__ import annotations

import json

import pytest

from proxy_addons.bodies import encode_body, strict_json


@pytest.mark.parametrize("text", [
    '{"n": 12345678901234567890123}',  # beyond 64 bits: a float if orjson parsed it
    '[-9223372036854775809, 18446744073709551616]',  # just past int64 / uint64
    '{"digits": [1, 22, 100], "id": "1234567890123456789012"}',  # a long run in a string only
    '{"n": 9223372036854775807, "m": -9223372036854775808}',  # int64's own limits: orjson's
    '[1.5e300, 0.1, 123456789012345678]',
])
def test_values_are_the_stdlib_s(text):
    got = strict_json(text.encode())
    assert got == json.loads(text)
    assert [type(x) for x in _leaves(got)] == [type(x) for x in _leaves(json.loads(text))]


def test_a_big_int_is_recorded_as_an_int():
    body = encode_body(b'{"digits": [7, 123456789012345678901234567890]}', "application/json")
    assert body["kind"] == "json" and body["value"]["digits"][1] == 123456789012345678901234567890


def _leaves(v):
    if isinstance(v, dict):
        return [x for k in sorted(v) for x in _leaves(v[k])]
    if isinstance(v, list):
        return [x for item in v for x in _leaves(item)]
    return [v]
