"""One page of a list query plus its total (SPEC §1.2 lists): the shared shape of every management list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.domain.records import Record


async def fetch_page(
    conn: AsyncConnection, query: sa.Select[Any], order: list[Any], offset: int, limit: int
) -> tuple[list[Record], int]:
    """Counts the filtered rows, then reads one ordered page; a page past the end skips the row query."""
    count = sa.select(sa.func.count()).select_from(query.order_by(None).subquery())
    total = int((await conn.execute(count)).scalar_one())
    if offset >= total:
        return [], total
    rows = (await conn.execute(query.order_by(*order).offset(offset).limit(limit))).all()
    return [dict(row._mapping) for row in rows], total


async def ledger_page(
    conn: AsyncConnection,
    table: sa.Table,
    owner: sa.ColumnElement[bool],
    *,
    txn_type: str | None,
    since: datetime | None,
    until: datetime | None,
    offset: int,
    limit: int,
) -> tuple[list[Record], int]:
    """One page of a wallet's or a budget's ledger rows, newest first, filtered by type and time (§1.2, §5.7)."""
    query = sa.select(table).where(owner)
    if txn_type is not None:
        query = query.where(table.c.type == txn_type)
    if since is not None:
        query = query.where(table.c.created_at >= since)
    if until is not None:
        query = query.where(table.c.created_at < until)
    return await fetch_page(conn, query, [table.c.created_at.desc(), table.c.id.desc()], offset, limit)
