"""MCP calls as values (SPEC §16.3, §16.1): the ``allowed_tools`` filter, the free tier's UTC month, which failures
reached the app, and the per-call tariff (cost = the app's price, charge with markup, rounded up once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tollway.domain.mcp_calls import Failure, McpApp, app_candidate, filter_tools, free_month, tool_allowed
from tollway.domain.pricing import Usage
from tollway.domain.tariffs import MCP_CALLS, Metered

APP = McpApp("a1", "notes", "Notes", "https://mcp.example.com/mcp", 2_000_000, ("echo",), oauth=False)


def test_filter_keeps_only_allowed_tools_and_the_rest_of_the_result() -> None:
    listing = {"tools": [{"name": "echo"}, {"name": "secret"}], "nextCursor": "c2"}
    assert filter_tools(listing, ("echo",)) == {"tools": [{"name": "echo"}], "nextCursor": "c2"}
    assert filter_tools(listing, None) is listing
    assert filter_tools(listing, ()) == {"tools": [], "nextCursor": "c2"}
    assert tool_allowed(None, "x") and tool_allowed(("x",), "x") and not tool_allowed(("x",), "y")


def test_the_free_month_is_the_utc_calendar_month() -> None:
    late_in_tokyo = datetime(2026, 12, 1, 3, 0, tzinfo=timezone(timedelta(hours=9)))  # 2026-11-30 18:00 UTC
    assert free_month(late_in_tokyo) == "2026-11"
    assert free_month(datetime(2027, 1, 1, 0, 0, tzinfo=UTC)) == "2027-01"


@pytest.mark.parametrize(
    ("failure", "reached"),
    [
        (Failure.UNREACHABLE, False),
        (Failure.UNAUTHORIZED, False),
        (Failure.CONNECT_TIMEOUT, False),
        (Failure.CALL_TIMEOUT, True),
        (Failure.NO_ANSWER, True),
        (Failure.TOO_LARGE, True),
        (Failure.RPC_ERROR, True),
    ],
)
def test_which_failures_reached_the_app(failure: Failure, reached: bool) -> None:
    assert failure.reached is reached


def test_a_call_costs_the_price_and_charges_it_with_markup_rounded_up_once() -> None:
    candidate = app_candidate(APP, 1_000_001)
    one = Metered(Usage(0, 0), units=1)
    assert MCP_CALLS.price(candidate, one, 1500) == (1_000_001, 1_150_002)  # ⌈1,000,001 × 1.15⌉
    assert MCP_CALLS.price(app_candidate(APP, 0), one, 1500) == (0, 0)
    assert MCP_CALLS.price(candidate, Metered(Usage(0, 0)), 1500) == (0, 0)  # nothing delivered
    assert MCP_CALLS.terms(candidate, 1, 0).worst(1, 1, 1500) == (1_000_001, 1_150_002)  # the hold


def test_the_sweepers_row_of_a_lost_call_names_no_provider() -> None:
    recovery = MCP_CALLS.recovery(app_candidate(APP, 5))
    assert recovery["provider_id"] is None and recovery["upstream_model"] is None and recovery["call"] == 5
