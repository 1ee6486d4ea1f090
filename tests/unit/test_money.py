"""USD <-> n$ conversion (SPEC §9.1): the input rules, the output form, and exact round trips."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.domain.money import (
    MAX_NANOS,
    NANOS_PER_USD,
    format_usd,
    nanos_to_json_number,
    nanos_to_usd,
    usd_to_nanos,
)
from tollway.errors import InvalidRequest
from tollway.http.jsonbody import parse_json_body_exact


def _amount_from_json(literal: str, *, allow_zero: bool = False) -> int:
    """A JSON request carrying the literal, through the exact parser, as management routes read it."""
    body = parse_json_body_exact(b'{"amount_usd":' + literal.encode() + b"}")
    return usd_to_nanos(body["amount_usd"], "amount_usd", allow_zero=allow_zero)


@pytest.mark.parametrize(
    ("literal", "nanos"),
    [
        ("1", NANOS_PER_USD),
        ("12.5", 12_500_000_000),
        ("0.000000001", 1),
        ("1.5", 1_500_000_000),
        ("15e-1", 1_500_000_000),
        ("0.15E1", 1_500_000_000),
        ("1.5000000000000000000000000000000", 1_500_000_000),  # trailing zeros: the value has 1 decimal
        ("1e-9", 1),
        ("1E9", MAX_NANOS),
        ("1000000000", MAX_NANOS),
        ("999999999.999999999", MAX_NANOS - 1),
        ("0.1", 100_000_000),  # exact, although 0.1 has no exact binary float
        ('"12.5"', 12_500_000_000),
        ('"0.000000001"', 1),
        ('"0001"', NANOS_PER_USD),
        ('"1000000000"', MAX_NANOS),
        ('"1000000000.000000000"', MAX_NANOS),
        ('"5"', 5 * NANOS_PER_USD),
    ],
)
def test_accepted_amounts(literal: str, nanos: int) -> None:
    assert _amount_from_json(literal) == nanos


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        ("0", "greater than 0"),
        ("0.0", "greater than 0"),
        ("-0", "greater than 0"),
        ("0e10", "greater than 0"),
        ('"0"', "greater than 0"),
        ('"0.000000000"', "greater than 0"),
        ("-1", "must not be negative"),
        ("-0.5", "must not be negative"),
        ('"-1"', "must not be negative"),
        ("1e-10", "at most 9 decimal places"),
        ("0.0000000001", "at most 9 decimal places"),
        ("1.0000000001", "at most 9 decimal places"),
        ("1e-99999999", "at most 9 decimal places"),
        ('"1.0000000000"', "at most 9 decimal places"),  # strings follow the regex: at most 9 digits written
        ("1000000000.000000001", "at most 1,000,000,000 USD"),
        ("1e10", "at most 1,000,000,000 USD"),
        ("1e400", "at most 1,000,000,000 USD"),
        ("1" + "0" * 4000, "at most 1,000,000,000 USD"),
        ('"1000000000.000000001"', "at most 1,000,000,000 USD"),
        ('"' + "9" * 100_000 + '"', "at most 1,000,000,000 USD"),
        ("true", "not a boolean"),
        ("false", "not a boolean"),
        ("null", "not null"),
        ('"NaN"', "such as"),
        ('"Infinity"', "such as"),
        ('"1e3"', "such as"),
        ('"1."', "such as"),
        ('".5"', "such as"),
        ('" 1"', "such as"),
        ('"1 "', "such as"),
        ('"1\\n"', "such as"),
        ('"+1"', "such as"),
        ('"1,5"', "such as"),
        ('"١"', "such as"),  # an Arabic-Indic digit is not [0-9]
        ('""', "such as"),
        ("[1]", "USD amount"),
        ('{"usd":1}', "USD amount"),
    ],
)
def test_rejected_amounts(literal: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _amount_from_json(literal)
    assert words in info.value.message
    assert info.value.message.startswith("amount_usd ")
    assert info.value.param == "amount_usd"
    assert info.value.status == 400


def test_nan_and_infinity_literals_never_reach_the_converter() -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(InvalidRequest, match="not a valid JSON number"):
            _amount_from_json(literal)


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")])
def test_non_finite_decimals_are_rejected(value: Decimal) -> None:
    with pytest.raises(InvalidRequest, match="finite") as info:
        usd_to_nanos(value, "max_usd")
    assert info.value.param == "max_usd"


def test_floats_are_rejected() -> None:
    # A float can only come from the non-exact parser; it may already differ from the written number.
    with pytest.raises(InvalidRequest, match="exact USD amount"):
        usd_to_nanos(1.5, "amount_usd")


def test_zero_where_allowed() -> None:
    assert _amount_from_json("0", allow_zero=True) == 0
    assert _amount_from_json("0.0", allow_zero=True) == 0
    assert _amount_from_json('"0"', allow_zero=True) == 0
    assert usd_to_nanos(Decimal("-0"), "x", allow_zero=True) == 0
    with pytest.raises(InvalidRequest, match="negative"):
        usd_to_nanos(-1, "x", allow_zero=True)


@pytest.mark.parametrize(
    ("nanos", "text", "value"),
    [
        (0, "0", 0),
        (1, "0.000000001", Decimal("0.000000001")),
        (345_000, "0.000345", Decimal("0.000345")),
        (396_750, "0.00039675", Decimal("0.00039675")),
        (NANOS_PER_USD, "1", 1),
        (1_500_000_000, "1.5", Decimal("1.5")),
        (MAX_NANOS, "1000000000", 10**9),
        (10**30, "1000000000000000000000", 10**21),
        (-1, "-0.000000001", Decimal("-0.000000001")),
        (-2 * NANOS_PER_USD, "-2", -2),
    ],
)
def test_output_form(nanos: int, text: str, value: int | Decimal) -> None:
    assert format_usd(nanos) == text
    result = nanos_to_usd(nanos)
    assert result == value
    assert type(result) is type(value)
    assert orjson.dumps({"usd": nanos_to_json_number(nanos)}) == b'{"usd":' + text.encode() + b"}"


@given(st.integers(1, MAX_NANOS))
def test_round_trips(nanos: int) -> None:
    text = format_usd(nanos)
    assert "e" not in text.lower()
    assert text == text.rstrip("0") or "." not in text
    assert len(text.partition(".")[2]) <= 9
    assert usd_to_nanos(text, "x") == nanos  # the string form
    assert usd_to_nanos(nanos_to_usd(nanos), "x") == nanos  # int or Decimal
    raw = orjson.dumps({"x": nanos_to_json_number(nanos)})  # the JSON number form, back through the parser
    assert usd_to_nanos(parse_json_body_exact(raw)["x"], "x") == nanos
    assert Fraction(nanos_to_usd(nanos)) == Fraction(nanos, NANOS_PER_USD)


@given(st.integers(-(10**25), 10**25), st.integers(-30, 30))
def test_any_decimal_is_converted_exactly_or_rejected(coefficient: int, exponent: int) -> None:
    value = Decimal(coefficient).scaleb(exponent)
    exact = Fraction(coefficient) * Fraction(10) ** exponent
    valid = 0 < exact <= 10**9 and (exact * NANOS_PER_USD).denominator == 1
    if valid:
        assert Fraction(usd_to_nanos(value, "x"), NANOS_PER_USD) == exact
    else:
        with pytest.raises(InvalidRequest):
            usd_to_nanos(value, "x")


@given(st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,12})?", fullmatch=True))
def test_strings_follow_the_regex(text: str) -> None:
    whole, _, fraction = text.partition(".")
    value = Fraction(int(whole)) + (Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0)
    valid = len(fraction) <= 9 and 0 < value <= 10**9
    try:
        nanos = usd_to_nanos(text, "x")
    except InvalidRequest:
        assert not valid
    else:
        assert valid
        assert Fraction(nanos, NANOS_PER_USD) == value
