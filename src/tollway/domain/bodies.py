"""Declarative request bodies (SPEC §1.2): each writable field of a body with its rule, in one object that both
validates (the services call ``Body.check`` and ``Body.read``) and describes the body as JSON Schema (``Body.schema``,
which the OpenAPI document of ``http/openapi`` embeds). Because one object does both, the document cannot drift from
what a request is judged by. Messages and ``param`` paths are those of ``domain/fields.py``."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from tollway.domain import fields as f
from tollway.errors import InvalidRequest

# SPEC §9.1: a USD amount sent as a string.
USD_STRING: Final = r"^[0-9]+(\.[0-9]{1,9})?$"
MAX_USD: Final = 10**9
# Text without control characters (Unicode category Cc), what ``fields.as_str`` requires of single-line strings.
SINGLE_LINE: Final = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


class Rule(Protocol):
    """How one field's value is judged and converted, and the JSON Schema that says the same."""

    def convert(self, value: object, param: str) -> Any: ...

    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Text:
    max_len: int
    min_len: int = 1
    pattern: re.Pattern[str] | None = None
    single_line: bool = True
    format: str | None = None

    def convert(self, value: object, param: str) -> str:
        return f.as_str(
            value, param, max_len=self.max_len, min_len=self.min_len, pattern=self.pattern, single_line=self.single_line
        )

    def schema(self) -> dict[str, Any]:
        described: dict[str, Any] = {"type": "string", "maxLength": self.max_len}
        if self.min_len:
            described["minLength"] = self.min_len
        if self.pattern is not None:
            described["pattern"] = f"^(?:{self.pattern.pattern})$"
        elif self.single_line:
            described["pattern"] = SINGLE_LINE
        if self.format is not None:
            described["format"] = self.format
        return described


@dataclass(frozen=True, slots=True)
class Integer:
    minimum: int
    maximum: int = f.INT32_MAX

    def convert(self, value: object, param: str) -> int:
        return f.as_int(value, param, minimum=self.minimum, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True, slots=True)
class Boolean:
    def convert(self, value: object, param: str) -> bool:
        return f.as_bool(value, param)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class Usd:
    """A USD amount in, n$ out (SPEC §9.1): a JSON number or a decimal string, at most 9 decimals, ≤ 10⁹ USD."""

    allow_zero: bool = False

    def convert(self, value: object, param: str) -> int:
        return f.as_usd(value, param, allow_zero=self.allow_zero)

    def schema(self) -> dict[str, Any]:
        number: dict[str, Any] = {"type": "number", "maximum": MAX_USD}
        number["minimum" if self.allow_zero else "exclusiveMinimum"] = 0
        return {
            "oneOf": [number, {"type": "string", "pattern": USD_STRING}],
            "description": "USD: a JSON number (parsed exactly) or a decimal string; at most 9 decimals.",
        }


@dataclass(frozen=True, slots=True)
class Choice:
    values: tuple[str, ...]

    def convert(self, value: object, param: str) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise InvalidRequest(f"{param} must be one of {', '.join(self.values)}.", param)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True, slots=True)
class Metadata:
    def convert(self, value: object, param: str) -> dict[str, Any]:
        return f.as_metadata(value, param)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": True,
            "description": f"Any JSON object of at most {f.METADATA_MAX_BYTES} bytes.",
        }


@dataclass(frozen=True, slots=True)
class Custom:
    """A rule with its own converter (URLs, scopes, nested objects) and the schema written beside it."""

    described: Mapping[str, Any]
    converter: Callable[[object, str], Any] = field(compare=False)

    def convert(self, value: object, param: str) -> Any:
        return self.converter(value, param)

    def schema(self) -> dict[str, Any]:
        return dict(self.described)


def _unchecked(value: object, param: str) -> object:
    return value


def checked_elsewhere(described: Mapping[str, Any]) -> Custom:
    """A field whose value the service judges itself (it needs I/O, such as a DNS lookup, or the clock); ``read``
    hands the value back as sent."""
    return Custom(described, _unchecked)


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final[Any] = _Absent()


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    rule: Rule
    required: bool = False
    nullable: bool = False
    default: Any = ABSENT  # the value an absent field takes, judged like a sent one
    description: str | None = None

    def convert(self, value: object, param: str) -> Any:
        if value is None and self.nullable:
            return None
        return self.rule.convert(value, param)

    def schema(self) -> dict[str, Any]:
        described = self.rule.schema()
        if self.nullable:
            described = _nullable(described)
        if self.default is not ABSENT:
            described["default"] = self.default
        if self.description:
            described["description"] = self.description
        return described


def _nullable(described: dict[str, Any]) -> dict[str, Any]:
    kind = described.get("type")
    if isinstance(kind, str) and "enum" not in described:
        return {**described, "type": [kind, "null"]}
    outer = {key: described.pop(key) for key in ("description",) if key in described}
    return {"anyOf": [described, {"type": "null"}], **outer}


class Body:
    """A strict JSON object body: its writable fields, and the names refused as read-only or immutable."""

    def __init__(
        self,
        *fields: Field,
        read_only: Collection[str] = (),
        immutable: Collection[str] = (),
        description: str | None = None,
    ) -> None:
        self.fields: dict[str, Field] = {item.name: item for item in fields}
        self.read_only = tuple(read_only)
        self.immutable = tuple(immutable)
        self.description = description

    def __getitem__(self, name: str) -> Field:
        return self.fields[name]

    def check(self, body: Mapping[str, Any], prefix: str = "") -> None:
        """Reject the first field that is not writable here (immutable, read-only or unknown)."""
        f.check_keys(body, self.fields, read_only=self.read_only, immutable=self.immutable, prefix=prefix)

    def read(self, body: Mapping[str, Any], name: str, prefix: str = "") -> Any:
        """The converted value of ``name``: as sent; else its default; else None (a required one is a 400)."""
        item = self.fields[name]
        param = f.path_of(prefix, name)
        if name in body:
            return item.convert(body[name], param)
        if item.required:
            raise InvalidRequest(f"{param} is required.", param)
        return None if item.default is ABSENT else item.convert(item.default, param)

    def updating(self, *, immutable: Collection[str] = (), drop: Collection[str] = ()) -> Body:
        """The PATCH form: the same rules, nothing required, no defaults; ``immutable`` fields are refused."""
        kept = [
            Field(item.name, item.rule, nullable=item.nullable, description=item.description)
            for item in self.fields.values()
            if item.name not in immutable and item.name not in drop
        ]
        return Body(*kept, read_only=self.read_only, immutable=(*self.immutable, *immutable))

    def schema(self) -> dict[str, Any]:
        properties = {name: item.schema() for name, item in self.fields.items()}
        for name in self.immutable:
            properties[name] = {"readOnly": True, "description": "Immutable after creation; refused when sent."}
        for name in self.read_only:
            properties.setdefault(name, {"readOnly": True, "description": "Read-only; refused when sent."})
        described: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [name for name, item in self.fields.items() if item.required]
        if required:
            described["required"] = required
        if self.description:
            described["description"] = self.description
        return described
