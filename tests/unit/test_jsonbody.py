"""Strict JSON body parsing (SPEC §7.2): each rejection rule, both parsers, and the fast path proven equal to the
reference parser on generated JSON texts full of escapes, duplicate keys and odd numbers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tollway.errors import InvalidRequest
from tollway.http.jsonbody import MAX_DEPTH, _parse_reference, parse_json_body, parse_json_body_exact

PARSERS = [parse_json_body, parse_json_body_exact]


def _reject(parse: Any, raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse(raw)
    assert info.value.status == 400
    assert info.value.code == "invalid_request"
    assert info.value.message.endswith(".")
    return info.value


def _nested(depth: int, kind: str = "array") -> bytes:
    """A body whose "a" holds containers nested so the innermost is at ``depth`` (the body itself is 1)."""
    if kind == "array":
        inner = "[" * (depth - 1) + "]" * (depth - 1)
    else:
        inner = '{"x":' * (depth - 2) + "{}" + "}" * (depth - 2)
    return b'{"a":' + inner.encode() + b"}"


# ---- accepted bodies


@pytest.mark.parametrize("parse", PARSERS)
def test_typical_chat_body(parse: Any) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": 'Bonjour, ça va ? 日本語 😀\n"quoted" \\ back'}],
        "max_tokens": 256,
        "stream": True,
        "stop": None,
    }
    assert parse(orjson.dumps(body)) == body
    assert parse(json.dumps(body, indent=2).encode()) == body  # \u escapes and whitespace


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":"\\ud83d\\ude00"}', {"a": "😀"}),  # a complete surrogate pair
        (b'{"a":"\\\\u0000"}', {"a": "\\u0000"}),  # an escaped backslash, then the text u0000
        (b'{"a\\u003a":1,"a":2}', {"a:": 1, "a": 2}),  # escaped colon, distinct keys
        (b'{"a":{"b":1},"b":{"b":2}}', {"a": {"b": 1}, "b": {"b": 2}}),  # same key in different objects
        (b'{"u":"\\u00e9\\u003A"}', {"u": "é:"}),
        (b' \t\r\n{ "k" : [ 1 , -0 , true , null ] } \n', {"k": [1, 0, True, None]}),
        (b'{"big":18446744073709551616,"neg":-9223372036854775809}', {"big": 2**64, "neg": -(2**63) - 1}),
        (b'{"u64":18446744073709551615,"i64":-9223372036854775808}', {"u64": 2**64 - 1, "i64": -(2**63)}),
    ],
)
def test_accepted(parse: Any, raw: bytes, expected: dict[str, Any]) -> None:
    assert parse(raw) == expected


@pytest.mark.parametrize("parse", PARSERS)
def test_integers_up_to_4300_digits_are_exact_ints(parse: Any) -> None:
    for literal in ("9" * 4300, "-" + "9" * 4300, "9" * 400):
        value = parse(b'{"n":' + literal.encode() + b"}")["n"]
        assert type(value) is int
        assert value == int(literal)


def test_numbers_float_parser() -> None:
    assert parse_json_body(b'{"a":1.0,"b":1e2,"c":0.7,"d":1E-3,"e":1e20}') == {
        "a": 1.0,
        "b": 100.0,
        "c": 0.7,
        "d": 0.001,
        "e": 1e20,
    }
    assert type(parse_json_body(b'{"a":1e2}')["a"]) is float


def test_numbers_exact_parser() -> None:
    body = parse_json_body_exact(b'{"a":1.0,"b":1e2,"c":0.1,"i":7,"big":1e400,"tiny":1.000000000000000000000000001}')
    assert body == {
        "a": Decimal("1.0"),
        "b": Decimal("1E+2"),
        "c": Decimal("0.1"),
        "i": 7,
        "big": Decimal("1E+400"),
        "tiny": Decimal("1.000000000000000000000000001"),
    }
    assert type(body["i"]) is int
    assert str(body["tiny"]) == "1.000000000000000000000000001"  # no binary float on the way


@pytest.mark.parametrize("parse", PARSERS)
def test_depth_64_is_allowed(parse: Any) -> None:
    assert parse(_nested(MAX_DEPTH))["a"] is not None
    assert parse(_nested(MAX_DEPTH, "object")) is not None


# ---- rejected bodies


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"a":NaN}', "NaN"),
        (b'{"a":Infinity}', "Infinity"),
        (b'{"a":[-Infinity]}', "-Infinity"),
        (b'{"model":"a","model":"b"}', "'model' twice"),
        (b'{"m":[{"role":"user","role":"tool"}]}', "'role' twice"),
        (b'{"a:":1,"a\\u003a":2}', "'a:' twice"),  # the same key, once with an escaped colon
        (b'{"a\\u003a":1,"a\\u003A":2,"b":3}', "'a:' twice"),
        (b'{"k":1,"k":1}', "'k' twice"),
        (b'{"a":"\\u0000"}', "NUL"),
        (b'{"a\\u0000":1}', "NUL"),
        (b'{"a":"x\\\\\\u0000"}', "NUL"),  # an escaped backslash, then a real \u0000 escape
        (b'{"a":"\\ud800"}', "surrogate"),
        (b'{"a":"\\uDC00"}', "surrogate"),
        (b'{"a":"\\ude00\\ud83d"}', "surrogate"),  # a pair in the wrong order
        (b'{"\\ud800":1}', "surrogate"),
        (b'{"a":"\xff"}', "UTF-8"),
        (b'{"a":"\xed\xa0\x80"}', "UTF-8"),  # a surrogate encoded in UTF-8
        (b'{"a":"\xc0\xaf"}', "UTF-8"),  # an overlong encoding
        (b'\xef\xbb\xbf{"a":1}', "byte order mark"),
        (b'{"a":' + b"9" * 4301 + b"}", "4,300 digits"),
        (b'{"a":-' + b"9" * 4301 + b"}", "4,300 digits"),
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"a":1,}', "not valid JSON"),
        (b'{"a":1} x', "not valid JSON"),
        (b"{'a':1}", "not valid JSON"),
        (b'{"a":"tab\there"}', "not valid JSON"),  # a raw control character in a string
        (b'{"a":01}', "not valid JSON"),
        (b'{"a":.5}', "not valid JSON"),
        (b'{"a":+1}', "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b"null", "must be a JSON object"),
    ],
)
def test_rejected(parse: Any, raw: bytes, words: str) -> None:
    assert words in _reject(parse, raw).message


def test_number_overflowing_a_double_is_rejected_by_the_float_parser() -> None:
    error = _reject(parse_json_body, b'{"a":[1e400]}')
    assert "out of range" in error.message
    assert "out of range" in _reject(parse_json_body, b'{"a":-1e400}').message


def test_decimal_exponent_beyond_decimal_range_is_rejected_by_the_exact_parser() -> None:
    assert "out of range" in _reject(parse_json_body_exact, b'{"a":1e99999999999999999999999}').message


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_too_deep(parse: Any, depth: int) -> None:
    error = _reject(parse, _nested(depth))
    assert "deeper than 64" in error.message
    assert error.param is None
    assert "deeper than 64" in _reject(parse, _nested(depth, "object")).message


@pytest.mark.parametrize("parse", PARSERS)
def test_string_faults_name_their_path(parse: Any) -> None:
    raw = b'{"messages":[{"role":"user"},{"role":"user","content":"a\\u0000b"}]}'
    assert _reject(parse, raw).param == "messages[1].content"
    assert _reject(parse, b'{"a":[["\\ud800"]]}').param == "a[0][0]"


@pytest.mark.parametrize("parse", PARSERS)
def test_json_errors_have_no_param(parse: Any) -> None:
    assert _reject(parse, b'{"a":1,"a":2}').param is None
    assert _reject(parse, b"{oops}").param is None


def test_large_body_round_trips() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": f"message {i}: naïve café \n" * 50} for i in range(200)],
    }
    raw = orjson.dumps(body)
    assert len(raw) > 100_000
    assert parse_json_body(raw) == body
    assert parse_json_body_exact(raw) == body


# ---- the fast path against the reference parser

_SPECIAL_CHARS = [":", "\x00", '"', "\\", "u", "0", "\n", "\x1f", "é", "😀", "\u2028"]
_chars = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(_SPECIAL_CHARS),
    st.integers(0xD800, 0xDFFF).map(chr),  # written only as \u escapes: lone surrogates
)
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}


@st.composite
def _json_string(draw: st.DrawFn) -> str:
    out = ['"']
    for char in draw(st.lists(_chars, max_size=8)):
        code = ord(char)
        must_escape = code < 0x20 or char in '"\\' or 0xD800 <= code <= 0xDFFF
        if must_escape or draw(st.booleans()):
            if char in _SHORT_ESCAPES and draw(st.booleans()):
                out.append(_SHORT_ESCAPES[char])
            elif code > 0xFFFF:
                high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
                out.append(f"\\u{high:04x}\\u{low:04X}")
            else:
                out.append(f"\\u{code:04x}" if draw(st.booleans()) else f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e2", "1E400", "-1e-400", "0.5e+3", "-0", "-0.0", "NaN", "Infinity", "9" * 400]),
)
_ws = st.sampled_from(["", "", " ", "\n", "\t "])


def _render_object(draw: st.DrawFn, pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{draw(_ws)}{key}{draw(_ws)}:{draw(_ws)}{value}" for key, value in pairs) + "}"


_KEYS = st.one_of(_json_string(), st.sampled_from(['"a"', '"a:"', '"a\\u003a"', '"b"', '"\\u0062"']))
_scalars = st.one_of(_json_string(), _numbers, st.sampled_from(["true", "false", "null"]))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(_KEYS, children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"
        ),
    ),
    max_leaves=12,
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(_KEYS, _values), max_size=5))
    return (draw(_ws) + _render_object(draw, pairs) + draw(_ws)).encode("utf-8")


def _outcome(parse: Any, raw: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", _typed(parse(raw)))
    except InvalidRequest as exc:
        return ("error", exc.message, exc.param)


def _typed(value: Any) -> Any:
    """The value with every scalar tagged by its type, so 1 and 1.0 and True compare unequal."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


@settings(max_examples=600, deadline=None)
@given(_bodies())
def test_fast_path_matches_reference_parser(raw: bytes) -> None:
    fast = _outcome(parse_json_body, raw)
    assert fast == _outcome(lambda r: _parse_reference(r, exact=False), raw)
    if fast[0] == "ok":  # and the reference agrees with the plain stdlib parser on what it accepts
        assert fast[1] == _typed(json.loads(raw))


@settings(max_examples=200, deadline=None)
@given(_bodies())
def test_exact_parser_accepts_what_the_float_parser_accepts(raw: bytes) -> None:
    floats, exact = _outcome(parse_json_body, raw), _outcome(parse_json_body_exact, raw)
    if floats[0] == "ok":
        assert exact[0] == "ok"
        assert json.loads(raw, parse_float=Decimal) == parse_json_body_exact(raw)
    elif exact[0] == "error" and "out of range" not in floats[1]:
        assert exact == floats
