"""Idempotency-Key (SPEC §9.7) on budget topup, debit and PATCH and on the operator wallet topup, on SQLite and
PostgreSQL: a key credits once however often it is retried (in sequence and in parallel), replays are byte-identical
with ``Idempotent-Replayed: true``, another body is 422, a running first request is 409, unstored outcomes leave the
key usable, and records expire after 24 h.

"The first request is still running" is made deterministic two ways, never with sleeps: on PostgreSQL the test holds
the budget's row lock, so the first request blocks after claiming its key; on both stores the test claims the key
through the idempotency store itself, exactly as a request in flight on another instance would have.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.integration.test_budgets_api import _count, _execute, ledger, with_budget
from tests.integration.test_platform_api import Tenant, _ok, assert_error, bad_request, make_tenant
from tests.support.servers import GatewayServer
from tollway.domain.idempotency import Claim, IdempotencyIdentity, StoredResponse
from tollway.errors import IdempotencyInProgress
from tollway.services.management.idempotency import CLAIM_LEASE, Idempotency, fingerprint, idempotent_request
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.idempotency import IdempotencyStore, prune_idempotency
from tollway.storage.sql.tables import budget_transactions, budgets, idempotency_keys, wallet_transactions
from tollway.storage.sql.unit_of_work import SqlUnitOfWork


@pytest.fixture(scope="module")
def tenant(gateway: GatewayServer, admin: httpx.Client) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin)
    yield made
    made.client.close()


def _key() -> str:
    return f"key-{uuid.uuid4()}"


def _topups(gateway: GatewayServer, budget_url: str, tenant: Tenant) -> int:
    return len(ledger(tenant, budget_url, type="topup"))


# -- budget topup: sequence and parallel ------------------------------------------------------------------------


def test_topup_retried_fifty_times_credits_once(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=1)
    headers = {"Idempotency-Key": _key()}
    responses = [tenant.client.post(f"{url}/topup", json={"amount_usd": "0.25"}, headers=headers) for _ in range(50)]
    first = responses[0]
    assert first.status_code == 200
    assert "idempotent-replayed" not in first.headers
    assert _ok(first)["budget"]["max_usd"] == 1.25
    for replay in responses[1:]:
        assert replay.status_code == 200
        assert replay.content == first.content
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.headers["content-type"] == "application/json"
    assert _topups(gateway, url, tenant) == 1
    assert _ok(tenant.client.get(url))["max_usd"] == 1.25
    # Formatting differences are not a different body: same fingerprint, replayed.
    spaced = tenant.client.post(
        f"{url}/topup",
        content=b'{ "amount_usd" :  "0.25" }',
        headers={**headers, "content-type": "application/json"},
    )
    assert spaced.content == first.content
    assert spaced.headers["idempotent-replayed"] == "true"


def test_topup_sent_twenty_times_in_parallel_credits_once(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=1)
    headers = {"Authorization": f"Bearer {tenant.key}", "Idempotency-Key": _key()}

    def send(_: int) -> httpx.Response:
        return httpx.post(f"{gateway.url}{url}/topup", json={"amount_usd": 2}, headers=headers, timeout=60)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, range(20)))
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [r.text for r in responses]
    successes = [r for r in responses if r.status_code == 200]
    assert len({r.content for r in successes}) == 1
    assert sum(1 for r in successes if "idempotent-replayed" not in r.headers) == 1
    for busy in (r for r in responses if r.status_code == 409):
        assert_error(busy, 409, "idempotency_in_progress", "Idempotency-Key")
    assert _topups(gateway, url, tenant) == 1
    assert _ok(tenant.client.get(url))["max_usd"] == 3
    settled = httpx.post(f"{gateway.url}{url}/topup", json={"amount_usd": 2}, headers=headers, timeout=60)
    assert settled.headers["idempotent-replayed"] == "true"
    assert settled.content == (successes[0].content if successes else settled.content)


# -- operator wallet topup --------------------------------------------------------------------------------------


def test_wallet_topup_is_idempotent_in_sequence_and_in_parallel(gateway: GatewayServer, admin: httpx.Client) -> None:
    fresh = make_tenant(gateway, admin)
    url = f"/v1/admin/platforms/{fresh.id}/wallet/topup"

    def wallet_rows() -> int:
        return _count(gateway, sa.select(wallet_transactions).where(wallet_transactions.c.platform_id == fresh.id))

    with fresh.client:
        sequential = {"Idempotency-Key": _key()}
        responses = [admin.post(url, json={"amount_usd": "1.5"}, headers=sequential) for _ in range(50)]
        assert all(r.status_code == 200 and r.content == responses[0].content for r in responses)
        assert [r.headers.get("idempotent-replayed") for r in responses[:2]] == [None, "true"]
        parallel = {"Authorization": f"Bearer {gateway.settings.admin_key}", "Idempotency-Key": _key()}

        def send(_: int) -> httpx.Response:
            return httpx.post(f"{gateway.url}{url}", json={"amount_usd": "2"}, headers=parallel, timeout=60)

        with ThreadPoolExecutor(max_workers=20) as pool:
            burst = list(pool.map(send, range(20)))
        assert {r.status_code for r in burst} <= {200, 409}
        assert wallet_rows() == 2
        assert _ok(fresh.client.get(f"{fresh.base}/wallet"))["balance_usd"] == 3.5
        # The operator scope is the deployment's: the same key on another platform's path is another record.
        other = make_tenant(gateway, admin)
        other.client.close()
        again = admin.post(
            f"/v1/admin/platforms/{other.id}/wallet/topup", json={"amount_usd": "1.5"}, headers=sequential
        )
        assert again.status_code == 200
        assert "idempotent-replayed" not in again.headers


# -- mismatch, in progress, what is stored ----------------------------------------------------------------------


def test_another_body_with_the_same_key_is_422_and_executes_nothing(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=5)
    headers = {"Idempotency-Key": _key()}
    _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": 1, "reason": "a"}, headers=headers))
    mismatch = tenant.client.post(f"{url}/debit", json={"amount_usd": 2, "reason": "a"}, headers=headers)
    assert_error(mismatch, 422, "idempotency_key_mismatch", "Idempotency-Key")
    assert "idempotent-replayed" not in mismatch.headers
    assert _ok(tenant.client.get(url))["used_usd"] == 1
    assert len(ledger(tenant, url, type="debit")) == 1
    # Scope is (platform, method and concrete path, key): the same key on topup is a new operation.
    assert _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 2, "reason": "a"}, headers=headers))
    assert _ok(tenant.client.get(url))["max_usd"] == 7


def test_refusals_are_stored_validation_errors_are_not(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=1)
    headers = {"Idempotency-Key": _key()}
    refused = tenant.client.post(f"{url}/debit", json={"amount_usd": 2, "reason": "big"}, headers=headers)
    assert_error(refused, 402, "budget_exhausted", "amount_usd")
    _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 5}))
    # The 402 was the first outcome: it is replayed even though the debit would now fit.
    replay = tenant.client.post(f"{url}/debit", json={"amount_usd": 2, "reason": "big"}, headers=headers)
    assert (replay.status_code, replay.content) == (402, refused.content)
    assert replay.headers["idempotent-replayed"] == "true"
    assert ledger(tenant, url, type="debit") == []
    # 400s are not stored: the key stays usable for a valid request.
    _ok(tenant.client.post(f"{url}/debit", json={"amount_usd": 1, "reason": "usage"}))
    fresh = {"Idempotency-Key": _key()}
    bad_request(tenant.client.post(f"{url}/debit", json={"amount_usd": -2, "reason": "x"}, headers=fresh), "amount_usd")
    bad_request(tenant.client.patch(url, json={"max_usd": 0}, headers=fresh), "max_usd")  # business rule: not stored
    lowered = tenant.client.patch(url, json={"max_usd": 4}, headers=fresh)
    assert _ok(lowered)["max_usd"] == 4
    again = tenant.client.patch(url, json={"max_usd": 4}, headers=fresh)
    assert (again.content, again.headers["idempotent-replayed"]) == (lowered.content, "true")
    assert [t["amount_usd"] for t in ledger(tenant, url, type="adjustment")] == [-2]
    # A 404 is an outcome like any other.
    missing = f"{tenant.base}/end-users/{uuid.uuid4()}/budget/topup"
    assert tenant.client.post(missing, json={"amount_usd": 1}, headers={"Idempotency-Key": _key()}).status_code == 404


@pytest.mark.parametrize("key", [b"", b"k" * 256, b"tab\tkey", "caf\u00e9".encode()])
def test_malformed_keys_are_400(tenant: Tenant, key: bytes) -> None:
    _, url = with_budget(tenant, max_usd=1)
    response = tenant.client.post(f"{url}/topup", json={"amount_usd": 1}, headers={"Idempotency-Key": key})
    bad_request(response, "Idempotency-Key")
    assert ledger(tenant, url, type="topup") == []


def test_longest_and_odd_printable_keys_work(tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=1)
    for key in ("k" * 255, "a !~{}\"'", "x"):
        first = tenant.client.post(f"{url}/topup", json={"amount_usd": 1}, headers={"Idempotency-Key": key})
        second = tenant.client.post(f"{url}/topup", json={"amount_usd": 1}, headers={"Idempotency-Key": key})
        assert (first.status_code, second.content, second.headers["idempotent-replayed"]) == (
            200,
            first.content,
            "true",
        )
    assert len(ledger(tenant, url, type="topup")) == 3


def _store_call(gateway: GatewayServer, call: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(gateway.settings)
        try:
            return await call(IdempotencyStore(engine), engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_a_claim_in_flight_answers_409_until_it_completes_or_its_lease_ends(
    gateway: GatewayServer, tenant: Tenant
) -> None:
    _, url = with_budget(tenant, max_usd=1)
    key, body = _key(), {"amount_usd": 1}
    ident = IdempotencyIdentity(tenant.id, "POST", f"{url}/topup", key)
    now = datetime.now(UTC)
    claim = _store_call(gateway, lambda store, _: store.claim(ident, fingerprint(body), now, CLAIM_LEASE))
    assert isinstance(claim, Claim)
    headers = {"Idempotency-Key": key}
    busy = tenant.client.post(f"{url}/topup", json=body, headers=headers)
    assert_error(busy, 409, "idempotency_in_progress", "Idempotency-Key")
    assert_error(
        tenant.client.post(f"{url}/topup", json={"amount_usd": 2}, headers=headers),
        422,
        "idempotency_key_mismatch",
        "Idempotency-Key",
    )
    stored = StoredResponse(200, b'{"done":true}')
    assert _store_call(gateway, lambda store, _: store.store(claim, stored, now + timedelta(hours=24)))
    replay = tenant.client.post(f"{url}/topup", json=body, headers=headers)
    assert (replay.status_code, replay.content, replay.headers["idempotent-replayed"]) == (200, stored.body, "true")
    # A claim whose owner died: after its lease the key starts a new operation.
    dead_key = _key()
    stale = now - CLAIM_LEASE - timedelta(seconds=1)
    dead = IdempotencyIdentity(tenant.id, "POST", f"{url}/topup", dead_key)
    lost = _store_call(gateway, lambda store, _: store.claim(dead, fingerprint(body), stale, CLAIM_LEASE))
    assert isinstance(lost, Claim)
    took_over = tenant.client.post(f"{url}/topup", json=body, headers={"Idempotency-Key": dead_key})
    assert _ok(took_over)["budget"]["max_usd"] == 2
    # The dead owner can no longer complete its claim: its operation would roll back.
    assert not _store_call(gateway, lambda store, _: store.store(lost, stored, now + timedelta(hours=24)))
    assert len(ledger(tenant, url, type="topup")) == 1


def test_records_expire_after_24_hours(gateway: GatewayServer, tenant: Tenant) -> None:
    _, url = with_budget(tenant, max_usd=1)
    key = _key()
    headers = {"Idempotency-Key": key}
    first = _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 1}, headers=headers))
    assert first["budget"]["max_usd"] == 2
    rows = _store_call(
        gateway,
        lambda _, engine: _fetch(engine, sa.select(idempotency_keys).where(idempotency_keys.c.key == key)),
    )
    assert len(rows) == 1
    assert rows[0]["status"] == "done"
    assert rows[0]["scope"] == tenant.id
    assert rows[0]["method"] == "POST"
    assert rows[0]["path"] == f"{url}/topup"
    lifetime = _utc(rows[0]["expires_at"]) - _utc(rows[0]["created_at"])
    assert lifetime == timedelta(hours=24)
    # 24 h later the same key starts a new operation.
    _execute(
        gateway,
        sa.update(idempotency_keys)
        .where(idempotency_keys.c.key == key)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)),
    )
    second = tenant.client.post(f"{url}/topup", json={"amount_usd": 1}, headers=headers)
    assert _ok(second)["budget"]["max_usd"] == 3
    assert "idempotent-replayed" not in second.headers
    # The hourly job deletes what has expired, and only that.
    other = _key()
    _ok(tenant.client.post(f"{url}/topup", json={"amount_usd": 1}, headers={"Idempotency-Key": other}))
    pruned = _store_call(gateway, lambda _, engine: prune_idempotency(engine, datetime.now(UTC) + timedelta(hours=25)))
    assert pruned >= 2
    assert _store_call(gateway, lambda _, engine: prune_idempotency(engine, datetime.now(UTC))) == 0


async def _fetch(engine: Any, query: sa.Select[Any]) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# -- a real first request held up by a row lock (PostgreSQL) ----------------------------------------------------


def test_a_request_blocked_on_the_budget_lock_makes_the_retry_409(gateway: GatewayServer, tenant: Tenant) -> None:
    if gateway.settings.is_sqlite:
        pytest.skip("SQLite locks the whole database: the claim itself would wait (covered by the claim test)")
    _, url = with_budget(tenant, max_usd=1)
    budget_id = _ok(tenant.client.get(url))["id"]
    key = _key()
    headers = {"Authorization": f"Bearer {tenant.key}", "Idempotency-Key": key}

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        engine = create_engine(gateway.settings)
        try:
            async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=60) as client:
                async with engine.connect() as holder:
                    await holder.begin()
                    await holder.execute(sa.select(budgets.c.id).where(budgets.c.id == budget_id).with_for_update())
                    first = asyncio.create_task(client.post(f"{url}/topup", json={"amount_usd": 1}))
                    await _until_claimed(engine, key)
                    second = await client.post(f"{url}/topup", json={"amount_usd": 1})
                    assert not first.done()
                    await holder.rollback()  # lets the first request through
                done = await first
                third = await client.post(f"{url}/topup", json={"amount_usd": 1})
                return done, second, third
        finally:
            await engine.dispose()

    done, second, third = asyncio.run(scenario())
    assert_error(second, 409, "idempotency_in_progress", "Idempotency-Key")
    assert _ok(done)["budget"]["max_usd"] == 2
    assert (third.content, third.headers["idempotent-replayed"]) == (done.content, "true")
    assert len(ledger(tenant, url, type="topup")) == 1


async def _until_claimed(engine: Any, key: str) -> None:
    """Polls for the first request's claim (a condition, not a timed sleep); fails after 10 s."""
    deadline = time.monotonic() + 10
    query = sa.select(idempotency_keys.c.status).where(idempotency_keys.c.key == key)
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            if (await conn.execute(query)).first() is not None:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the first request never claimed its key")


def test_service_level_in_progress_and_a_lost_claim(gateway: GatewayServer, tenant: Tenant) -> None:
    """Through ``Idempotency.execute`` with an action that waits on an event (PostgreSQL: the action's transaction
    does not lock out other writers there). A claim taken over while the action runs makes it roll back."""
    if gateway.settings.is_sqlite:
        pytest.skip("the action's transaction holds SQLite's single write lock")
    _, url = with_budget(tenant, max_usd=1)
    budget_id = _ok(tenant.client.get(url))["id"]

    async def scenario() -> None:
        engine = create_engine(gateway.settings)
        service = Idempotency(IdempotencyStore(engine), lambda: SqlUnitOfWork(engine))
        entered, release = asyncio.Event(), asyncio.Event()

        async def action(uow: Any) -> str:
            # Runs after the claim committed: once ``entered`` is set, the key is in progress.
            await _marker_adjustment(uow.connection, budget_id)
            entered.set()
            await release.wait()
            return "ran"

        def render(result: str) -> StoredResponse:
            return StoredResponse(200, orjson.dumps({"result": result}))

        try:
            request = idempotent_request(tenant.id, "POST", "/test/action", _key(), {"n": 1})
            first = asyncio.create_task(service.execute(request, action, render))
            await entered.wait()
            with pytest.raises(IdempotencyInProgress):
                await service.execute(request, action, render)
            release.set()
            outcome = await first
            assert (outcome.status, outcome.replayed) == (200, False)
            replay = await service.execute(request, action, render)
            assert (replay.body, replay.replayed) == (outcome.body, True)
            # A claim taken over (its lease ended) while the action runs: the action's writes roll back.
            entered.clear()
            release.clear()
            lost = idempotent_request(tenant.id, "POST", "/test/action", _key(), {"n": 2})
            assert lost is not None
            slow = asyncio.create_task(service.execute(lost, action, render))
            await entered.wait()
            later = datetime.now(UTC) + CLAIM_LEASE + timedelta(seconds=1)
            takeover = await IdempotencyStore(engine).claim(lost.identity, lost.fingerprint, later, CLAIM_LEASE)
            assert isinstance(takeover, Claim)
            release.set()
            with pytest.raises(IdempotencyInProgress):
                await slow
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    markers = _count(gateway, sa.select(budget_transactions).where(budget_transactions.c.reason == "marker"))
    assert markers == 1  # the first action committed; the one whose claim was lost rolled back
    assert _ok(tenant.client.get(url))["max_usd"] == 1.01  # and so did its raise of the budget by one marker


MARKER_NANOS = 10_000_000  # one cent


async def _marker_adjustment(conn: AsyncConnection, budget_id: str) -> None:
    """What a budget PATCH writes (SPEC §9.5 ``adjustment``): max raised by ``MARKER_NANOS`` and the ledger row with
    the budget's amounts after it, so that the marker keeps the ledger chain (the gateway fixture checks it)."""
    raised = (
        await conn.execute(
            sa.update(budgets)
            .where(budgets.c.id == budget_id)
            .values(max_nanos=budgets.c.max_nanos + MARKER_NANOS)
            .returning(budgets.c.platform_id, budgets.c.end_user_id, budgets.c.max_nanos, budgets.c.used_nanos)
        )
    ).one()
    row = {
        "id": str(uuid.uuid4()),
        "budget_id": budget_id,
        "platform_id": raised.platform_id,
        "end_user_id": raised.end_user_id,
        "type": "adjustment",
        "amount_nanos": MARKER_NANOS,
        "max_after_nanos": raised.max_nanos,
        "used_after_nanos": raised.used_nanos,
        "remaining_after_nanos": raised.max_nanos - raised.used_nanos,
        "reason": "marker",
        "metadata": {},
        "request_id": None,
        "created_at": datetime.now(UTC),
    }
    await conn.execute(sa.insert(budget_transactions).values(row))
