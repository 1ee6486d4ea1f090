"""Nothing delivered is ever free (SPEC §9.4): settlements that cannot be committed while PostgreSQL is stopped are
journaled under the data directory and committed once it is back, in full, exactly once; after a kill -9 the next
instance adopts the journal, and a hold the sweeper resolved meanwhile is charged late, its row replacing the
sweeper's; a journal replayed twice charges once."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import make_settings
from tests.integration.test_holds_lifecycle import _sweep
from tests.support.invariants import assert_invariants, count
from tests.support.processes import GatewayProcess, StderrLines
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer, PostgresServer, free_port
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.settings import Settings
from tollway.storage.money.journal import read_owed
from tollway.storage.money.writer import MoneyWriter
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import budget_transactions, budgets, holds, usage_logs, wallet_transactions, wallets

CALL_NANOS = 10_000_000  # 10 completion tokens at $1,000 per Mtok, input free: $0.01 a call
USER = [{"role": "user", "content": "hi"}]
pytestmark = pytest.mark.postgres


def _seed(url: str, admin_key: str | None, upstream: str) -> tuple[Tenant, str]:
    """A tenant with $1 and the models ``late`` (answers after 2.5 s) and ``late-stream`` (streams for ~2.5 s),
    both exactly $0.01 a call; and an end user with a $1 budget (its key is returned)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30) as admin:
        provider = create_provider(admin, upstream)
        prices = {"input_price_per_mtok": "0", "output_price_per_mtok": "1000", "max_output_tokens": 10}
        create_model(admin, provider["id"], "late", "fake/usage?in=0&out=10&ms=2500", **prices)
        create_model(admin, provider["id"], "late-stream", "fake/usage?in=0&out=10&delay_ms=400", **prices)
        tenant = create_tenant(admin, url, provider["id"], provider["slug"], topup="1")
    user = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": "u1"})
    assert user.status_code == 201, user.text
    budget = f"/v1/platforms/{tenant.platform_id}/end-users/{user.json()['id']}/budget"
    assert tenant.client.post(budget, json={"max_usd": "1"}).status_code == 201
    return tenant, user.json()["api_key"]["raw_key"]


def _call(url: str, key: str, model: str, answers: list[tuple[str, int, str]]) -> None:
    body = {"model": model, "messages": USER, "stream": model.endswith("stream")}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        response = client.post("/v1/chat/completions", json=body)
        answers.append((response.headers.get("x-request-id", ""), response.status_code, response.text))


def _calls_through_an_outage(url: str, keys: list[str], pg: PostgresServer, settings: Settings) -> list[str]:
    """Four plain calls and two streams (one of each per key) whose holds commit, then PostgreSQL stops before
    they answer: every answer is complete and delivered while the database is away. Returns their request ids."""
    answers: list[tuple[str, int, str]] = []
    models = ["late", "late", "late-stream"]
    threads = [threading.Thread(target=_call, args=(url, key, m, answers)) for key in keys for m in models]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    # every hold placed, and the streams' first checkpoint (first content byte) written
    while (
        count(settings, holds, holds.c.status == "active") < 6
        or count(settings, holds, holds.c.checkpoint.is_not(None)) < 2
    ):
        assert time.monotonic() < deadline, "the calls never got their holds"
        time.sleep(0.05)
    pg.halt()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 6
    for request_id, status, text in answers:
        assert status == 200, text
        assert request_id.startswith("req_")
        assert "[DONE]" in text or '"finish_reason":"stop"' in text.replace(" ", "")
    return [request_id for request_id, _, _ in answers]


def _journal(settings: Settings) -> list[Any]:
    """The records owed (their commit failed, or adopted) in the instances' journals."""
    return [entry for path in (settings.data_dir / "journal").glob("*.journal") for entry in read_owed(path)]


def _wait_for_journal(settings: Settings, entries: int) -> None:
    deadline = time.monotonic() + 20
    while len(_journal(settings)) < entries:
        assert time.monotonic() < deadline, f"journal holds {len(_journal(settings))} of {entries} settlements"
        time.sleep(0.05)


def _wait_settled(settings: Settings, calls: int, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while count(settings, usage_logs, usage_logs.c.status == "success") < calls:
        assert time.monotonic() < deadline, "the journaled settlements never committed"
        time.sleep(0.2)


def _money(settings: Settings) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                wallet = (await conn.execute(sa.select(wallets.c.balance_nanos, wallets.c.held_nanos))).all()
                budget = (await conn.execute(sa.select(budgets.c.used_nanos, budgets.c.held_nanos))).all()
                logs = (
                    await conn.execute(
                        sa.select(
                            usage_logs.c.id,
                            usage_logs.c.request_id,
                            usage_logs.c.status,
                            usage_logs.c.cost_nanos,
                            usage_logs.c.uncollected_nanos,
                            usage_logs.c.charged_nanos,
                            usage_logs.c.error_code,
                        ).order_by(usage_logs.c.request_id)
                    )
                ).all()
                ledger = (
                    await conn.execute(sa.select(wallet_transactions.c.type, wallet_transactions.c.amount_nanos))
                ).all()
                budget_ledger = (
                    await conn.execute(sa.select(budget_transactions.c.type, budget_transactions.c.amount_nanos))
                ).all()
        finally:
            await engine.dispose()
        return {
            "wallets": sorted(wallet),
            "budgets": sorted(budget),
            "logs": [tuple(r) for r in logs],
            "ledger": sorted(ledger),
            "budget_ledger": sorted(budget_ledger),
        }

    return asyncio.run(read())


def _billed_once_in_full(settings: Settings, request_ids: list[str]) -> dict[str, Any]:
    money = _money(settings)
    rows = [r for r in money["logs"] if r[1] in request_ids]
    assert len(rows) == 6, rows  # one row per request, the sweeper's gone
    assert {r[1] for r in rows} == set(request_ids)
    for _, _, status, cost, uncollected, _, error_code in rows:
        assert (status, cost, uncollected, error_code) == ("success", CALL_NANOS, 0, None)
    assert money["wallets"] == [(1_000_000_000 - 6 * CALL_NANOS, 0)]  # $1 minus six cents, nothing held
    user_rows = [r for r in rows if r[5] is not None]
    assert len(user_rows) == 3 and all(r[5] == CALL_NANOS for r in user_rows)  # no markup: charge = cost
    assert money["budgets"] == [(3 * CALL_NANOS, 0)]
    assert count(settings, holds, holds.c.status == "captured") == 6
    assert count(settings, usage_logs, usage_logs.c.error_code == "hold_expired") == 0
    assert count(settings, wallet_transactions, wallet_transactions.c.type == "usage") == 6
    assert_invariants(settings)
    return money


def test_answers_delivered_while_postgres_is_stopped_are_billed_once_in_full_after_it_returns(
    private_postgres: PostgresServer, fake_upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, private_postgres.new_database(), total_timeout_s=30)
    gateway = GatewayServer(settings)
    gateway.start()
    try:
        tenant, user_key = _seed(gateway.url, settings.admin_key, fake_upstream.base_url)
        request_ids = _calls_through_an_outage(gateway.url, [tenant.platform_key, user_key], private_postgres, settings)
        _wait_for_journal(settings, 6)  # on disk, fsynced, while the database is still away
        assert {e.record.request_id for e in _journal(settings)} == set(request_ids)
        time.sleep(2)  # a few retries fail
        private_postgres.resume()
        _wait_settled(settings, 6)
        _billed_once_in_full(settings, request_ids)
        deadline = time.monotonic() + 5
        while _journal(settings):  # compacted away once committed
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tenant.client.close()
    finally:
        gateway.stop()


def test_kill_minus_nine_with_a_journal_then_the_sweeper_then_a_restart_charges_late_exactly_once(
    private_postgres: PostgresServer, fake_upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, private_postgres.new_database(), total_timeout_s=30)
    first = GatewayProcess(settings)
    first_log = StderrLines(first)
    try:
        tenant, user_key = _seed(first.url, settings.admin_key, fake_upstream.base_url)
        request_ids = _calls_through_an_outage(first.url, [tenant.platform_key, user_key], private_postgres, settings)
        _wait_for_journal(settings, 6)
        first.kill()  # the journal is all that is left of the six settlements
    finally:
        first.stop()
    tenant.client.close()
    journaled = [line for line in first_log.finish().splitlines() if "journaled in" in line]
    assert {rid for rid in request_ids if any(rid in line for line in journaled)} == set(request_ids)
    saved = tmp_path / "journal-copy"
    shutil.copytree(settings.data_dir / "journal", saved)
    private_postgres.resume()

    # The sweeper (on an instance with another data directory, so it does not adopt the journal) gets there first:
    # four holds released at $0 (hold_expired), the two streams captured from their first-byte checkpoint.
    sweeper_settings = settings.model_copy(update={"data_dir": tmp_path / "sweeper"})
    assert asyncio.run(_sweep(sweeper_settings, settings.total_timeout_s + 61)) == 6
    assert count(settings, usage_logs, usage_logs.c.error_code == "hold_expired") == 4
    assert count(settings, usage_logs, usage_logs.c.status == "interrupted") == 2
    assert_invariants(settings)

    # A new instance on the same data directory adopts the dead one's journal and charges the six calls late.
    restarted = GatewayProcess(settings.model_copy(update={"port": free_port(), "log_level": "info"}))
    restarted_log = StderrLines(restarted)
    try:
        _wait_settled(settings, 6)
    finally:
        restarted.stop()
    replayed = [line for line in restarted_log.finish().splitlines() if "journaled settlement" in line]
    for request_id in request_ids:  # every step names its request id
        assert any(request_id in line and "committed" in line for line in replayed), request_id
    money = _billed_once_in_full(settings, request_ids)
    # the streams: the sweeper's usage row plus one correction each up to the full cent
    assert count(settings, wallet_transactions, wallet_transactions.c.type == "usage_correction") == 2
    assert count(settings, budget_transactions, budget_transactions.c.type == "inference_correction") == 1
    assert not _journal(settings)

    # The same journal replayed again (as if the copy survived a crash before compaction): nothing changes.
    for path in saved.glob("*.journal"):
        shutil.copy(path, settings.data_dir / "journal" / "ghost.journal")
    (settings.data_dir / "journal" / "ghost.lock").write_bytes(b"")
    assert len(_journal(settings)) == 6
    asyncio.run(_replay_once(settings))
    assert not _journal(settings)
    assert _money(settings) == money
    assert_invariants(settings)


async def _replay_once(settings: Settings) -> None:
    engine = create_engine(settings)
    writer = MoneyWriter(settings, engine)
    writer.start()
    try:
        deadline = time.monotonic() + 15
        while not writer.journal.entries:  # adopted at start
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        while writer.journal.entries:
            assert time.monotonic() < deadline, "the replay never finished"
            await asyncio.sleep(0.05)
    finally:
        await writer.stop()
        await engine.dispose()
