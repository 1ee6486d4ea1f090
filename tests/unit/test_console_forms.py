"""Console form fields become the JSON-shaped bodies the management services validate (SPEC §17.1), and amounts are
shown exactly as the API renders them."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tollway.domain.money import nanos_to_json_number
from tollway.http.console.forms import Form
from tollway.http.console.pages import ENV, plain
from tollway.services.console.spend import window


def test_fields_are_typed_as_the_api_expects() -> None:
    form = Form(
        [
            ("external_id", "12345"),
            ("max_output_tokens", " 256 "),
            ("priority", "ten"),
            ("max_usd", "5"),
            ("low_balance_threshold", ""),
            ("context_window", ""),
            ("name", ""),
            ("scopes", "inference"),
            ("scopes", "manage"),
        ]
    )
    body = form.body(
        {
            "external_id": "text",
            "max_output_tokens": "int",
            "priority": "int",
            "max_usd": "usd",
            "low_balance_threshold": "usd|null",
            "context_window": "int|null",
            "name": "text",
            "absent": "text|null",
        }
    )
    # text stays text even when it looks like a number; a bad integer is left for the service to name
    assert body == {
        "external_id": "12345",
        "max_output_tokens": 256,
        "priority": "ten",
        "max_usd": "5",
        "low_balance_threshold": None,
        "context_window": None,
    }
    assert form.all("scopes") == ["inference", "manage"]
    assert form.checked("scopes") and not form.checked("absent")
    assert form.text("name") is None and form.get("name") == ""


def test_amounts_render_exactly() -> None:
    amount = nanos_to_json_number(1_234_567_891)
    assert plain(amount) == "1.234567891" and plain(None) == "" and plain(7) == "7"
    usd = ENV.filters["usd"]
    assert usd(amount) == "$1.234567891" and usd(nanos_to_json_number(5 * 10**9)) == "$5.00"
    assert usd(nanos_to_json_number(1_500_000_000_000)) == "$1,500.00" and usd(None) == "—"
    assert orjson.dumps(amount) == b"1.234567891"


def test_the_window_is_thirty_utc_days_ending_today() -> None:
    since, until, days = window(datetime(2026, 3, 1, 0, 30, tzinfo=UTC))
    assert since == datetime(2026, 1, 31, tzinfo=UTC) and until == datetime(2026, 3, 2, tzinfo=UTC)
    assert days[0] == "2026-01-31" and days[-1] == "2026-03-01" and len(days) == 30
