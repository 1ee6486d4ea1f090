"""Past usage for the demo (``tollway demo``, SPEC §17.1): a platform's opening top-up and its calls of the last days,
written with the rows a real settlement writes so that every §9.6 invariant holds (reconcile stays ok): each
settled call has its usage log row and its wallet ``usage`` row (cost − uncollected = −amount, one per request id),
errors cost nothing and have no ledger row, the balance equals the sum of the ledger and never goes below zero.

Only end users without an active budget (and the platform's own keys) get history: a budget's ledger would need its
period resets replayed. The rows are written in time order in one transaction, after the wallet's existing rows
are accounted for, so ``balance_usd_after`` reads correctly down the ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.ids import new_id, new_request_id
from tollway.storage.sql.tables import budgets, usage_logs, wallet_transactions, wallets


@dataclass(frozen=True, slots=True)
class PastCall:
    at: datetime
    end_user_id: str | None
    model: str
    provider_id: str
    provider_model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    ttft_ms: int | None
    cost_nanos: int  # 0 for errors
    charged_nanos: int | None  # None for platform keys
    error_code: str | None = None  # a failed call: status error, nothing captured


@dataclass(frozen=True, slots=True)
class PastTopup:
    at: datetime
    amount_nanos: int
    description: str


class HistoryRefused(ValueError):
    """The history would break an invariant (a budgeted end user, a negative balance, a wallet that moved on)."""


async def record_history(engine: AsyncEngine, platform_id: str, topup: PastTopup, calls: Sequence[PastCall]) -> None:
    ordered = sorted(calls, key=lambda call: call.at)
    if ordered and ordered[0].at < topup.at:
        raise HistoryRefused("the opening top-up must come before every call")
    async with engine.begin() as conn:
        wallet = (
            await conn.execute(
                sa.select(wallets).where(wallets.c.platform_id == platform_id).with_for_update(key_share=True)
            )
        ).first()
        if wallet is None:
            raise HistoryRefused("no wallet for this platform")
        if wallet.balance_nanos != 0 or wallet.held_nanos != 0:
            raise HistoryRefused("history goes into a wallet that has seen no money yet")
        users = {call.end_user_id for call in ordered if call.end_user_id is not None}
        budgeted = (
            await conn.execute(
                sa.select(budgets.c.end_user_id).where(budgets.c.end_user_id.in_(users), budgets.c.is_active.is_(True))
            )
        ).first()
        if budgeted is not None:
            raise HistoryRefused("end users with an active budget get no history")
        balance = topup.amount_nanos
        ledger = [
            _ledger_row(wallet.id, platform_id, "topup", topup.amount_nanos, balance, topup.description, None, topup.at)
        ]
        logs = []
        for call in ordered:
            request_id = new_request_id()
            logs.append(_log_row(platform_id, request_id, call))
            if call.error_code is None:
                balance -= call.cost_nanos
                if balance < 0:
                    raise HistoryRefused("the calls cost more than the opening top-up")
                description = f"{call.model}: {call.prompt_tokens} in / {call.completion_tokens} out"
                ledger.append(
                    _ledger_row(
                        wallet.id, platform_id, "usage", -call.cost_nanos, balance, description, request_id, call.at
                    )
                )
        await conn.execute(sa.insert(wallet_transactions), ledger)
        if logs:
            await conn.execute(sa.insert(usage_logs), logs)
        await conn.execute(
            sa.update(wallets).where(wallets.c.id == wallet.id).values(balance_nanos=balance, updated_at=utcnow())
        )


def _ledger_row(
    wallet_id: str,
    platform_id: str,
    kind: str,
    amount: int,
    balance_after: int,
    description: str,
    request_id: str | None,
    at: datetime,
) -> dict[str, object]:
    return {
        "id": new_id(),
        "wallet_id": wallet_id,
        "platform_id": platform_id,
        "type": kind,
        "amount_nanos": amount,
        "balance_after_nanos": balance_after,
        "description": description,
        "metadata": {},
        "request_id": request_id,
        "created_at": at,
    }


def _log_row(platform_id: str, request_id: str, call: PastCall) -> dict[str, object]:
    failed = call.error_code is not None
    return {
        "id": new_id(),
        "platform_id": platform_id,
        "end_user_id": call.end_user_id,
        "request_type": "chat.completion",
        "provider_id": call.provider_id,
        "model": call.model,
        "provider_model": call.provider_model,
        "prompt_tokens": 0 if failed else call.prompt_tokens,
        "completion_tokens": 0 if failed else call.completion_tokens,
        "total_tokens": 0 if failed else call.prompt_tokens + call.completion_tokens,
        "cached_tokens": 0,
        "latency_ms": call.latency_ms,
        "ttft_ms": None if failed else call.ttft_ms,
        "cost_nanos": 0 if failed else call.cost_nanos,
        "charged_nanos": (0 if call.end_user_id else None) if failed else call.charged_nanos,
        "uncollected_nanos": 0,
        "status": "error" if failed else "success",
        "finish_reason": None if failed else "stop",
        "error_code": call.error_code,
        "token_count_method": "reported",
        "request_id": request_id,
        "session_id": None,
        "metadata": {},
        "created_at": call.at,
    }
