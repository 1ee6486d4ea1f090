"""Key lookups for authentication and the operator-key and secret-key bootstrap records (SPEC §2.2, §2.4, §13.2)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import as_utc, utcnow
from tollway.domain.tenancy import KeyRecord
from tollway.storage.sql.db import one_of, reader
from tollway.storage.sql.tables import api_keys, end_users, platforms, system_meta

# The API's key lookup: a live key of a live platform (and, for end-user keys, of a live end user). Authentication
# finds it by digest; console sessions re-check the key they were opened with by id, through the same conditions.
_LIVE_KEYS = (
    sa.select(
        api_keys.c.id,
        api_keys.c.type,
        api_keys.c.platform_id,
        api_keys.c.end_user_id,
        api_keys.c.scopes,
        api_keys.c.expires_at,
        api_keys.c.last_used_at,
        end_users.c.is_active.label("end_user_active"),
    )
    .select_from(
        api_keys.join(platforms, platforms.c.id == api_keys.c.platform_id).outerjoin(
            end_users, end_users.c.id == api_keys.c.end_user_id
        )
    )
    .where(
        api_keys.c.is_active.is_(True),
        api_keys.c.revoked_at.is_(None),
        platforms.c.deleted_at.is_(None),
        # An end-user key works only while its end user exists and is not deleted (SPEC §2.2).
        sa.or_(
            api_keys.c.end_user_id.is_(None),
            sa.and_(end_users.c.id.is_not(None), end_users.c.deleted_at.is_(None)),
        ),
    )
)
_LOOKUP = _LIVE_KEYS.where(api_keys.c.key_hash == sa.bindparam("digest"))
_BY_ID = _LIVE_KEYS.where(api_keys.c.id == sa.bindparam("key_id"))
_MANY_CHUNK = 500  # bound parameters per query, well under SQLite's limit


def _many(dialect_name: str) -> sa.Select[Any]:
    """The live keys among the ``digests`` list: one statement shape for any number of keys on PostgreSQL."""
    return _LIVE_KEYS.add_columns(api_keys.c.key_hash).where(one_of(api_keys.c.key_hash, "digests", dialect_name))


def _record(row: Any) -> KeyRecord | None:
    if row is None:
        return None
    return KeyRecord(
        id=row.id,
        type=row.type,
        platform_id=row.platform_id,
        end_user_id=row.end_user_id,
        scopes=tuple(row.scopes),
        expires_at=as_utc(row.expires_at) if row.expires_at else None,
        last_used_at=as_utc(row.last_used_at) if row.last_used_at else None,
        end_user_active=row.end_user_active is not False,
    )


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._many = _many(engine.dialect.name)

    async def find_active(self, digest: bytes) -> KeyRecord | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(_LOOKUP, {"digest": digest})).first()
        return _record(row)

    async def find_active_many(self, digests: list[bytes]) -> dict[bytes, KeyRecord]:
        found: dict[bytes, KeyRecord] = {}
        async with self._reader.connect() as conn:
            for start in range(0, len(digests), _MANY_CHUNK):
                chunk = digests[start : start + _MANY_CHUNK]
                for row in await conn.execute(self._many, {"digests": chunk}):
                    record = _record(row)
                    if record is not None:
                        found[bytes(row.key_hash)] = record
        return found

    async def find_active_by_id(self, key_id: str) -> KeyRecord | None:
        async with self._reader.connect() as conn:
            row = (await conn.execute(_BY_ID, {"key_id": key_id})).first()
        return _record(row)

    async def touch(self, key_id: str) -> None:
        """``last_used_at`` at most once per minute per key (the caller rate-limits; the WHERE makes it safe)."""
        now = utcnow()
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(api_keys)
                .where(
                    api_keys.c.id == key_id,
                    sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < now - timedelta(minutes=1)),
                )
                .values(last_used_at=now)
            )

    async def get_meta(self, key: str) -> str | None:
        async with self._reader.connect() as conn:
            value: str | None = (
                await conn.execute(sa.select(system_meta.c.value).where(system_meta.c.key == key))
            ).scalar_one_or_none()
        return value

    async def set_meta(self, key: str, value: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(system_meta).where(system_meta.c.key == key))
            await conn.execute(sa.insert(system_meta).values(key=key, value=value))

    async def insert_meta_if_absent(self, key: str, value: str) -> str:
        """Store ``value`` unless a value exists; return the stored one. First writer wins, also when several
        workers or instances start at once on a fresh database: the insert does nothing on a conflict."""
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(system_meta).values(key=key, value=value).on_conflict_do_nothing(index_elements=["key"])
            )
            stored = (await conn.execute(sa.select(system_meta.c.value).where(system_meta.c.key == key))).scalar_one()
        return str(stored)
