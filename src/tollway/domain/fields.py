"""Strict request bodies (SPEC §1.2): every field known, writable and well-typed, or 400 ``invalid_request`` whose
``param`` is the field's JSON path (``settings.rate_limits.rpm``, ``scopes[1]``).

Bodies come from ``read_json_exact``: integers are ``int``, other numbers ``Decimal``. Booleans are never numbers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

import orjson

from tollway.domain.json_bytes import INT64_MIN, UINT64_MAX
from tollway.domain.money import usd_to_nanos
from tollway.errors import InvalidRequest

INT32_MAX: Final = 2**31 - 1
METADATA_MAX_BYTES: Final = 8192

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def path_of(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check_keys(
    body: Mapping[str, Any],
    allowed: Collection[str],
    *,
    read_only: Collection[str] = (),
    immutable: Collection[str] = (),
    prefix: str = "",
) -> None:
    """Reject the first field that is not writable here: immutable, read-only or unknown (mass assignment, §15)."""
    for name in body:
        if name in allowed:
            continue
        param = path_of(prefix, name)
        if name in immutable:
            raise InvalidRequest(f"{param} cannot be changed after creation.", param)
        if name in read_only:
            raise InvalidRequest(f"{param} is read-only and cannot be set.", param)
        raise InvalidRequest(f"Unknown field {param}; remove it from the request body.", param)


def required(body: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    if name not in body:
        param = path_of(prefix, name)
        raise InvalidRequest(f"{param} is required.", param)
    return body[name]


def as_str(
    value: object,
    param: str,
    *,
    max_len: int,
    min_len: int = 1,
    pattern: re.Pattern[str] | None = None,
    single_line: bool = True,
) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string{_got(value)}.", param)
    if not min_len <= len(value) <= max_len:
        raise InvalidRequest(f"{param} must be {_length_rule(min_len, max_len)}.", param)
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidRequest(f"{param} must match {pattern.pattern}.", param)
    if single_line and any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidRequest(f"{param} must not contain control characters.", param)
    return value


def as_opt_str(value: object, param: str, *, max_len: int, min_len: int = 0, single_line: bool = True) -> str | None:
    if value is None:
        return None
    return as_str(value, param, max_len=max_len, min_len=min_len, single_line=single_line)


def as_bool(value: object, param: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest(f"{param} must be a boolean (true or false){_got(value)}.", param)
    return value


def as_int(value: object, param: str, *, minimum: int, maximum: int = INT32_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{param} must be an integer{_got(value)}.", param)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{param} must be an integer between {minimum} and {maximum}.", param)
    return value


def as_opt_int(value: object, param: str, *, minimum: int, maximum: int = INT32_MAX) -> int | None:
    return None if value is None else as_int(value, param, minimum=minimum, maximum=maximum)


def as_usd(value: object, param: str, *, allow_zero: bool = False) -> int:
    """USD in, n$ out (SPEC §9.1); the money module owns the input rules."""
    return usd_to_nanos(value, param, allow_zero=allow_zero)


def as_opt_usd(value: object, param: str, *, allow_zero: bool = False) -> int | None:
    return None if value is None else usd_to_nanos(value, param, allow_zero=allow_zero)


def as_object(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{param} must be a JSON object{_got(value)}.", param)
    return value


def as_metadata(value: object, param: str) -> dict[str, Any]:
    """A JSON object of at most 8 KiB; exact Decimals become floats (metadata is opaque, not money)."""
    plain = _plain_json(as_object(value, param), param)
    if len(orjson.dumps(plain)) > METADATA_MAX_BYTES:
        raise InvalidRequest(f"{param} must serialise to at most {METADATA_MAX_BYTES} bytes of JSON.", param)
    assert isinstance(plain, dict)
    return plain


def as_future_timestamp(value: object, param: str, now: datetime) -> datetime:
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be an RFC 3339 timestamp string{_got(value)}.", param)
    moment = parse_rfc3339(value)
    if moment is None:
        raise InvalidRequest(f"{param} must be an RFC 3339 timestamp such as 2030-01-31T12:00:00Z.", param)
    if moment <= now:
        raise InvalidRequest(f"{param} must be in the future.", param)
    return moment


def parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time with any offset, as an aware UTC datetime; None when malformed or impossible."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu is None and (int(off_h) > 23 or int(off_m) > 59):
        return None
    offset = timedelta(0) if zulu else timedelta(hours=int(off_h), minutes=int(off_m)) * (1 if sign == "+" else -1)
    try:
        # A leap second (:60) is read as :59.999999, the last instant before the next minute.
        leap = second == "60"
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if leap else int(second),
            999_999 if leap else micros,
            tzinfo=timezone(offset),
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _plain_json(value: object, param: str) -> object:
    if type(value) is int and not INT64_MIN <= value <= UINT64_MAX:
        # Beyond what JSON encoders (orjson) and the stores hold: refused here, not a 500 when it is stored.
        raise InvalidRequest(f"{param} holds an integer out of range (at most 64 bits).", param)
    if isinstance(value, Decimal):
        number = float(value)
        if number in (float("inf"), float("-inf")):
            raise InvalidRequest(f"{param} holds a number out of range.", param)
        return number
    if isinstance(value, dict):
        return {key: _plain_json(item, path_of(param, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item, f"{param}[{index}]") for index, item in enumerate(value)]
    return value


def _length_rule(min_len: int, max_len: int) -> str:
    if min_len == 0:
        return f"at most {max_len} characters long"
    return f"{min_len} to {max_len} characters long"


def _got(value: object) -> str:
    if value is None:
        return ", not null"
    if isinstance(value, bool):
        return ", not a boolean"
    if isinstance(value, int | Decimal):
        return ", not a number"
    if isinstance(value, str):
        return ", not a string"
    if isinstance(value, list):
        return ", not an array"
    if isinstance(value, dict):
        return ", not an object"
    return ""
