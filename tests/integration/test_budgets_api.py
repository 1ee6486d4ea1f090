"""Budgets (SPEC §5.5, §9.5, §9.8) and ``/v1/me/budget`` (§6) against a real gateway on SQLite and PostgreSQL:
creation, topup and debit with their ledger rows, PATCH rules, suspension rows, the lazy period reset, and every
money input refusing invalid amounts without writing a ledger row (§9.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.integration.test_end_users_api import as_key, create
from tests.integration.test_platform_api import NIL_ID, Tenant, _ok, assert_error, bad_request, make_tenant, not_found
from tests.support.servers import GatewayServer
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import budget_transactions, budgets, wallet_transactions


@pytest.fixture(scope="module")
def tenant(gateway: GatewayServer, admin: httpx.Client) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin)
    yield made
    made.client.close()


def _budget_url(tenant: Tenant, end_user: dict[str, Any]) -> str:
    return f"{tenant.base}/end-users/{end_user['id']}/budget"


def with_budget(tenant: Tenant, **body: Any) -> tuple[dict[str, Any], str]:
    """A new end user with a budget created by POST; returns the end user and its budget URL."""
    end_user = create(tenant)
    url = _budget_url(tenant, end_user)
    _ok(tenant.client.post(url, json={"max_usd": 10, **body}), 201)
    return end_user, url


def ledger(tenant: Tenant, url: str, **params: Any) -> list[dict[str, Any]]:
    return _ok(tenant.client.get(f"{url}/transactions", params={"limit": 100, **params}))["data"]  # type: ignore[no-any-return]


def _execute(gateway: GatewayServer, statement: sa.Executable) -> None:
    async def run() -> None:
        engine = create_engine(gateway.settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(statement)
        finally:
            await engine.dispose()

    asyncio.run(run())


def _count(gateway: GatewayServer, query: sa.Select[Any]) -> int:
    async def run() -> int:
        engine = create_engine(gateway.settings)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(run())


BUDGET_FIELDS = {
    "id", "platform_id", "end_user_id", "max_usd", "used_usd", "remaining_usd", "held_usd", "available_usd", "period",
    "period_start", "next_reset_at", "auto_replenish", "replenish_amount", "low_balance_threshold", "is_active",
    "is_suspended", "created_at", "updated_at",
}  # fmt: skip


# -- creation and reads -----------------------------------------------------------------------------------------


def test_create_and_get(tenant: Tenant) -> None:
    end_user = create(tenant)
    url = _budget_url(tenant, end_user)
    not_found(tenant.client.get(url))
    not_found(tenant.client.get(f"{url}/transactions"))
    response = tenant.client.post(url, json={"max_usd": "12.5", "low_balance_threshold": 2})
    created = _ok(response, 201)
    assert set(created) == BUDGET_FIELDS
    assert '"max_usd":12.5,"used_usd":0,"remaining_usd":12.5,"held_usd":0,"available_usd":12.5,' in response.text
    assert created["end_user_id"] == end_user["id"]
    assert created["platform_id"] == tenant.id
    assert created["period"] == "one_time"
    assert created["period_start"] == created["created_at"]  # one_time: the period starts at creation
    assert created["next_reset_at"] is None
    assert created["auto_replenish"] is False
    assert created["replenish_amount"] is None
    assert created["low_balance_threshold"] == 2
    assert created["is_active"] is True
    assert created["is_suspended"] is False
    assert _ok(tenant.client.get(url)) == created
    rows = ledger(tenant, url)
    assert [(t["type"], t["amount_usd"], t["max_usd_after"], t["used_usd_after"]) for t in rows] == [
        ("opening_balance", 12.5, 12.5, 0)
    ]
    assert rows[0]["budget_id"] == created["id"]
    assert rows[0]["end_user_id"] == end_user["id"]
    assert rows[0]["request_id"] is None
    bad_request(tenant.client.post(url, json={"max_usd": 1}), None)  # a second budget
    assert len(ledger(tenant, url)) == 1
    not_found(tenant.client.post(f"{tenant.base}/end-users/{NIL_ID}/budget", json={"max_usd": 1}))


def test_periods_on_creation(tenant: Tenant) -> None:
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    _, url = with_budget(tenant, period="daily", auto_replenish=True, replenish_amount="3")
    daily = _ok(tenant.client.get(url))
    assert daily["period_start"] == day.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert daily["next_reset_at"] == (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert daily["replenish_amount"] == 3
    _, url = with_budget(tenant, period="monthly", max_usd=0)
    monthly = _ok(tenant.client.get(url))
    assert monthly["period_start"] == month.strftime("%Y-%m-%dT%H:%M:%SZ")
    following = (
        month.replace(year=month.year + 1, month=1) if month.month == 12 else month.replace(month=month.month + 1)
    )
    assert monthly["next_reset_at"] == following.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert monthly["max_usd"] == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "max_usd"),
        ({"max_usd": 1, "period": "weekly"}, "period"),
        ({"max_usd": 1, "period": None}, "period"),
        ({"max_usd": 1, "auto_replenish": True}, "auto_replenish"),  # one_time by default
        ({"max_usd": 1, "period": "daily", "auto_replenish": True}, "replenish_amount"),
        ({"max_usd": 1, "period": "daily", "replenish_amount": 1}, "replenish_amount"),
        ({"max_usd": 1, "period": "daily", "auto_replenish": "yes", "replenish_amount": 1}, "auto_replenish"),
        ({"max_usd": 1, "is_suspended": True}, "is_suspended"),
        ({"max_usd": 1, "used_usd": 0}, "used_usd"),
        ({"max_usd": 1, "id": NIL_ID}, "id"),
        ({"max_usd": 1, "currency": "usd"}, "currency"),
    ],
)
def test_create_rules(tenant: Tenant, body: dict[str, Any], param: str) -> None:
    end_user = create(tenant)
    bad_request(tenant.client.post(_budget_url(tenant, end_user), json=body), param)
    not_found(tenant.client.get(_budget_url(tenant, end_user)))


# -- topup, debit, ledger ---------------------------------------------------------------------------------------


def test_topup_debit_and_ledger_filters(tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd="1")
    topped = _ok(
        tenant.client.post(f"{url}/topup", json={"amount_usd": "0.5", "reason": "promo", "metadata": {"c": 1}})
    )
    assert topped["budget"]["max_usd"] == 1.5
    txn = topped["transaction"]
    assert (txn["type"], txn["amount_usd"], txn["max_usd_after"], txn["remaining_usd_after"]) == (
        "topup",
        0.5,
        1.5,
        1.5,
    )
    assert txn["reason"] == "promo"
    assert txn["metadata"] == {"c": 1}
    response = tenant.client.post(f"{url}/debit", json={"amount_usd": 0.000000001, "reason": "chargeback"})
    assert '"amount_usd":-0.000000001,' in response.text
    debited = _ok(response)
    assert debited["budget"]["used_usd"] == 0.000000001
    assert debited["budget"]["remaining_usd"] == 1.499999999
    assert debited["transaction"]["used_usd_after"] == 0.000000001
    # A debit larger than what is available: 402 and nothing written.
    assert_error(
        tenant.client.post(f"{url}/debit", json={"amount_usd": 1.5, "reason": "too much"}),
        402,
        "budget_exhausted",
        "amount_usd",
    )
    exact = _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": "1.499999999", "reason": "all of it"}))
    assert exact["budget"]["available_usd"] == 0
    assert_error(
        tenant.client.post(f"{url}/debit", json={"amount_usd": 0.000000001, "reason": "one more"}),
        402,
        "budget_exhausted",
        "amount_usd",
    )
    rows = ledger(tenant, url)
    assert [t["type"] for t in rows] == ["debit", "debit", "topup", "opening_balance"]
    assert sum(round(t["amount_usd"] * 10**9) for t in rows) == 0  # remaining = the ledger's sum
    assert [t["type"] for t in ledger(tenant, url, type="debit")] == ["debit", "debit"]
    pivot = rows[1]["created_at"]
    assert [t["id"] for t in ledger(tenant, url, since=pivot)] == [t["id"] for t in rows[:2]]
    assert [t["id"] for t in ledger(tenant, url, until=pivot)] == [t["id"] for t in rows[2:]]
    page = _ok(tenant.client.get(f"{url}/transactions", params={"limit": 1, "page": 2}))
    assert (page["total"], [t["id"] for t in page["data"]]) == (4, [rows[1]["id"]])
    bad_request(tenant.client.get(f"{url}/transactions", params={"type": "refund"}), "type")
    bad_request(tenant.client.get(f"{url}/transactions", params={"since": "today"}), "since")
    bad_request(tenant.client.post(f"{url}/debit", json={"amount_usd": 1}), "reason")
    bad_request(tenant.client.post(f"{url}/debit", json={"amount_usd": 1, "reason": ""}), "reason")
    bad_request(tenant.client.post(f"{url}/topup", json={"amount_usd": 1, "reason": "r" * 501}), "reason")
    bad_request(tenant.client.post(f"{url}/topup", json={"amount_usd": 1, "metadata": [1]}), "metadata")
    bad_request(tenant.client.post(f"{url}/topup", json={"amount_usd": 1, "budget_id": NIL_ID}), "budget_id")
    assert len(ledger(tenant, url)) == 4


def test_topup_and_debit_work_while_suspended_or_inactive(gateway: GatewayServer, tenant: Tenant) -> None:
    end_user, url = with_budget(tenant, max_usd=1)
    _ok(tenant.client.patch(url, json={"is_suspended": True}))
    assert _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 1}))["budget"]["max_usd"] == 2
    assert _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": 1, "reason": "fix"}))["budget"]["used_usd"] == 1
    with as_key(gateway, end_user["api_key"]["raw_key"]) as client:
        mine = _ok(client.get("/v1/me/budget"))
        assert mine == _ok(tenant.client.get(url))  # suspended or not, the same object
        assert mine["is_suspended"] is True
        inactive = _ok(tenant.client.patch(url, json={"is_active": False}))
        assert inactive["is_active"] is False
        not_found(client.get("/v1/me/budget"))
        assert _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 1}))["budget"]["max_usd"] == 3
        assert _ok(tenant.client.get(url))["is_active"] is False
        _ok(tenant.client.patch(url, json={"is_active": True}))
        assert _ok(client.get("/v1/me/budget"))["max_usd"] == 3


def test_me_budget(gateway: GatewayServer, tenant: Tenant) -> None:
    end_user = create(tenant)
    with as_key(gateway, end_user["api_key"]["raw_key"]) as client:
        not_found(client.get("/v1/me/budget"))
        _ok(tenant.client.post(_budget_url(tenant, end_user), json={"max_usd": 3}), 201)
        mine = _ok(client.get("/v1/me/budget"))
        assert set(mine) == BUDGET_FIELDS
        assert mine["max_usd"] == 3
        assert mine["end_user_id"] == end_user["id"]
    assert_error(tenant.client.get("/v1/me/budget"), 403, "wrong_key_type", None)


# -- PATCH ------------------------------------------------------------------------------------------------------


def test_patch_max_writes_adjustments_and_keeps_the_minimum(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=10)
    _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": "4.1", "reason": "usage"}))
    # Hold 0.0123 on the budget, as an in-flight call would.
    budget_id = _ok(tenant.client.get(url))["id"]
    _execute(gateway, sa.update(budgets).where(budgets.c.id == budget_id).values(held_nanos=12_300_000))
    response = tenant.client.patch(url, json={"max_usd": "4.1122"})
    bad_request(response, "max_usd")
    assert "4.1123" in response.json()["error"]["message"]
    lowered = _ok(tenant.client.patch(url, json={"max_usd": "4.1123"}))
    assert (lowered["max_usd"], lowered["available_usd"], lowered["held_usd"]) == (4.1123, 0, 0.0123)
    raised = _ok(tenant.client.patch(url, json={"max_usd": 6}))
    assert raised["remaining_usd"] == 1.9
    same = _ok(tenant.client.patch(url, json={"max_usd": "6.000"}))
    assert same["max_usd"] == 6
    rows = ledger(tenant, url, type="adjustment")
    assert [(t["amount_usd"], t["max_usd_after"]) for t in rows] == [(1.8877, 6), (-5.8877, 4.1123)]
    _execute(gateway, sa.update(budgets).where(budgets.c.id == budget_id).values(held_nanos=0))


def test_patch_period_suspension_and_replenishment(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=10)
    _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": 3, "reason": "usage"}))
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    daily = _ok(tenant.client.patch(url, json={"period": "daily"}))
    assert daily["period_start"] == day.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert daily["used_usd"] == 3  # a period change does not reset
    monthly = _ok(tenant.client.patch(url, json={"period": "monthly", "auto_replenish": True, "replenish_amount": 8}))
    assert monthly["period_start"] == day.replace(day=1).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (monthly["auto_replenish"], monthly["replenish_amount"]) == (True, 8)
    bad_request(tenant.client.patch(url, json={"period": "one_time"}), "auto_replenish")
    bad_request(tenant.client.patch(url, json={"replenish_amount": None}), "replenish_amount")
    bad_request(tenant.client.patch(url, json={"replenish_amount": 0}), "replenish_amount")
    off = _ok(tenant.client.patch(url, json={"auto_replenish": False}))
    assert (off["auto_replenish"], off["replenish_amount"]) == (False, None)
    bad_request(tenant.client.patch(url, json={"replenish_amount": 5}), "replenish_amount")
    bad_request(tenant.client.patch(url, json={"auto_replenish": True}), "replenish_amount")
    created = _ok(tenant.client.get(url))["created_at"]
    one_time = _ok(tenant.client.patch(url, json={"period": "one_time"}))
    assert (one_time["period_start"], one_time["next_reset_at"]) == (created, None)
    threshold = _ok(tenant.client.patch(url, json={"low_balance_threshold": "0.5"}))
    assert threshold["low_balance_threshold"] == 0.5
    assert _ok(tenant.client.patch(url, json={"low_balance_threshold": None}))["low_balance_threshold"] is None
    # Suspension flips write a row each; setting the current value again writes nothing.
    for flag in (True, True, False, False, True):
        assert _ok(tenant.client.patch(url, json={"is_suspended": flag}))["is_suspended"] is flag
    flips = ledger(tenant, url, type="suspend") + ledger(tenant, url, type="unsuspend")
    assert sorted(t["type"] for t in flips) == ["suspend", "suspend", "unsuspend"]
    assert all(t["amount_usd"] == 0 and t["remaining_usd_after"] == 7 for t in flips)
    for field, value in [("used_usd", 0), ("held_usd", 0), ("period_start", "2026-01-01T00:00:00Z"), ("x", 1)]:
        bad_request(tenant.client.patch(url, json={field: value}), field)
    bad_request(tenant.client.patch(url, json={"is_suspended": 1}), "is_suspended")
    bad_request(tenant.client.patch(url, json={"period": "yearly"}), "period")
    not_found(tenant.client.patch(f"{tenant.base}/end-users/{NIL_ID}/budget", json={"max_usd": 1}))
    types = {t["type"] for t in ledger(tenant, url)}
    assert types == {"opening_balance", "debit", "suspend", "unsuspend"}


# -- the lazy period reset (§9.8) -------------------------------------------------------------------------------


def test_missed_periods_reset_once_before_the_next_operation(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(
        tenant, max_usd=10, period="daily", auto_replenish=True, replenish_amount=4, low_balance_threshold=5
    )
    _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": 7, "reason": "usage"}))
    budget_id = _ok(tenant.client.get(url))["id"]
    # Three days ago: three boundaries were missed.
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    _execute(
        gateway, sa.update(budgets).where(budgets.c.id == budget_id).values(period_start=start - timedelta(days=3))
    )
    after = _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 1}))
    assert after["budget"]["used_usd"] == 0
    assert after["budget"]["max_usd"] == 5  # replenished to 4, then topped up by 1
    assert after["budget"]["period_start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    resets = ledger(tenant, url, type="reset")
    assert len(resets) == 1
    # + used before (7) + change of max by replenishment (4 − 10).
    assert (resets[0]["amount_usd"], resets[0]["max_usd_after"], resets[0]["used_usd_after"]) == (1, 4, 0)
    assert _ok(tenant.client.get(url))["used_usd"] == 0
    assert len(ledger(tenant, url, type="reset")) == 1  # nothing more is due
    # Without replenishment, max stays; a plain GET applies the reset too.
    _, plain = with_budget(tenant, max_usd=2, period="monthly")
    _ok(tenant.client.post(f"{plain}/debit", json={"amount_usd": "1.5", "reason": "usage"}))
    plain_id = _ok(tenant.client.get(plain))["id"]
    month = start.replace(day=1)
    _execute(
        gateway, sa.update(budgets).where(budgets.c.id == plain_id).values(period_start=month - timedelta(days=70))
    )
    got = _ok(tenant.client.get(plain))
    assert (got["max_usd"], got["used_usd"], got["period_start"]) == (2, 0, month.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert [t["amount_usd"] for t in ledger(tenant, plain, type="reset")] == [1.5]


# -- invalid amounts (§9.1) -------------------------------------------------------------------------------------

BAD_AMOUNTS = [
    b"-1",
    b'"-1"',
    b"0",
    b'"0"',
    b"0.0",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'"NaN"',
    b'"Infinity"',
    b'"abc"',
    b'" 1"',
    b'"1."',
    b'"1e3"',
    b"0.0000000001",
    b'"0.0000000001"',
    b"1e-10",
    b"1000000000.000000001",
    b"1000000001",
    b'"1000000001"',
    b"1e400",
    b"true",
    b"false",
    b"null",
    b"[1]",
    b'{"usd": 1}',
]
# (field, path suffix, method, extra body fields, zero allowed)
MONEY_INPUTS = [
    ("max_usd", "", "POST", {}, True),
    ("max_usd", "", "PATCH", {}, True),
    ("replenish_amount", "", "POST", {"max_usd": 1, "period": "daily", "auto_replenish": True}, False),
    ("replenish_amount", "", "PATCH", {"period": "daily", "auto_replenish": True}, False),
    ("low_balance_threshold", "", "POST", {"max_usd": 1}, True),
    ("low_balance_threshold", "", "PATCH", {}, True),
    ("amount_usd", "/topup", "POST", {}, False),
    ("amount_usd", "/debit", "POST", {"reason": "r"}, False),
]


@pytest.mark.parametrize("raw", BAD_AMOUNTS, ids=lambda raw: raw.decode())
def test_invalid_amounts_are_refused_without_a_ledger_row(gateway: GatewayServer, tenant: Tenant, raw: bytes) -> None:
    fresh = create(tenant)
    with_existing = create(tenant)
    existing_url = _budget_url(tenant, with_existing)
    _ok(tenant.client.post(existing_url, json={"max_usd": 100}), 201)
    before = _ok(tenant.client.get(existing_url))
    for field, suffix, method, extra, zero_ok in MONEY_INPUTS:
        if zero_ok and raw in (b"0", b'"0"', b"0.0"):
            continue
        if raw == b"null" and field == "low_balance_threshold":
            continue  # nullable: null clears it
        target = _budget_url(tenant, fresh) if method == "POST" and suffix == "" else existing_url
        prefix = b", ".join(f'"{k}": '.encode() + _json(v) for k, v in extra.items())
        body = b"{" + prefix + (b", " if prefix else b"") + f'"{field}": '.encode() + raw + b"}"
        response = tenant.client.request(
            method, target + suffix, content=body, headers={"content-type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (field, suffix, method, response.text)
        assert response.json()["error"]["code"] == "invalid_request", response.text
        assert response.json()["error"]["param"] in (field, None), response.text
    not_found(tenant.client.get(_budget_url(tenant, fresh)))
    assert _ok(tenant.client.get(existing_url)) == before
    assert len(ledger(tenant, existing_url)) == 1
    assert _count(gateway, sa.select(budget_transactions).where(budget_transactions.c.end_user_id == fresh["id"])) == 0


@pytest.mark.parametrize("raw", BAD_AMOUNTS, ids=lambda raw: raw.decode())
def test_invalid_wallet_topups_write_nothing(
    gateway: GatewayServer, admin: httpx.Client, tenant: Tenant, raw: bytes
) -> None:
    before = _count(gateway, sa.select(wallet_transactions).where(wallet_transactions.c.platform_id == tenant.id))
    response = admin.post(
        f"/v1/admin/platforms/{tenant.id}/wallet/topup",
        content=b'{"amount_usd": ' + raw + b"}",
        headers={"content-type": "application/json", "Idempotency-Key": f"bad-{raw!r}"},
    )
    assert response.status_code == 400, response.text
    after = _count(gateway, sa.select(wallet_transactions).where(wallet_transactions.c.platform_id == tenant.id))
    assert after == before


def _json(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, str):
        return f'"{value}"'.encode()
    return str(value).encode()
