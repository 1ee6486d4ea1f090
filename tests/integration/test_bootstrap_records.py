"""The bootstrap records (secret-key fingerprint, operator-key digest) when several workers or instances start at
once on a fresh database: the first writer wins and every other start reads its value instead of failing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.keystore import KeyStore
from tollway.storage.sql.migrate import upgrade


@pytest.mark.parametrize("store", STORES)
def test_concurrent_first_starts_agree_on_one_value(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    settings = make_settings(tmp_path, database_url_for(store, tmp_path, request))
    asyncio.run(upgrade(settings))

    async def race() -> list[str]:
        engines = [create_engine(settings) for _ in range(4)]
        try:
            stores = [KeyStore(engine) for engine in engines]
            return await asyncio.gather(
                *(stores[i % 4].insert_meta_if_absent("race-test", f"value-{i}") for i in range(24))
            )
        finally:
            for engine in engines:
                await engine.dispose()

    stored = asyncio.run(race())
    assert len(set(stored)) == 1 and stored[0].startswith("value-")
