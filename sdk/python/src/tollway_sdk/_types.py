"""Argument types shared by the resources: the ``NOT_GIVEN`` sentinel that tells "leave this field out" from
``None`` ("set it to null"), USD amounts, and the helpers that build request bodies and queries from them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal, TypeAlias, TypeVar, final

from tollway_sdk._json import decimal_text, rfc3339

T = TypeVar("T")


@final
class NotGiven:
    """The default of optional arguments: the field is not sent at all (a PATCH then leaves it unchanged)."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

USD: TypeAlias = Decimal | int | str
"""A USD amount: a ``Decimal``, an ``int`` or a decimal string such as ``"0.25"``; never a float (SPEC §9.1)."""


def usd(value: USD, name: str) -> Decimal:
    """A USD argument as an exact ``Decimal``; floats are refused before anything is sent."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{name} must be a Decimal, an int or a decimal string, not {type(value).__name__}")
    amount = Decimal(value)
    decimal_text(amount)  # NaN and infinities never leave the client
    return amount


def body(**fields: object) -> dict[str, Any]:
    """A request body from keyword arguments, leaving out the ``NOT_GIVEN`` ones."""
    return {name: value for name, value in fields.items() if not isinstance(value, NotGiven)}


def usd_fields(fields: Mapping[str, object], *names: str) -> dict[str, Any]:
    """``fields`` with the named USD amounts checked and made exact (``None`` kept: it clears a nullable amount)."""
    out: dict[str, Any] = dict(fields)
    for name in names:
        value = out.get(name)
        if name in out and value is not None:
            out[name] = usd(value, name)
    return out


def query(**params: object) -> dict[str, str]:
    """Query parameters, leaving out ``NOT_GIVEN`` and ``None``; datetimes as RFC 3339, booleans as true/false."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if isinstance(value, NotGiven) or value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[name] = rfc3339(value)
        else:
            out[name] = str(value)
    return out


def given(arguments: Mapping[str, object], *skip: str) -> dict[str, Any]:
    """A request body from a method's arguments (``locals()`` at its first line), without ``self``, the ``skip``
    names and the ``NOT_GIVEN`` ones."""
    return {
        name: value
        for name, value in arguments.items()
        if name != "self" and name not in skip and not isinstance(value, NotGiven)
    }
