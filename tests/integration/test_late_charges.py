"""Late charges on both stores (SPEC §9.4): journaled settlements of holds the sweeper already resolved (released
at $0, or captured from a checkpoint) charge what the calls cost, as far as available goes, the rest uncollected,
each row replacing the sweeper's; a second replay of the same journal changes nothing."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import STORES, database_url_for, make_settings
from tests.integration.test_holds_lifecycle import _open_stream, _sweep
from tests.integration.test_settlement_journal import _money, _replay_once
from tests.support.invariants import assert_invariants, count
from tests.support.processes import GatewayProcess
from tests.support.seed import create_model, create_provider, create_tenant
from tests.support.servers import free_port
from tollway.domain.holds import Settlement
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.settings import Settings
from tollway.storage.money.journal import SettlementJournal
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import holds, usage_logs, wallet_transactions

CENT = 10_000_000


@pytest.fixture(params=STORES)
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    url = database_url_for(request.param, tmp_path, request)
    return make_settings(tmp_path, url, port=free_port(), total_timeout_s=30)


def _holds(settings: Settings) -> list[Any]:
    async def read() -> list[Any]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                query = sa.select(holds.c.id, holds.c.request_id, holds.c.platform_id, holds.c.end_user_id)
                return list((await conn.execute(query.order_by(holds.c.created_at))).all())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _settlement(hold: Any, cost: int, model: str) -> Settlement:
    charge = cost if hold.end_user_id else 0
    record = UsageRecord(
        request_id=hold.request_id, platform_id=hold.platform_id, end_user_id=hold.end_user_id,
        request_type="chat.completion", provider_id=None, model=model, provider_model=None, prompt_tokens=0,
        completion_tokens=cost // 1_000_000, cached_tokens=0, latency_ms=100, ttft_ms=10, cost_nanos=cost,
        charged_nanos=charge if hold.end_user_id else None, status=CallStatus.SUCCESS, finish_reason="stop",
        error_code=None, token_count_method="reported", session_id=None,
    )  # fmt: skip
    return Settlement(hold.id, record, charge)


def test_late_charges_replace_the_sweepers_rows_exactly_once(
    store_settings: Settings, fake_upstream: FakeUpstreamThread
) -> None:
    settings = store_settings
    first = GatewayProcess(settings)
    sockets: list[socket.socket] = []
    try:
        with httpx.Client(
            base_url=first.url, headers={"Authorization": f"Bearer {settings.admin_key}"}, timeout=30
        ) as admin:
            provider = create_provider(admin, fake_upstream.base_url)
            prices = {"input_price_per_mtok": "0", "output_price_per_mtok": "1"}  # holds of a tenth of a cent
            create_model(admin, provider["id"], "slow", "fake/usage?in=0&out=10&ms=60000", **prices)
            create_model(admin, provider["id"], "dribble", "fake/usage?in=0&out=10&delay_ms=5000", **prices)
            tenant = create_tenant(admin, first.url, provider["id"], provider["slug"], topup="1")
        user = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": "u1"}).json()
        budget = f"/v1/platforms/{tenant.platform_id}/end-users/{user['id']}/budget"
        assert tenant.client.post(budget, json={"max_usd": "1"}).status_code == 201
        sockets = [_open_stream(first.url, tenant.platform_key, "slow")]
        sockets.append(_open_stream(first.url, user["api_key"]["raw_key"], "slow"))
        deadline = time.monotonic() + 10
        while count(settings, holds, holds.c.status == "active") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        sockets.append(_open_stream(first.url, tenant.platform_key, "dribble"))
        while count(settings, holds, holds.c.checkpoint.is_not(None)) < 1:
            assert time.monotonic() < deadline, "the stream never checkpointed"
            time.sleep(0.05)
        first.kill()
    finally:
        for sock in sockets:
            sock.close()
        first.stop()
    tenant.client.close()
    sweeper_settings = settings.model_copy(update={"data_dir": settings.data_dir.parent / "sweeper"})
    assert asyncio.run(_sweep(sweeper_settings, settings.total_timeout_s + 61)) == 3
    assert count(settings, usage_logs, usage_logs.c.error_code == "hold_expired") == 2
    assert count(settings, usage_logs, usage_logs.c.status == "interrupted") == 1
    swept = _money(settings)
    taken_by_sweeper = -sum(amount for kind, amount in swept["ledger"] if kind == "usage")
    assert 0 < taken_by_sweeper < CENT  # the checkpoint saw the first piece only

    # What the dead instance had journaled: the two plain calls cost a cent each, the stream $2 (far more than its
    # hold: an over-hold settlement). The wallet has $1; the stream takes the 98 cents left, the rest is uncollected.
    slow_platform, slow_user, stream = _holds(settings)
    journal = SettlementJournal(settings.data_dir / "journal", "crashed")
    journal.append(
        [
            _settlement(slow_platform, CENT, "slow"),
            _settlement(slow_user, CENT, "slow"),
            _settlement(stream, 200 * CENT, "dribble"),
        ]
    )
    journal.close()  # its lock is free: an orphan, as after kill -9
    replay_copy = (settings.data_dir / "journal" / "crashed.journal").read_bytes()
    asyncio.run(_replay_once(settings))

    money = _money(settings)
    logs = {row[1]: row for row in money["logs"]}
    assert len(money["logs"]) == 3  # the sweeper's three rows replaced
    assert {row[0] for row in money["logs"]} == {slow_platform.id, slow_user.id, stream.id}  # rows by hold id
    assert logs[slow_platform.request_id][2:] == ("success", CENT, 0, None, None)
    assert logs[slow_user.request_id][2:] == ("success", CENT, 0, CENT, None)
    assert logs[stream.request_id][2:] == ("success", 200 * CENT, 102 * CENT, None, None)
    assert money["wallets"] == [(0, 0)]
    assert money["budgets"] == [(CENT, 0)]
    assert sorted(kind for kind, _ in money["ledger"]) == ["topup", "usage", "usage", "usage", "usage_correction"]
    assert ("usage_correction", -(98 * CENT - taken_by_sweeper)) in money["ledger"]
    assert count(settings, holds, holds.c.status == "captured") == 3
    assert_invariants(settings)

    # The same journal again (a crash before its compaction): nothing is charged twice.
    (settings.data_dir / "journal" / "again.journal").write_bytes(replay_copy)
    (settings.data_dir / "journal" / "again.lock").write_bytes(b"")
    asyncio.run(_replay_once(settings))
    assert _money(settings) == money
    assert count(settings, wallet_transactions) == 5
    assert_invariants(settings)
