"""Reading the console's HTML forms (``application/x-www-form-urlencoded``) into the JSON-shaped bodies the
management services validate, so that a bad value gets the API's §3 error naming the same field.

Blank inputs are left out (or sent as null where the API clears a field with null); integer fields that look like
integers become integers; anything else is passed on as text for the service to judge."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.requests import Request

from tollway.errors import InvalidRequest, RequestTooLarge

MAX_FORM_BYTES: Final = 65_536
_INTEGER: Final = re.compile(r"-?[0-9]{1,18}")


class Form:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str) -> str | None:
        """The last value of ``name``, stripped; None when absent."""
        found = None
        for key, value in self._pairs:
            if key == name:
                found = value.strip()
        return found

    def text(self, name: str) -> str | None:
        """A non-blank value, else None."""
        value = self.get(name)
        return value or None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def checked(self, name: str) -> bool:
        return self.get(name) is not None

    def body(self, fields: dict[str, str]) -> dict[str, Any]:
        """``fields`` maps a field name to its kind: ``text``, ``int`` or ``usd`` (USD amounts travel as text, as
        §9.1 allows), with ``|null`` when a blank input clears the field; otherwise a blank input is left out."""
        body: dict[str, Any] = {}
        for name, kind in fields.items():
            value = self.get(name)
            if value is None:
                continue
            base, _, blank = kind.partition("|")
            if value == "":
                if blank == "null":
                    body[name] = None
                continue
            body[name] = int(value) if base == "int" and _INTEGER.fullmatch(value) else value
        return body


async def read_form(request: Request) -> Form:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise InvalidRequest("Console forms must be sent as application/x-www-form-urlencoded.", "Content-Type")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            raise RequestTooLarge(f"A console form may hold at most {MAX_FORM_BYTES} bytes.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The form is not valid UTF-8.") from None
    try:
        return Form(parse_qsl(text, keep_blank_values=True, max_num_fields=500))
    except ValueError:
        raise InvalidRequest("The form has too many fields.") from None
