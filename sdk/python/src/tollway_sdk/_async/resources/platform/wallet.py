"""``/v1/platforms/{pid}/wallet`` (SPEC §5.7, §17.2): the platform's prepaid balance, its ledger, and adding funds
by card. Only the operator credits a wallet directly (``client.admin.platforms.topup_wallet``)."""

from __future__ import annotations

from datetime import datetime

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, parser
from tollway_sdk._types import NOT_GIVEN, USD, NotGiven, body, query, usd
from tollway_sdk.types.wallet import CheckoutSession, WalletTransaction, WalletWithTransactions


class _Calls(Scoped):
    def _retrieve(self) -> Call[WalletWithTransactions]:
        return Call("GET", self._platform("wallet"), parser(WalletWithTransactions))

    def _transactions(
        self, type: str | NotGiven, since: datetime | NotGiven, until: datetime | NotGiven
    ) -> ListCall[WalletTransaction]:
        filters = query(type=type, since=since, until=until)
        return ListCall(self._platform("wallet", "transactions"), parser(WalletTransaction), filters)

    def _checkout(
        self, amount_usd: USD, success_url: str | NotGiven, cancel_url: str | NotGiven, key: str | None
    ) -> Call[CheckoutSession]:
        fields = body(amount_usd=usd(amount_usd, "amount_usd"), success_url=success_url, cancel_url=cancel_url)
        path = self._platform("wallet", "checkout")
        return Call("POST", path, parser(CheckoutSession), body=fields, money=True, idempotency_key=key)


class AsyncWalletResource(_Calls, AsyncAPIResource):
    async def retrieve(self) -> WalletWithTransactions:
        """The balance, the amount held by running calls, what is available, and the 5 newest ledger rows."""
        return await self._request(self._retrieve())

    def list_transactions(
        self,
        *,
        type: str | NotGiven = NOT_GIVEN,
        since: datetime | NotGiven = NOT_GIVEN,
        until: datetime | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[WalletTransaction]:
        return self._list(self._transactions(type, since, until), limit, page)

    async def create_checkout(
        self,
        *,
        amount_usd: USD,
        success_url: str | NotGiven = NOT_GIVEN,
        cancel_url: str | NotGiven = NOT_GIVEN,
        idempotency_key: str | None = None,
    ) -> CheckoutSession:
        """A Stripe Checkout Session for $5–$10,000; the wallet is credited when Stripe reports the payment. Sent
        with an ``Idempotency-Key`` (generated unless given, and the same on every retry), so a retried request
        never opens a second session."""
        return await self._request(self._checkout(amount_usd, success_url, cancel_url, idempotency_key))
