"""``/v1/platforms/{pid}/end-users/{id}/budget`` (SPEC §5.5): an end user's spending cap and its ledger.

Top-ups, debits and changes are money calls: each is sent with an ``Idempotency-Key`` (the caller's, or one generated
for the call and reused by its retries), so a retried call is applied at most once (§9.7)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, parser, seg
from tollway_sdk._types import NOT_GIVEN, USD, NotGiven, given, query, usd_fields
from tollway_sdk.types.end_users import Budget, BudgetChange, BudgetTransaction
from tollway_sdk.types.params import BudgetPeriod

_AMOUNTS = ("max_usd", "replenish_amount", "low_balance_threshold", "amount_usd")


class _Calls(Scoped):
    def _path(self, end_user_id: str, *parts: str) -> str:
        return self._platform("end-users", seg(end_user_id), "budget", *parts)

    def _create(self, end_user_id: str, fields: dict[str, Any]) -> Call[Budget]:
        return Call("POST", self._path(end_user_id), parser(Budget), body=usd_fields(fields, *_AMOUNTS))

    def _retrieve(self, end_user_id: str) -> Call[Budget]:
        return Call("GET", self._path(end_user_id), parser(Budget))

    def _update(self, end_user_id: str, fields: dict[str, Any], key: str | None) -> Call[Budget]:
        amounts = usd_fields(fields, *_AMOUNTS)
        return Call("PATCH", self._path(end_user_id), parser(Budget), body=amounts, money=True, idempotency_key=key)

    def _change(self, action: str, end_user_id: str, fields: dict[str, Any], key: str | None) -> Call[BudgetChange]:
        amounts = usd_fields(fields, *_AMOUNTS)
        path = self._path(end_user_id, action)
        return Call("POST", path, parser(BudgetChange), body=amounts, money=True, idempotency_key=key)

    def _transactions(
        self, end_user_id: str, type: str | NotGiven, since: datetime | NotGiven, until: datetime | NotGiven
    ) -> ListCall[BudgetTransaction]:
        filters = query(type=type, since=since, until=until)
        return ListCall(self._path(end_user_id, "transactions"), parser(BudgetTransaction), filters)


class AsyncBudgets(_Calls, AsyncAPIResource):
    async def create(
        self,
        end_user_id: str,
        *,
        max_usd: USD,
        period: BudgetPeriod | NotGiven = NOT_GIVEN,
        auto_replenish: bool | NotGiven = NOT_GIVEN,
        replenish_amount: USD | NotGiven = NOT_GIVEN,
        low_balance_threshold: USD | NotGiven | None = NOT_GIVEN,
    ) -> Budget:
        """Give the end user a budget (one per user); ``period`` defaults to ``one_time``."""
        return await self._request(self._create(end_user_id, given(locals(), "end_user_id")))

    async def retrieve(self, end_user_id: str) -> Budget:
        return await self._request(self._retrieve(end_user_id))

    async def update(
        self,
        end_user_id: str,
        *,
        max_usd: USD | NotGiven = NOT_GIVEN,
        period: BudgetPeriod | NotGiven = NOT_GIVEN,
        auto_replenish: bool | NotGiven = NOT_GIVEN,
        replenish_amount: USD | NotGiven | None = NOT_GIVEN,
        low_balance_threshold: USD | NotGiven | None = NOT_GIVEN,
        is_suspended: bool | NotGiven = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> Budget:
        """Change the budget: ``is_suspended=True`` blocks inference with 402 ``budget_suspended``; ``max_usd``
        below what is used and held is refused (400)."""
        fields = given(locals(), "end_user_id", "idempotency_key")
        return await self._request(self._update(end_user_id, fields, idempotency_key))

    async def topup(
        self,
        end_user_id: str,
        *,
        amount_usd: USD,
        reason: str | NotGiven = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> BudgetChange:
        """Raise ``max_usd`` by ``amount_usd`` (also while suspended)."""
        fields = given(locals(), "end_user_id", "idempotency_key")
        return await self._request(self._change("topup", end_user_id, fields, idempotency_key))

    async def debit(
        self,
        end_user_id: str,
        *,
        amount_usd: USD,
        reason: str,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> BudgetChange:
        """Charge ``amount_usd`` to the budget (a chargeback, a correction); more than is available raises
        ``BudgetExhaustedError`` and writes nothing."""
        fields = given(locals(), "end_user_id", "idempotency_key")
        return await self._request(self._change("debit", end_user_id, fields, idempotency_key))

    def list_transactions(
        self,
        end_user_id: str,
        *,
        type: str | NotGiven = NOT_GIVEN,
        since: datetime | NotGiven = NOT_GIVEN,
        until: datetime | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[BudgetTransaction]:
        """The budget's ledger, newest first; ``since`` is inclusive, ``until`` exclusive."""
        return self._list(self._transactions(end_user_id, type, since, until), limit, page)
