"""A platform's money as management sees it (SPEC §4.3, §5.7): the operator top-up, the wallet with its newest
ledger rows, the ledger and the usage log with their filters. Platforms cannot credit their own wallet."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from tollway.domain.bodies import Body, Field, Metadata, Text, Usd
from tollway.domain.conflicts import BalanceOverflow
from tollway.domain.ports.management import Action, UnitOfWork, WalletReads
from tollway.domain.records import Record
from tollway.errors import InvalidRequest, NotFound

RECENT_TRANSACTIONS: Final = 5
WALLET_TXN_TYPES: Final = ("topup", "usage", "usage_correction")  # a late charge's difference (SPEC §9.4)
LOG_STATUSES: Final = ("success", "error", "interrupted")
LOG_REQUEST_TYPES: Final = ("chat.completion", "response", "image", "embedding", "moderation", "messages", "mcp")  # §12


@dataclass(frozen=True, slots=True)
class WalletTopup:
    amount_nanos: int
    description: str | None
    metadata: dict[str, Any]


WALLET_TOPUP_BODY: Final = Body(
    Field("amount_usd", Usd(), required=True),
    Field("description", Text(500, min_len=0, single_line=False), nullable=True),
    Field("metadata", Metadata(), nullable=True),
)


def parse_wallet_topup(body: Mapping[str, Any]) -> WalletTopup:
    """``{amount_usd > 0, description?, metadata?}`` (SPEC §4.3)."""
    spec = WALLET_TOPUP_BODY
    spec.check(body)
    amount = spec.read(body, "amount_usd")
    description = spec.read(body, "description")
    return WalletTopup(amount, description, spec.read(body, "metadata") or {})


@dataclass(frozen=True, slots=True)
class LogFilters:
    model: str | None = None
    end_user_id: str | None = None
    status: str | None = None
    request_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # SPEC §12/§16: the rows of one response (its turns and MCP calls), one thread, one MCP app
    response_id: str | None = None
    thread_id: str | None = None
    mcp_app: str | None = None


class Accounts:
    def __init__(self, store: WalletReads) -> None:
        self._store = store

    def topup_action(
        self, platform_id: str, topup: WalletTopup, request_id: str | None
    ) -> Action[tuple[Record, Record]]:
        """The operator top-up (§4.3) as an action inside a caller's transaction, the one an Idempotency-Key record
        commits in (§9.7): credits the wallet and appends its ``topup`` row."""

        async def run(uow: UnitOfWork) -> tuple[Record, Record]:
            try:
                result = await uow.wallets.credit(
                    platform_id,
                    topup.amount_nanos,
                    description=topup.description,
                    metadata=topup.metadata,
                    request_id=request_id,
                )
            except BalanceOverflow:
                raise InvalidRequest(
                    "This top-up would exceed the largest balance a wallet can hold.", "amount_usd"
                ) from None
            if result is None:
                raise NotFound("No platform with this id.")
            return result

        return run

    async def wallet(self, platform_id: str) -> Record:
        wallet = await self._store.wallet(platform_id)
        if wallet is None:
            raise NotFound("No platform with this id.")
        return wallet

    async def wallet_with_recent(self, platform_id: str) -> tuple[Record, list[Record]]:
        wallet = await self.wallet(platform_id)
        recent, _ = await self._store.transactions(
            platform_id, txn_type=None, since=None, until=None, offset=0, limit=RECENT_TRANSACTIONS
        )
        return wallet, recent

    async def transactions(
        self,
        platform_id: str,
        txn_type: str | None,
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Record], int]:
        if txn_type is not None and txn_type not in WALLET_TXN_TYPES:
            raise InvalidRequest("type must be topup or usage.", "type")
        return await self._store.transactions(
            platform_id, txn_type=txn_type, since=since, until=until, offset=offset, limit=limit
        )

    async def usage_logs(
        self, platform_id: str, filters: LogFilters, offset: int, limit: int
    ) -> tuple[list[Record], int]:
        if filters.status is not None and filters.status not in LOG_STATUSES:
            raise InvalidRequest("status must be one of success, error, interrupted.", "status")
        if filters.request_type is not None and filters.request_type not in LOG_REQUEST_TYPES:
            raise InvalidRequest(f"request_type must be one of {', '.join(LOG_REQUEST_TYPES)}.", "request_type")
        columns = {
            "model": filters.model,
            "end_user_id": filters.end_user_id,
            "status": filters.status,
            "request_type": filters.request_type,
            "response_id": filters.response_id,
            "thread_id": filters.thread_id,
            "mcp_app": filters.mcp_app,
        }
        present = {column: value for column, value in columns.items() if value is not None}
        return await self._store.usage_logs(platform_id, present, filters.since, filters.until, offset, limit)
