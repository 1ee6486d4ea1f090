"""Strict JSON parsing of request bodies (SPEC §1.2, §7.2, §9.1).

Rejected with 400 ``invalid_request`` (``param`` null, or the JSON path of the offending string):
invalid UTF-8, malformed JSON, ``NaN``/``Infinity`` (and numbers that overflow a double), duplicate object keys,
lone surrogate escapes, ``\\u0000`` in strings, nesting deeper than 64 levels, integers over 4,300 digits, and a
body that is not a JSON object.

Two parsers share these rules. The reference one is the stdlib decoder with hooks (``_parse_reference``);
``parse_json_body_exact`` uses it with ``parse_float=Decimal`` so USD amounts never pass through binary floats.
``parse_json_body``, on the hot path of every inference call, parses with orjson and then proves with cheap
byte-level checks that orjson's laxities (duplicate keys kept last-wins, ``\\u0000`` accepted, integers beyond
64 bits turned into floats) did not apply; whenever a check cannot prove it, the reference parser decides.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NoReturn

import orjson

from tollway.errors import InvalidRequest

MAX_DEPTH: Final = 64
MAX_INT_DIGITS: Final = 4300

# Beyond these magnitudes orjson may have turned a JSON integer into a float (it keeps integers in
# [-2**63, 2**64 - 1] exact); such floats send the body to the reference parser to get the exact int back.
_FLOAT_MAYBE_BIG_INT: Final = 9.2e18
# A regex finds these faster than `bytes in` (whose search for a backslash pair is slow on text).
_NUL_OR_COLON_ESCAPE: Final = re.compile(rb"\\u00(?:00|3[aA])")


class _TreeError(Exception):
    """A rule broken inside the parsed tree; ``path`` is filled in (innermost first) as it unwinds."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []


class _TooDeep(Exception):
    """Nesting beyond ``MAX_DEPTH``: reported without a path, which would be up to 64 segments long."""


class _NotProven(Exception):
    """The fast path could not prove the orjson result equals the reference result."""


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a strict JSON object; numbers become ``int`` or ``float``.

    Integers keep their exact value up to 4,300 digits, so one beyond 64 bits can come back; ``orjson.dumps``
    refuses those (``JSONEncodeError``), so code that re-serialises a body must allow for it."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Invalid input (the reference parser words the error) or an integer too long for a double.
        return _parse_reference(raw, exact=False)
    if type(value) is not dict:
        return _parse_reference(raw, exact=False)
    # orjson accepts "\u0000"; and a "\u003a" escape is a colon the count below cannot see in `raw`.
    if _NUL_OR_COLON_ESCAPE.search(raw) is not None:
        return _parse_reference(raw, exact=False)
    try:
        _fast_walk(value, 1)
    except _NotProven:
        return _parse_reference(raw, exact=False)
    # Duplicate keys: outside strings, a colon separates each key from its value, and orjson never escapes
    # a colon inside a string. So `raw` has exactly as many colons as the re-serialised value iff no member
    # was dropped, i.e. no object had a repeated key (escaped colons were excluded above).
    if raw.count(b":") != orjson.dumps(value).count(b":"):
        return _parse_reference(raw, exact=False)
    return value


def parse_json_body_exact(raw: bytes) -> dict[str, Any]:
    """Like ``parse_json_body``, but numbers with a fraction or exponent become ``decimal.Decimal``, exactly as
    written (for USD amounts, SPEC §9.1). For management routes; integers stay ``int``."""
    return _parse_reference(raw, exact=True)


def _fast_walk(container: dict[str, Any] | list[Any], depth: int) -> None:
    """Depth limit, and floats that may have been oversized integers; any doubt raises ``_NotProven``."""
    if depth > MAX_DEPTH:
        raise _NotProven
    items: Iterable[Any] = container.values() if type(container) is dict else container
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            _fast_walk(item, depth + 1)
        elif kind is float and (item >= _FLOAT_MAYBE_BIG_INT or item <= -_FLOAT_MAYBE_BIG_INT):
            raise _NotProven


def _parse_reference(raw: bytes, *, exact: bool) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid UTF-8 (invalid byte at offset {exc.start}); send JSON encoded as UTF-8."
        ) from None
    if text.startswith("\ufeff"):
        raise InvalidRequest("The request body starts with a byte order mark (BOM); send UTF-8 JSON without one.")
    decoder = _EXACT_DECODER if exact else _FLOAT_DECODER
    try:
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except RecursionError:
        _too_deep()
    if type(value) is not dict:
        raise InvalidRequest("The request body must be a JSON object.")
    # Lone surrogates and NUL can only arrive through \u escapes: a valid UTF-8 body carries neither raw.
    check_strings = b"\\u" in raw and (b"\\u0000" in raw or b"\\ud" in raw or b"\\uD" in raw)
    try:
        _check_tree(value, 1, check_strings)
    except _TooDeep:
        _too_deep()
    except _TreeError as exc:
        raise InvalidRequest(exc.message, _format_path(exc.path)) from None
    return value


def _check_tree(container: dict[str, Any] | list[Any], depth: int, check_strings: bool) -> None:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if type(container) is dict:
        for key, item in container.items():
            try:
                if check_strings:
                    _check_string(key)
                _check_item(item, depth, check_strings)
            except _TreeError as exc:
                exc.path.append(key)
                raise
    else:
        for index, item in enumerate(container):
            try:
                _check_item(item, depth, check_strings)
            except _TreeError as exc:
                exc.path.append(index)
                raise


def _check_item(item: object, depth: int, check_strings: bool) -> None:
    kind = type(item)
    if kind is dict or kind is list:
        _check_tree(item, depth + 1, check_strings)  # type: ignore[arg-type]
    elif kind is str and check_strings:
        _check_string(item)  # type: ignore[arg-type]


def _check_string(text: str) -> None:
    if "\x00" in text:
        raise _TreeError("The request body contains a NUL character (\\u0000) in a string, which is not allowed.")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _TreeError(
                "The request body contains a lone UTF-16 surrogate escape in a string; "
                "only complete surrogate pairs are allowed."
            ) from None


def _format_path(path: list[str | int]) -> str | None:
    out = ""
    for segment in reversed(path):
        if type(segment) is int:
            out += f"[{segment}]"
        else:
            out = f"{out}.{segment}" if out else str(segment)
    return out or None


def _too_deep() -> NoReturn:
    raise InvalidRequest(f"The request body is nested deeper than {MAX_DEPTH} levels, the most allowed.")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= 64 else key[:64] + "..."
                raise InvalidRequest(
                    f"The request body has the key {shown!r} twice in one object; object keys must be unique."
                )
            seen.add(key)
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise InvalidRequest(f"The request body contains {name}, which is not a valid JSON number.")


def _parse_int(digits: str) -> int:
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
        raise InvalidRequest(f"The request body contains an integer longer than {MAX_INT_DIGITS:,} digits.")
    return int(digits)


def _parse_finite_float(literal: str) -> float:
    number = float(literal)
    if math.isinf(number):
        _out_of_range(literal)
    return number


def _parse_decimal(literal: str) -> Decimal:
    try:
        return Decimal(literal)
    except InvalidOperation:  # an exponent beyond what decimal can represent
        _out_of_range(literal)


def _out_of_range(literal: str) -> NoReturn:
    shown = literal if len(literal) <= 32 else literal[:32] + "..."
    raise InvalidRequest(f"The request body contains the number {shown}, which is out of range.")


_FLOAT_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=_parse_finite_float,
)
_EXACT_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_reject_constant,
    parse_int=_parse_int,
    parse_float=_parse_decimal,
)
