"""``domain/json_bytes.dumps``: orjson's bytes, and integers beyond 64 bits (kept exact by strict request parsing)
written as their digits instead of failing (found by fuzzing /v1/responses, whose answer echoes the request's tools)."""

from __future__ import annotations

import json

import orjson

from tollway.domain.json_bytes import dumps, loads

BIG = 15904859041765890457600


def test_ordinary_values_are_orjson_bytes() -> None:
    value = {"a": [1, 2.5, None, True, "é"], "b": {"c": 2**64 - 1, "d": -(2**63)}}
    assert dumps(value) == orjson.dumps(value)


def test_integers_beyond_64_bits_keep_their_digits() -> None:
    value = {"tools": [{"parameters": {"maximum": BIG, "minimum": -BIG}}], "t": (2**64,), "n": 1}
    written = dumps(value)
    assert json.loads(written) == {"tools": [{"parameters": {"maximum": BIG, "minimum": -BIG}}], "t": [2**64], "n": 1}
    assert b'"maximum":15904859041765890457600' in written


def test_fragments_already_in_the_value_are_kept() -> None:
    assert dumps({"raw": orjson.Fragment(b'{"x":1}'), "big": BIG}) == b'{"raw":{"x":1},"big":15904859041765890457600}'


def test_loads_reads_them_back_exactly() -> None:
    value = {"big": BIG, "neg": -(2**63) - 1, "ok": [1, 2.5, "15904859041765890457600"]}
    assert loads(dumps(value)) == value
    assert loads(b'{"a": 1}') == {"a": 1}
