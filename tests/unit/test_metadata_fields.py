"""``metadata`` objects (SPEC §5.4, §5.5, §4.3): any JSON object of at most 8 KiB, stored as given. Found by
schemathesis: an integer beyond 64 bits inside metadata was a 500 (the JSON encoder refuses it), now a 400."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollway.domain.fields import as_metadata
from tollway.errors import InvalidRequest


def test_integers_within_64_bits_are_kept() -> None:
    body = {"low": -(2**63), "high": 2**64 - 1, "nested": [{"n": 7}], "ratio": Decimal("0.5")}
    assert as_metadata(body, "metadata") == {"low": -(2**63), "high": 2**64 - 1, "nested": [{"n": 7}], "ratio": 0.5}


@pytest.mark.parametrize(
    ("value", "param"),
    [
        ({"a": 2**64}, "metadata.a"),
        ({"a": -(2**63) - 1}, "metadata.a"),
        ({"a": [1, {"b": 15904859041765890457600}]}, "metadata.a[1].b"),
    ],
)
def test_an_integer_beyond_64_bits_is_a_400_naming_it(value: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        as_metadata(value, "metadata")
    assert caught.value.param == param
    assert caught.value.message == f"{param} holds an integer out of range (at most 64 bits)."
