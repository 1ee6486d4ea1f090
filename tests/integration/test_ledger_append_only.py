"""SPEC §9.6 invariant 4, enforced by the database itself: ledger rows are never updated or deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.exc

from tests.conftest import STORES, database_url_for, make_settings
from tollway.domain.clock import utcnow
from tollway.services.management.platforms import Platforms
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.tables import wallet_transactions, wallets
from tollway.storage.sql.tenants import PlatformStore


@pytest.mark.parametrize("store", STORES)
def test_ledger_rows_cannot_be_changed_or_deleted(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = make_settings(tmp_path, database_url_for(store, tmp_path, request))

    async def scenario() -> None:
        await upgrade(settings)
        engine = create_engine(settings)
        try:
            created = await Platforms(PlatformStore(engine)).create({"name": "Ledger"})
            pid = created.platform["id"]
            async with engine.begin() as conn:
                wallet_id = (
                    await conn.execute(sa.select(wallets.c.id).where(wallets.c.platform_id == pid))
                ).scalar_one()
                await conn.execute(
                    sa.insert(wallet_transactions).values(
                        id="01a20000-0000-7000-8000-000000000001", wallet_id=wallet_id, platform_id=pid,
                        type="topup", amount_nanos=5, balance_after_nanos=5, description=None, metadata={},
                        request_id=None, created_at=utcnow(),
                    )
                )  # fmt: skip
            for statement in (
                sa.update(wallet_transactions).values(amount_nanos=6),
                sa.delete(wallet_transactions),
            ):
                with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
                    async with engine.begin() as conn:
                        await conn.execute(statement)
        finally:
            await engine.dispose()

    asyncio.run(scenario())
