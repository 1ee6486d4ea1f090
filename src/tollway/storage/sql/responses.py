"""Stored Responses API results (SPEC §7.6): saved after a call with ``store: true``, read back for
``previous_response_id`` and ``GET``, deleted by ``DELETE``, pruned hourly once past ``expires_at``.

Every query is scoped by the caller's platform and end user (SPEC §15): another owner's id reads as missing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain import json_bytes
from tollway.domain.clock import utcnow
from tollway.domain.stored_responses import Owner, StoredResponse
from tollway.storage.sql.tables import stored_responses

_t = stored_responses.c


def _owned(owner: Owner, response_id: str, now: datetime) -> tuple[sa.ColumnElement[bool], ...]:
    end_user = _t.end_user_id.is_(None) if owner.end_user_id is None else _t.end_user_id == owner.end_user_id
    return (_t.id == response_id, _t.platform_id == owner.platform_id, end_user, _t.expires_at > now)


STORED_COLUMNS = (_t.input_items, _t.response_body, _t.thread_key, _t.thread_seq)


def stored_response(row: sa.Row[Any, Any, Any, Any]) -> StoredResponse:
    """A row selected with ``STORED_COLUMNS`` as the domain value."""
    return StoredResponse(
        json_bytes.loads(row.input_items), json_bytes.loads(row.response_body), row.thread_key, row.thread_seq
    )


def response_row(
    owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any], now: datetime, retention: timedelta
) -> dict[str, Any]:
    """The row of a response stored now, kept for ``retention``."""
    return {
        "id": body["id"],
        "platform_id": owner.platform_id,
        "end_user_id": owner.end_user_id,
        "input_items": json_bytes.dumps(input_items),
        "response_body": json_bytes.dumps(body),
        "created_at": now,
        "expires_at": now + retention,
    }


class ResponseStore:
    def __init__(self, engine: AsyncEngine, retention_days: int) -> None:
        self._engine = engine
        self._retention = timedelta(days=retention_days)

    async def save(self, owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any]) -> None:
        row = response_row(owner, input_items, body, utcnow(), self._retention)
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(stored_responses).values(row))

    async def get(self, owner: Owner, response_id: str) -> StoredResponse | None:
        query = sa.select(*STORED_COLUMNS).where(*_owned(owner, response_id, utcnow()))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else stored_response(row)

    async def delete(self, owner: Owner, response_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(stored_responses).where(*_owned(owner, response_id, utcnow())))
        return bool(result.rowcount)


async def prune_responses(engine: AsyncEngine, now: datetime) -> int:
    """The hourly job: deletes every stored response past its retention. Returns how many were deleted."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(stored_responses).where(_t.expires_at <= now))
    return result.rowcount
