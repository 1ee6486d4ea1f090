"""Settlement writes with group commit: one writer task commits the wallet debits, wallet ``usage`` rows and usage
log rows of many concurrent calls in one transaction, so the database sees a few statements per batch instead of
four per request. Each record's future resolves once its batch has committed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.usage import UsageRecord
from tollway.storage.tables import usage_logs, wallet_transactions, wallets

log = logging.getLogger("tollway.usage")

_MAX_BATCH = 512


class UsageRecorder:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[tuple[UsageRecord, asyncio.Future[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._for_update = engine.dialect.name == "postgresql"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def stop(self) -> None:
        """Drain what is queued, then stop: nothing accepted is dropped on a graceful shutdown."""
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with _suppress_cancel():
                await self._task

    def submit(self, record: UsageRecord) -> asyncio.Future[int]:
        """Queue a settled call; the future gives the uncollected raw cost once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((record, future))
        return future

    async def wallet_available(self, platform_id: str) -> int | None:
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(
                    sa.select(wallets.c.balance_nanos - wallets.c.held_nanos).where(
                        wallets.c.platform_id == platform_id
                    )
                )
            ).scalar_one_or_none()
        return None if value is None else int(value)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._commit([record for record, _ in batch])
            except Exception:
                log.exception("batch settlement failed; retrying records one by one")
                results = []
                for record, _ in batch:
                    try:
                        results.extend(await self._commit([record]))
                    except Exception:
                        log.exception("settlement of %s failed", record.request_id)
                        results.append(-1)
            for (_, future), uncollected in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(uncollected)

    async def _commit(self, records: Sequence[UsageRecord]) -> list[int]:
        now = utcnow()
        async with self._engine.begin() as conn:
            takes = await self._debit_wallets(conn, records, now)
            log_rows = [_log_row(r, take, now) for r, take in zip(records, takes, strict=True)]
            await conn.execute(sa.insert(usage_logs), log_rows)
        return [r.cost_nanos - take for r, take in zip(records, takes, strict=True)]

    async def _debit_wallets(self, conn: AsyncConnection, records: Sequence[UsageRecord], now: Any) -> list[int]:
        """Take each cost from its wallet as far as the balance goes; the rest is uncollected (§9.4)."""
        platform_ids = sorted({r.platform_id for r in records if r.cost_nanos > 0})
        if not platform_ids:
            return [0] * len(records)
        query = sa.select(wallets.c.id, wallets.c.platform_id, wallets.c.balance_nanos, wallets.c.held_nanos).where(
            wallets.c.platform_id.in_(platform_ids)
        )
        if self._for_update:
            query = query.order_by(wallets.c.id).with_for_update()
        state = {row.platform_id: [row.id, int(row.balance_nanos), int(row.held_nanos)] for row in await conn.execute(query)}
        takes: list[int] = []
        tx_rows: list[dict[str, Any]] = []
        for record in records:
            wallet = state.get(record.platform_id)
            if wallet is None or record.cost_nanos <= 0:
                takes.append(0)
                continue
            take = min(record.cost_nanos, wallet[1] - wallet[2])
            take = max(take, 0)
            wallet[1] -= take
            takes.append(take)
            tx_rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "wallet_id": wallet[0],
                    "platform_id": record.platform_id,
                    "type": "usage",
                    "amount_nanos": -take,
                    "balance_after_nanos": wallet[1],
                    "description": record.ledger_description,
                    "metadata": {},
                    "request_id": record.request_id,
                    "created_at": now,
                }
            )
        for platform_id, (wallet_id, balance, _held) in state.items():
            await conn.execute(
                sa.update(wallets).where(wallets.c.id == wallet_id).values(balance_nanos=balance, updated_at=now)
            )
            del platform_id
        if tx_rows:
            await conn.execute(sa.insert(wallet_transactions), tx_rows)
        return takes


def _log_row(record: UsageRecord, take: int, now: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "platform_id": record.platform_id,
        "end_user_id": record.end_user_id,
        "request_type": record.request_type,
        "provider_id": record.provider_id,
        "model": record.model,
        "provider_model": record.provider_model,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "cached_tokens": record.cached_tokens,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "cost_nanos": record.cost_nanos,
        "charged_nanos": record.charged_nanos,
        "uncollected_nanos": record.cost_nanos - take,
        "status": str(record.status),
        "finish_reason": record.finish_reason,
        "error_code": record.error_code,
        "token_count_method": record.token_count_method,
        "request_id": record.request_id,
        "session_id": record.session_id,
        "metadata": record.metadata,
        "created_at": now,
    }


class _suppress_cancel:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        return exc_type is asyncio.CancelledError
