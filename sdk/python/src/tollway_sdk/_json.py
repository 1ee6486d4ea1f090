"""JSON in and out without binary floats on the money path (SPEC §9.1).

Answers are decoded with every number that has a fraction or an exponent read as ``decimal.Decimal`` straight from
its text, so ``0.00039675`` is exactly that many dollars. Request bodies encode ``Decimal`` as a plain JSON number
(no exponent), which the server parses exactly too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any


def loads(data: bytes | str) -> Any:
    return json.loads(data, parse_float=Decimal)


def dumps(value: object) -> bytes:
    return "".join(_encode(value)).encode("utf-8")


def decimal_text(value: Decimal) -> str:
    """A finite ``Decimal`` as fixed-point text: ``Decimal("1E+2")`` is ``100``, ``Decimal("0.50")`` is ``0.50``."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a finite number")
    return format(value, "f")


def _encode(value: object) -> Iterator[str]:
    if value is None or isinstance(value, bool | int | str):
        yield json.dumps(value)
    elif isinstance(value, Decimal):
        yield decimal_text(value)
    elif isinstance(value, float):
        yield json.dumps(value, allow_nan=False)
    elif isinstance(value, datetime):
        yield json.dumps(rfc3339(value))
    elif isinstance(value, Mapping):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            yield ("," if index else "") + json.dumps(key) + ":"
            yield from _encode(item)
        yield "}"
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _encode(item)
        yield "]"
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def rfc3339(moment: datetime) -> str:
    """An aware datetime as RFC 3339; a naive one is refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetimes sent to Tollway must be timezone-aware")
    return moment.isoformat()
