"""JSON bytes for whatever Tollway writes: orjson, except that integers beyond 64 bits, which strict request parsing
keeps exact (``http/jsonbody.py``) and orjson refuses, are written as their exact digits (and read back exactly by
``loads``); so an answer, an event or a stored object that echoes such a request value is written instead of
failing with a 500."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson

INT64_MIN: Final = -(2**63)
UINT64_MAX: Final = 2**64 - 1
# A run this long may be an integer orjson would read as a float; the standard decoder keeps it exact.
_LONG_DIGITS: Final = re.compile(rb"[0-9]{19}")


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: "Integer exceeds 64-bit range"
        return orjson.dumps(_exact_integers(value))


def _exact_integers(value: Any) -> Any:
    """``value`` with every integer orjson cannot write replaced by a fragment holding its digits."""
    if type(value) is int and not INT64_MIN <= value <= UINT64_MAX:
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {key: _exact_integers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_exact_integers(item) for item in value]
    return value


def loads(raw: bytes | str) -> Any:
    """What ``dumps`` wrote, integers beyond 64 bits included (orjson alone would turn them into floats)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if _LONG_DIGITS.search(data) is None:
        return orjson.loads(data)
    return json.loads(data)
