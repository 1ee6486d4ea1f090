"""USD amounts at the API boundary <-> integer nano-dollars (n$) inside (SPEC §9.1).

Input: a JSON integer, a ``Decimal`` from ``parse_json_body_exact`` (never a binary float), or a string matching
``^[0-9]+(\\.[0-9]{1,9})?$``. Output: a JSON number with at most 9 decimals, no exponent, trailing zeros dropped.
No float is used anywhere here.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

import orjson

from tollway.errors import InvalidRequest

NANOS_PER_USD: Final = 10**9
MAX_USD: Final = 10**9
MAX_NANOS: Final = MAX_USD * NANOS_PER_USD
USD_DECIMALS: Final = 9

# SPEC §9.1 accepts ^[0-9]+(\.[0-9]{1,9})?$; the sign and the longer fraction are matched only to word the error.
_DECIMAL_STRING: Final = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_MAX_USD_DECIMAL: Final = Decimal(MAX_USD)
# Within [0, 10**9] USD with at most 9 decimals a value has at most 19 significant digits.
_MAX_SIGNIFICANT_DIGITS: Final = 19


def usd_to_nanos(value: object, param: str, *, allow_zero: bool = False) -> int:
    """Convert a USD amount from a request body to n$, or raise ``InvalidRequest`` naming ``param``.

    Accepts ``int``, ``Decimal`` and decimal strings. A JSON number is judged by its exact value, so ``1.50``,
    ``15e-1`` and ``1.5000000000`` are all 1.5 USD, while ``1e-10`` has too many decimals. A ``float`` is
    rejected: it can only come from the non-exact parser, and it may already have lost the written digits.
    Callers handle ``None`` themselves where the field is nullable; here it is rejected like any non-amount.
    """
    kind = type(value)
    if kind is int:
        nanos = value * NANOS_PER_USD  # type: ignore[operator]
    elif kind is str:
        nanos = _string_to_nanos(value, param)  # type: ignore[arg-type]
    elif kind is Decimal:
        nanos = _decimal_to_nanos(value, param)  # type: ignore[arg-type]
    elif kind is bool:
        raise InvalidRequest(f"{param} must be a USD amount, not a boolean.", param)
    elif value is None:
        raise InvalidRequest(f"{param} must be a USD amount, not null.", param)
    elif kind is float:
        # Only the non-exact JSON parser makes floats; its value may already differ from what was written.
        raise InvalidRequest(f"{param} could not be read as an exact USD amount.", param)
    else:
        raise InvalidRequest(f'{param} must be a USD amount: a JSON number or a decimal string such as "12.5".', param)
    return _check_range(nanos, param, allow_zero)


def _check_range(nanos: int, param: str, allow_zero: bool) -> int:
    if nanos < 0:
        raise InvalidRequest(f"{param} must not be negative.", param)
    if nanos == 0 and not allow_zero:
        raise InvalidRequest(f"{param} must be greater than 0.", param)
    if nanos > MAX_NANOS:
        raise InvalidRequest(f"{param} must be at most {MAX_USD:,} USD.", param)
    return nanos


def _string_to_nanos(text: str, param: str) -> int:
    match = _DECIMAL_STRING.fullmatch(text)
    if match is None:
        raise InvalidRequest(
            f'{param} must be a JSON number or a string of digits with up to {USD_DECIMALS} decimals, such as "12.5".',
            param,
        )
    sign, whole, fraction = match.group(1), match.group(2).lstrip("0"), match.group(3) or ""
    if sign:
        raise InvalidRequest(f"{param} must not be negative.", param)
    if len(fraction) > USD_DECIMALS:
        raise InvalidRequest(f"{param} must have at most {USD_DECIMALS} decimal places.", param)
    if len(whole) > len(str(MAX_USD)):  # also keeps int() away from huge digit strings
        raise InvalidRequest(f"{param} must be at most {MAX_USD:,} USD.", param)
    return int(whole or "0") * NANOS_PER_USD + int(fraction.ljust(USD_DECIMALS, "0"))


def _decimal_to_nanos(value: Decimal, param: str) -> int:
    if not value.is_finite():
        raise InvalidRequest(f"{param} must be a finite USD amount, not NaN or Infinity.", param)
    if value.is_zero():
        return 0
    if value < 0:
        raise InvalidRequest(f"{param} must not be negative.", param)
    if value > _MAX_USD_DECIMAL:  # exact comparison, before any arithmetic on a possibly huge exponent
        raise InvalidRequest(f"{param} must be at most {MAX_USD:,} USD.", param)
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    # Drop trailing zero digits by hand: Decimal arithmetic would round to the context's 28 digits.
    end = len(digits)
    while digits[end - 1] == 0:
        end -= 1
    exponent += len(digits) - end
    if exponent < -USD_DECIMALS:
        raise InvalidRequest(f"{param} must have at most {USD_DECIMALS} decimal places.", param)
    assert end <= _MAX_SIGNIFICANT_DIGITS  # value <= 10**9 and exponent >= -9
    return int("".join(map(str, digits[:end])) + "0" * (exponent + USD_DECIMALS))


def format_usd(nanos: int) -> str:
    """The plain decimal text of an n$ amount in USD: at most 9 decimals, no exponent, no trailing zeros."""
    whole, fraction = divmod(abs(nanos), NANOS_PER_USD)
    sign = "-" if nanos < 0 else ""
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:09d}".rstrip("0")


def nanos_to_usd(nanos: int) -> int | Decimal:
    """The USD value of ``nanos``, exactly: an ``int`` when whole, else a ``Decimal`` with at most 9 decimals.

    ``str()`` of a small ``Decimal`` may use an exponent (``1E-9``); JSON output should use
    ``nanos_to_json_number`` or ``format_usd`` instead."""
    if nanos % NANOS_PER_USD == 0:
        return nanos // NANOS_PER_USD
    return Decimal(format_usd(nanos))


def nanos_to_json_number(nanos: int) -> orjson.Fragment:
    """An n$ amount as a USD JSON number for ``orjson.dumps``: the raw text of ``format_usd``, so orjson emits it
    verbatim (no float rounding, no exponent). ``orjson.Fragment`` is orjson's pre-serialised-JSON wrapper."""
    return orjson.Fragment(format_usd(nanos).encode("ascii"))
