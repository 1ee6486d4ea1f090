"""The console's own use cases over the real SQL stores, on SQLite and PostgreSQL (SPEC §17.1): the spend reports
read by GROUP BY per UTC day (exact sums, the window's edges, the top end users, the platform's keys and everyone
else), the demo history's invariants, and sessions: 12 h idle expiry, and an operator session that ends when the
operator key changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import STORES, database_url_for, make_settings
from tollway.domain.console import MAX_PENDING_SECRETS, SHOWN_ONCE_TTL, ShownOnce
from tollway.domain.keys import KeyKind, key_digest
from tollway.domain.reconciliation import ReconcileReport
from tollway.domain.sealing import Sealer
from tollway.services.auth import Authenticator
from tollway.services.console.sessions import ConsoleSessions
from tollway.services.console.spend import OTHER_USERS_LABEL, PLATFORM_KEYS_LABEL, SpendReports
from tollway.services.management.end_users import EndUsers
from tollway.services.management.platforms import Platforms
from tollway.storage.sql.console import SqlConsoleSessions, SqlUsageAggregates
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.demo_history import HistoryRefused, PastCall, PastTopup, record_history
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.keystore import KeyStore
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.reconcile import reconcile
from tollway.storage.sql.tables import console_pending_secrets, console_sessions
from tollway.storage.sql.tenants import PlatformStore

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # the window: 2026-02-09 00:00 to 2026-03-11 00:00 (UTC)


@dataclass
class Tenant:
    engine: AsyncEngine
    platform_id: str
    platform_key: str
    users: list[str]


@pytest.fixture(params=STORES)
async def tenant(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Tenant]:
    settings = make_settings(tmp_path, database_url_for(request.param, tmp_path, request))
    await upgrade(settings)
    engine = create_engine(settings)
    created = await Platforms(PlatformStore(engine)).create({"name": "Charts"})
    end_users = EndUsers(EndUserStore(engine))
    users = []
    for name in ("u1", "u2", "u3", "u4", "u5", "u6", "u7"):
        creation, _ = await end_users.create(created.platform["id"], {"external_id": name})
        users.append(creation.end_user["id"])
    try:
        yield Tenant(engine, created.platform["id"], created.raw_key, users)
    finally:
        await engine.dispose()


def _call(at: datetime, user: str | None, model: str, cost: int, *, error: bool = False) -> PastCall:
    return PastCall(
        at=at, end_user_id=user, model=model, provider_id="p", provider_model=model, prompt_tokens=10,
        completion_tokens=5, latency_ms=100, ttft_ms=20, cost_nanos=0 if error else cost,
        charged_nanos=None if user is None else cost, error_code="upstream_error" if error else None,
    )  # fmt: skip


async def test_spend_per_day_by_model_and_by_end_user(tenant: Tenant) -> None:
    u = tenant.users
    day = lambda d, h=12: datetime(2026, 3, d, h, tzinfo=UTC)  # noqa: E731
    calls = [
        _call(datetime(2026, 2, 8, 23, 59, tzinfo=UTC), u[0], "a", 999),  # the day before the window
        _call(datetime(2026, 2, 9, 0, 0, tzinfo=UTC), u[0], "a", 1),  # the window's first instant
        _call(day(1, 0), u[0], "a", 100),
        _call(day(1, 23), u[1], "b", 50),
        _call(day(1), None, "a", 7),  # a platform key
        _call(day(1), u[2], "b", 0, error=True),
        *(_call(day(2), user, "a", 10 * (7 - i)) for i, user in enumerate(u)),  # u7 is sixth by spend: "other"
        _call(datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC), u[6], "b", 3),  # today, after "now": still today
    ]
    await record_history(
        tenant.engine, tenant.platform_id, PastTopup(datetime(2026, 2, 1, tzinfo=UTC), 10**9, "x"), calls
    )
    report = await SpendReports(SqlUsageAggregates(tenant.engine)).overview(tenant.platform_id, NOW)

    assert report.days[0] == "2026-02-09" and report.days[-1] == "2026-03-10" and len(report.days) == 30
    i1, i2 = report.days.index("2026-03-01"), report.days.index("2026-03-02")
    by_model = {s.label: s.nanos for s in report.by_model}
    assert by_model["a"][0] == 1 and by_model["a"][i1] == 107 and by_model["b"][i1] == 50
    assert by_model["a"][i2] == 280 and by_model["b"][-1] == 3
    assert report.total_nanos == 1 + 107 + 50 + 280 + 3
    assert report.requests[0] == 1 and report.requests[i1] == 4 and report.errors[i1] == 1 and report.requests[i2] == 7
    assert report.total_requests == 1 + 4 + 7 + 1 and report.total_errors == 1
    assert report.mean_latency_ms == 100

    by_user = {s.label: s.nanos for s in report.by_end_user}
    # top five by spend over the window: u1 (1+100+70), u2 (50+60), u3 (0+50), u4 (40), u5 (30)
    assert [s.label for s in report.by_end_user[:5]] == ["u1", "u2", "u3", "u4", "u5"]
    assert by_user["u1"][0] == 1 and by_user["u1"][i1] == 100 and by_user["u1"][i2] == 70
    assert by_user[PLATFORM_KEYS_LABEL][i1] == 7
    assert by_user[OTHER_USERS_LABEL][i2] == 20 + 10 and by_user[OTHER_USERS_LABEL][-1] == 3
    for i in range(30):  # every day's series add up to the day's total
        assert sum(s.nanos[i] for s in report.by_end_user) == sum(s.nanos[i] for s in report.by_model)

    result: ReconcileReport = await reconcile(tenant.engine)
    assert result.ok, result.differences


async def test_an_empty_platform_has_zero_days(tenant: Tenant) -> None:
    report = await SpendReports(SqlUsageAggregates(tenant.engine)).overview(tenant.platform_id, NOW)
    assert report.by_model == [] and report.by_end_user == [] and report.total_requests == 0
    assert report.mean_latency_ms is None and len(report.days) == 30


async def test_history_refuses_what_would_break_an_invariant(tenant: Tenant) -> None:
    topup = PastTopup(datetime(2026, 2, 1, tzinfo=UTC), 100, "x")
    with pytest.raises(HistoryRefused):
        await record_history(tenant.engine, tenant.platform_id, topup, [_call(NOW, None, "a", 101)])
    with pytest.raises(HistoryRefused):
        await record_history(
            tenant.engine, tenant.platform_id, topup, [_call(datetime(2026, 1, 1, tzinfo=UTC), None, "a", 1)]
        )
    assert (await reconcile(tenant.engine)).ok


SEALER = Sealer(bytes(range(32)))


def _sessions(tenant: Tenant, operator: list[bytes | None]) -> ConsoleSessions:
    async def current_operator() -> bytes | None:
        return operator[0]

    return ConsoleSessions(
        SqlConsoleSessions(tenant.engine), Authenticator(KeyStore(tenant.engine), current_operator, 0), SEALER
    )


async def _rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(console_sessions))).scalar_one())


async def test_a_session_ends_after_twelve_idle_hours(tenant: Tenant) -> None:
    sessions = _sessions(tenant, [None])
    session_id, opened = await sessions.sign_in(tenant.platform_key, "127.0.0.1", now=NOW)
    assert opened.principal.kind is KeyKind.PLATFORM and opened.principal.platform_id == tenant.platform_id
    later = NOW + timedelta(hours=11, minutes=59)
    resumed = await sessions.resume(session_id, now=later)
    assert resumed is not None and resumed.csrf_token == opened.csrf_token
    assert await sessions.resume(session_id, now=later + timedelta(hours=11, minutes=59)) is not None  # touched
    assert await sessions.resume(session_id, now=later + timedelta(hours=24)) is None
    assert await _rows(tenant.engine) == 0  # the expired session is deleted
    assert await sessions.resume(session_id, now=later) is None
    assert await sessions.resume("", now=NOW) is None and await sessions.resume("x" * 500, now=NOW) is None


async def test_only_a_digest_of_the_session_id_is_stored(tenant: Tenant) -> None:
    session_id, _ = await _sessions(tenant, [None]).sign_in(tenant.platform_key, "127.0.0.1", now=NOW)
    async with tenant.engine.connect() as conn:
        row = (await conn.execute(sa.select(console_sessions))).one()
    stored = " ".join(str(value) for value in row)
    assert session_id not in stored and tenant.platform_key not in stored
    assert row.key_id is not None and row.operator_check is None


async def test_an_operator_session_ends_when_the_operator_key_changes(tenant: Tenant) -> None:
    admin_key = "sk-admin_" + "a" * 40
    operator: list[bytes | None] = [key_digest(admin_key)]
    sessions = _sessions(tenant, operator)
    session_id, opened = await sessions.sign_in(admin_key, "127.0.0.1", now=NOW)
    assert opened.principal.kind is KeyKind.OPERATOR
    assert await sessions.resume(session_id, now=NOW) is not None
    operator[0] = key_digest("sk-admin_" + "b" * 40)  # rotate-admin-key
    sessions = _sessions(tenant, operator)  # a fresh cache: another instance, or a second later
    assert await sessions.resume(session_id, now=NOW) is None


async def test_a_secret_shown_once_is_sealed_at_rest_and_taken_once(tenant: Tenant) -> None:
    sessions = _sessions(tenant, [None])
    _, mine = await sessions.sign_in(tenant.platform_key, "127.0.0.1", now=NOW)
    _, other = await sessions.sign_in(tenant.platform_key, "127.0.0.1", now=NOW)
    secret = "sk-eu_" + "s" * 43
    shown = ShownOnce("Key created", secret, "Shown once.", "/console/end-users/x", "Open x")
    display_id = await sessions.show_once(mine, shown, now=NOW)
    assert secret not in display_id
    async with tenant.engine.connect() as conn:
        rows = (await conn.execute(sa.select(console_pending_secrets))).all()
    assert len(rows) == 1 and secret.encode() not in bytes(rows[0].sealed)  # sealed, never in clear
    # another session (another browser) and another display id get nothing, and leave it in place
    assert await sessions.take_shown_once(other, display_id, now=NOW) is None
    assert await sessions.take_shown_once(mine, "x" * len(display_id), now=NOW) is None
    assert await sessions.take_shown_once(mine, display_id, now=NOW) == shown
    assert await sessions.take_shown_once(mine, display_id, now=NOW) is None  # once: a reload shows nothing
    assert await _pending(tenant.engine) == 0
    # a page opened too late shows nothing either
    late = await sessions.show_once(mine, shown, now=NOW)
    assert await sessions.take_shown_once(mine, late, now=NOW + SHOWN_ONCE_TTL + timedelta(seconds=1)) is None


async def _pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(console_pending_secrets)
        return int((await conn.execute(query)).scalar_one())


def _secret(n: int) -> ShownOnce:
    return ShownOnce(f"Key {n}", f"sk-eu_{n:043d}", "Shown once.", None, None)


async def test_several_secrets_wait_at_once_and_each_is_shown_once(tenant: Tenant) -> None:
    """Forms sent from several tabs: each secret waits under its own page id, and each page shows its own, once."""
    sessions = _sessions(tenant, [None])
    _, mine = await sessions.sign_in(tenant.platform_key, "127.0.0.1", now=NOW)
    ids = [await sessions.show_once(mine, _secret(n), now=NOW + timedelta(seconds=n)) for n in range(3)]
    assert len(set(ids)) == 3 and await _pending(tenant.engine) == 3
    for n in (2, 0, 1):  # in any order
        assert await sessions.take_shown_once(mine, ids[n], now=NOW + timedelta(minutes=1)) == _secret(n)
        assert await sessions.take_shown_once(mine, ids[n], now=NOW + timedelta(minutes=1)) is None
    assert await _pending(tenant.engine) == 0
    # at most MAX_PENDING_SECRETS wait: one more drops the one expiring first
    many = [
        await sessions.show_once(mine, _secret(n), now=NOW + timedelta(seconds=n))
        for n in range(MAX_PENDING_SECRETS + 1)
    ]
    assert await _pending(tenant.engine) == MAX_PENDING_SECRETS
    later = NOW + timedelta(minutes=2)
    assert await sessions.take_shown_once(mine, many[0], now=later) is None
    assert await sessions.take_shown_once(mine, many[-1], now=later) == _secret(MAX_PENDING_SECRETS)


async def test_a_secret_never_shown_is_deleted_when_it_expires(tenant: Tenant) -> None:
    sessions = _sessions(tenant, [None])
    session_id, mine = await sessions.sign_in(tenant.platform_key, "127.0.0.1", now=NOW)
    old = await sessions.show_once(mine, _secret(1), now=NOW)
    expired = NOW + SHOWN_ONCE_TTL + timedelta(seconds=1)
    # the next form deletes the session's expired ones; the hourly pruning deletes everyone's
    fresh = await sessions.show_once(mine, _secret(2), now=expired)
    assert await _pending(tenant.engine) == 1
    assert await sessions.take_shown_once(mine, old, now=expired) is None
    await sessions.show_once(mine, _secret(3), now=expired)
    assert await sessions.prune(expired + SHOWN_ONCE_TTL + timedelta(seconds=1)) == 0  # the session lives on
    assert await _pending(tenant.engine) == 0
    assert await sessions.take_shown_once(mine, fresh, now=expired) is None
    assert await sessions.resume(session_id, now=expired) is not None
    # a session that ends takes its waiting secrets with it
    await sessions.show_once(mine, _secret(4), now=expired)
    await sessions.sign_out(mine)
    assert await _pending(tenant.engine) == 0
