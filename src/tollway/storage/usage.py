"""Settlement writes with group commit: one writer task commits the wallet debits, wallet ``usage`` rows and usage
log rows of many concurrent calls in one transaction, so the database sees a few statements per batch instead of
four per request. Each record's future resolves once its batch has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.usage import UsageRecord
from tollway.storage.db import reader
from tollway.storage.tables import usage_logs, wallet_transactions, wallets

log = logging.getLogger("tollway.usage")

_MAX_BATCH = 512
# Group-commit window: the writer waits this long after the first record so that one transaction carries the
# settlements of every call that ended meanwhile. Responses never wait for it.
_WINDOW_S = 0.02

CommitListener = Callable[[str, int, int | None], None]


class WalletBalances:
    """The one hot-path wallet read: available = balance − held, without taking a write lock."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._reader = reader(engine)
        self._query = sa.select(wallets.c.balance_nanos - wallets.c.held_nanos).where(
            wallets.c.platform_id == sa.bindparam("platform_id")
        )

    async def wallet_available(self, platform_id: str) -> int | None:
        async with self._reader.connect() as conn:
            value = (await conn.execute(self._query, {"platform_id": platform_id})).scalar_one_or_none()
        return None if value is None else int(value)


class UsageRecorder:
    def __init__(self, engine: AsyncEngine, on_committed: CommitListener | None = None) -> None:
        """``on_committed(platform_id, cost_nanos, available_after)`` is told of every committed record
        (``available_after`` None when the commit failed)."""
        self._engine = engine
        self.on_committed = on_committed
        self._queue: asyncio.Queue[tuple[UsageRecord, asyncio.Future[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._for_update = engine.dialect.name == "postgresql"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def stop(self) -> None:
        """Drain what is queued, then stop: nothing accepted is dropped on a graceful shutdown."""
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def submit(self, record: UsageRecord) -> asyncio.Future[int]:
        """Queue a settled call; the future gives the uncollected raw cost once committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((record, future))
        return future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(_WINDOW_S)
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            records = [record for record, _ in batch]
            try:
                results, available = await self._commit(records)
            except Exception:
                log.exception("batch settlement failed; retrying records one by one")
                results, available = [], {}
                for record in records:
                    try:
                        one, after = await self._commit([record])
                        results.extend(one)
                        available.update(after)
                    except Exception:
                        log.exception("settlement of %s failed", record.request_id)
                        results.append(-1)
            for (record, future), uncollected in zip(batch, results, strict=True):
                if self.on_committed is not None:
                    self.on_committed(record.platform_id, record.cost_nanos, available.get(record.platform_id))
                if not future.done():
                    future.set_result(uncollected)
                self._queue.task_done()

    async def _commit(self, records: Sequence[UsageRecord]) -> tuple[list[int], dict[str, int]]:
        """One transaction for the batch; returns each record's uncollected cost and each wallet's available."""
        now = utcnow()
        async with self._engine.begin() as conn:
            takes, available = await self._debit_wallets(conn, records, now)
            log_rows = [_log_row(r, take, now) for r, take in zip(records, takes, strict=True)]
            await conn.execute(sa.insert(usage_logs), log_rows)
        return [r.cost_nanos - take for r, take in zip(records, takes, strict=True)], available

    async def _debit_wallets(
        self, conn: AsyncConnection, records: Sequence[UsageRecord], now: Any
    ) -> tuple[list[int], dict[str, int]]:
        """Take each cost from its wallet as far as the balance goes; the rest is uncollected (§9.4)."""
        platform_ids = sorted({r.platform_id for r in records if r.cost_nanos > 0})
        if not platform_ids:
            return [0] * len(records), {}
        query = sa.select(wallets.c.id, wallets.c.platform_id, wallets.c.balance_nanos, wallets.c.held_nanos).where(
            wallets.c.platform_id.in_(platform_ids)
        )
        if self._for_update:
            query = query.order_by(wallets.c.id).with_for_update()
        state = {
            row.platform_id: [row.id, int(row.balance_nanos), int(row.held_nanos)] for row in await conn.execute(query)
        }
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
        for wallet_id, balance, _held in state.values():
            await conn.execute(
                sa.update(wallets).where(wallets.c.id == wallet_id).values(balance_nanos=balance, updated_at=now)
            )
        if tx_rows:
            await conn.execute(sa.insert(wallet_transactions), tx_rows)
        return takes, {pid: balance - held for pid, (_id, balance, held) in state.items()}


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
