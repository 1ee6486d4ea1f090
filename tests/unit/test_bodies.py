"""``domain/bodies.py``: one object validates a body and describes it. The rules' JSON Schemas must agree with their
converters at the edges, for every spec the API documents."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import jsonschema
import pytest

from tollway.domain.bodies import (
    Body,
    Boolean,
    Choice,
    Field,
    Integer,
    Metadata,
    Text,
    Usd,
)
from tollway.errors import InvalidRequest
from tollway.http.openapi.document import OPERATIONS

SPEC = Body(
    Field("name", Text(10), required=True),
    Field("slug", Text(8, pattern=re.compile(r"[a-z]+")), nullable=True),
    Field("count", Integer(minimum=1, maximum=5), default=2),
    Field("active", Boolean(), default=True),
    Field("price", Usd(allow_zero=True), nullable=True),
    Field("kind", Choice(("a", "b"))),
    Field("metadata", Metadata()),
    read_only=("id",),
    immutable=("owner",),
)


def _error(call: Any) -> tuple[str, str | None]:
    with pytest.raises(InvalidRequest) as caught:
        call()
    return caught.value.message, caught.value.param


def test_check_refuses_immutable_read_only_and_unknown_fields_by_path() -> None:
    assert _error(lambda: SPEC.check({"owner": 1})) == ("owner cannot be changed after creation.", "owner")
    assert _error(lambda: SPEC.check({"id": 1})) == ("id is read-only and cannot be set.", "id")
    assert _error(lambda: SPEC.check({"x": 1}, "settings")) == (
        "Unknown field settings.x; remove it from the request body.",
        "settings.x",
    )
    SPEC.check({"name": "n", "slug": None})


def test_read_converts_defaults_and_requires() -> None:
    body: dict[str, Any] = {"name": "acme", "price": Decimal("1.5"), "slug": None}
    assert SPEC.read(body, "name") == "acme"
    assert SPEC.read(body, "price") == 1_500_000_000
    assert SPEC.read(body, "slug") is None
    assert SPEC.read(body, "count") == 2
    assert SPEC.read(body, "active") is True
    assert SPEC.read(body, "kind") is None
    assert _error(lambda: SPEC.read({}, "name", "outer")) == ("outer.name is required.", "outer.name")
    assert _error(lambda: SPEC.read({"count": 9}, "count")) == ("count must be an integer between 1 and 5.", "count")
    assert _error(lambda: SPEC.read({"kind": "c"}, "kind")) == ("kind must be one of a, b.", "kind")
    assert _error(lambda: SPEC.read({"name": None}, "name")) == ("name must be a string, not null.", "name")


def test_updating_drops_requirements_defaults_and_immutables() -> None:
    patch = SPEC.updating(immutable=("name",))
    assert "name" not in patch.fields
    assert patch.read({}, "count") is None
    assert _error(lambda: patch.check({"name": "x"}))[1] == "name"
    assert patch.schema()["properties"]["name"]["readOnly"] is True
    assert "required" not in patch.schema()


def test_schema() -> None:
    schema = SPEC.schema()
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["slug"] == {
        "type": ["string", "null"],
        "maxLength": 8,
        "minLength": 1,
        "pattern": "^(?:[a-z]+)$",
    }
    assert schema["properties"]["count"]["default"] == 2
    assert schema["properties"]["kind"] == {"type": "string", "enum": ["a", "b"]}
    assert schema["properties"]["price"]["anyOf"][1] == {"type": "null"}
    jsonschema.Draft202012Validator.check_schema(schema)


def _specs() -> list[tuple[str, Body]]:
    found: dict[int, tuple[str, Body]] = {}
    for op in OPERATIONS.values():
        if isinstance(op.body, Body):
            found.setdefault(id(op.body), (op.id, op.body))
    return list(found.values())


def _edges(field: Field) -> list[object]:
    rule = field.rule
    if isinstance(rule, Text):
        fill = "a" if rule.pattern is None else None
        values: list[object] = [7, "", "x" * (rule.max_len + 1), "tab\there"]
        if fill:
            values += ["a" * rule.min_len if rule.min_len else "", "a" * rule.max_len]
        return values
    if isinstance(rule, Integer):
        return [rule.minimum - 1, rule.minimum, rule.maximum, rule.maximum + 1, True, "1", 1.5]
    if isinstance(rule, Usd):
        return [0, 1, "0.5", "1.1234567891", "-1", 10**9, 10**9 + 1, True, "abc"]
    if isinstance(rule, Boolean):
        return [True, False, 0, "true"]
    if isinstance(rule, Choice):
        return [*rule.values, "not-one-of-them", 3]
    return []


def _converts(field: Field, value: object) -> bool:
    try:
        field.convert(Decimal(str(value)) if isinstance(value, float) else value, field.name)
    except InvalidRequest:
        return False
    return True


@pytest.mark.parametrize(("operation", "spec"), _specs(), ids=[name for name, _ in _specs()])
def test_each_documented_rule_agrees_with_its_converter(operation: str, spec: Body) -> None:
    """At the edges of every simple rule, the schema accepts exactly what the service accepts (money beyond
    9 decimals aside: JSON Schema cannot count decimals of a number, the string form's pattern does)."""
    checked = 0
    for field in spec.fields.values():
        validator = jsonschema.Draft202012Validator(field.schema())
        for value in _edges(field):
            accepted = _converts(field, value)
            described = validator.is_valid(value)
            if isinstance(field.rule, Usd) and not isinstance(value, str) and accepted != described:
                continue
            assert described == accepted, (operation, field.name, value)
            checked += 1
    assert checked or all(not _edges(f) for f in spec.fields.values())
