"""What the management use cases need from storage: a unit of work for the writes that must commit together (budget
and wallet ledger rows with their Idempotency-Key record, SPEC §9.7), and one repository per concept for the rest,
each of whose methods is one short transaction of its own (reads never take SQLite's write lock)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from tollway.domain.budget_changes import BudgetRow, BudgetStep
from tollway.domain.catalog import ModelRow, Provider
from tollway.domain.end_users import EndUserCreation
from tollway.domain.idempotency import Claim, Existing, IdempotencyIdentity, StoredResponse
from tollway.domain.platform_settings import RateLimits
from tollway.domain.records import Record

T = TypeVar("T")
Page = tuple[list[Record], int]  # one page of rows and the total of the filtered list (§1.2)

# -- inside one transaction -------------------------------------------------------------------------------------


class BudgetLedger(Protocol):
    """An end user's budget inside the unit of work: locked rows, written back whole with their ledger rows."""

    async def lock(self, platform_id: str, end_user_id: str) -> BudgetRow | None:
        """Locks the budget of a live end user of this platform (active or not); None when the end user is
        unknown, deleted or has no budget. No period reset is applied here."""
        ...

    async def open(self, step: BudgetStep) -> None:
        """Inserts a new budget and its opening row; ``BudgetExists`` when the end user has one already."""
        ...

    async def apply(self, step: BudgetStep) -> None:
        """Stores the locked budget's state after the step, appends its ledger rows in order, and records the
        webhook events of each row in the outbox (§9.6 invariant 8)."""
        ...


class WalletLedger(Protocol):
    async def credit(
        self,
        platform_id: str,
        amount_nanos: int,
        *,
        description: str | None,
        metadata: Mapping[str, Any],
        request_id: str | None,
    ) -> tuple[Record, Record] | None:
        """Credits a live platform's wallet and appends its ``topup`` row: ``(wallet, transaction)``; None when the
        platform is unknown or deleted; ``BalanceOverflow`` past the largest balance."""
        ...


class CardPayments(Protocol):
    async def claim(self, session_id: str, platform_id: str, amount_nanos: int, at: datetime) -> bool:
        """Records that this Checkout Session credits a wallet in this transaction (SPEC §17.2): False when it
        already has, in a committed transaction or one that commits first (a concurrent claim waits for it)."""
        ...


class IdempotencyCompletion(Protocol):
    async def complete(self, claim: Claim, response: StoredResponse, expires_at: datetime) -> bool:
        """Marks the claim done with its response; False when the claim is gone (taken over or pruned): the unit
        of work must then not commit."""
        ...


class LiveEndUsers(Protocol):
    async def is_live(self, platform_id: str, end_user_id: str) -> bool: ...


class UnitOfWork(Protocol):
    """One transaction: ``async with uow: ...; await uow.commit()``. Leaving the block without ``commit`` (or with
    an exception) rolls everything back."""

    @property
    def budgets(self) -> BudgetLedger: ...

    @property
    def wallets(self) -> WalletLedger: ...

    @property
    def idempotency(self) -> IdempotencyCompletion: ...

    @property
    def card_payments(self) -> CardPayments: ...

    @property
    def end_users(self) -> LiveEndUsers: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
# An operation that runs inside a unit of work someone else commits (the one its Idempotency-Key record completes in).
Action = Callable[[UnitOfWork], Awaitable[T]]

# -- repositories: each method is one transaction of its own -----------------------------------------------------


class IdempotencyClaims(Protocol):
    async def claim(
        self, ident: IdempotencyIdentity, fingerprint: str, now: datetime, lease: timedelta
    ) -> Claim | Existing:
        """Claims the key, or reports who has it (an expired record is deleted first and the key claimed anew)."""
        ...

    async def store(self, claim: Claim, response: StoredResponse, expires_at: datetime) -> bool:
        """Completes a claim on its own (an outcome without ledger rows, such as a 402)."""
        ...

    async def release(self, claim: Claim) -> None:
        """Gives a claim up (the outcome is not stored): the key is usable again at once."""
        ...


class BudgetReads(Protocol):
    async def find(self, platform_id: str, end_user_id: str) -> BudgetRow | None:
        """The stored budget of a live end user of this platform, without applying a due reset."""
        ...

    async def transactions(
        self,
        budget_id: str,
        *,
        txn_type: str | None,
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> Page: ...


class WalletReads(Protocol):
    async def wallet(self, platform_id: str) -> Record | None: ...

    async def transactions(
        self,
        platform_id: str,
        *,
        txn_type: str | None,
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> Page: ...

    async def usage_logs(
        self,
        platform_id: str,
        filters: Mapping[str, str],
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> Page:
        """``filters`` maps a usage-log column (model, end_user_id, status, request_type) to its required value."""
        ...


class EndUserRepository(Protocol):
    async def create_or_get(
        self, platform_id: str, values: Mapping[str, Any], key_values: Mapping[str, Any], now: datetime
    ) -> EndUserCreation | None: ...

    async def get(self, platform_id: str, end_user_id: str) -> Record | None: ...

    async def list_end_users(self, platform_id: str, external_id: str | None, offset: int, limit: int) -> Page: ...

    async def update(
        self, platform_id: str, end_user_id: str, values: Mapping[str, Any], now: datetime
    ) -> Record | None: ...

    async def delete(self, platform_id: str, end_user_id: str, now: datetime) -> bool: ...

    async def create_key(self, platform_id: str, end_user_id: str, key_values: Mapping[str, Any]) -> Record | None: ...


class PlatformRepository(Protocol):
    async def create(
        self,
        *,
        name: str,
        slug: str | None,
        slug_base: str,
        settings: Mapping[str, Any],
        key_values: Mapping[str, Any],
    ) -> tuple[Record, Record, Record]:
        """``(platform, wallet, api_key)``; ``Duplicate`` when the slug is taken."""
        ...

    async def get(self, platform_id: str) -> Record | None: ...

    async def list_platforms(self, offset: int, limit: int) -> Page: ...

    async def update(
        self, platform_id: str, *, name: str | None, settings_patch: Mapping[str, Any]
    ) -> Record | None: ...

    async def soft_delete(self, platform_id: str) -> bool: ...


class ApiKeyRepository(Protocol):
    async def create(self, values: Mapping[str, Any]) -> Record | None: ...

    async def list_keys(
        self, platform_id: str, key_type: str, end_user_id: str | None, offset: int, limit: int
    ) -> Page: ...

    async def revoke(self, platform_id: str, key_id: str, now: datetime) -> bool: ...


class LlmConfigRepository(Protocol):
    async def create(self, platform_id: str, values: Mapping[str, Any]) -> Record:
        """``ProviderUnavailable`` when the provider is unknown or inactive."""
        ...

    async def get(self, platform_id: str, config_id: str) -> Record | None: ...

    async def list_configs(self, platform_id: str, provider_id: str | None, offset: int, limit: int) -> Page: ...

    async def update(self, platform_id: str, config_id: str, values: Mapping[str, Any]) -> Record | None: ...

    async def delete(self, platform_id: str, config_id: str) -> bool: ...


class CatalogRepository(Protocol):
    """Providers and priced model rows: inserts raise ``Duplicate``; deleting a provider that model rows still
    refer to raises ``StillReferenced``."""

    async def insert_provider(self, values: Mapping[str, Any]) -> Provider: ...

    async def get_provider(self, provider_id: str) -> Provider | None: ...

    async def list_providers(self, kind: str | None, offset: int, limit: int) -> tuple[list[Provider], int]: ...

    async def update_provider(self, provider_id: str, values: Mapping[str, Any]) -> Provider | None: ...

    async def delete_provider(self, provider_id: str) -> bool: ...

    async def insert_model(self, values: Mapping[str, Any]) -> ModelRow: ...

    async def get_model(self, model_id: str) -> ModelRow | None: ...

    async def list_models(
        self, slug: str | None, provider_id: str | None, offset: int, limit: int
    ) -> tuple[list[ModelRow], int]: ...

    async def update_model(self, model_id: str, values: Mapping[str, Any]) -> ModelRow | None: ...

    async def delete_model(self, model_id: str) -> bool: ...

    async def catalog_rows(self) -> tuple[list[Provider], list[ModelRow]]:
        """Every provider and every model row (price catalogue imports, §19)."""
        ...

    async def apply_model_changes(
        self, updates: Sequence[tuple[str, Mapping[str, tuple[Any, Any]]]], inserts: Sequence[Mapping[str, Any]]
    ) -> bool:
        """One transaction: updates ``(row id, {column: (old, new)})`` applied only where every column still holds
        its old value, and the inserts; False (nothing applied) when any row changed or a slug was taken."""
        ...


class CatalogSource(Protocol):
    """Reads a price catalogue from an http(s) URL (§19): size-limited, with a timeout, §11.5's address rules."""

    async def fetch(self, url: str) -> bytes: ...


class WebhookEndpointRepository(Protocol):
    async def create(self, values: Mapping[str, Any]) -> Record: ...

    async def list_endpoints(self, platform_id: str, offset: int, limit: int) -> Page: ...

    async def get(self, platform_id: str, endpoint_id: str) -> Record | None: ...

    async def update(
        self, platform_id: str, endpoint_id: str, values: Mapping[str, Any], now: datetime
    ) -> Record | None: ...

    async def delete(self, platform_id: str, endpoint_id: str, now: datetime) -> bool: ...

    async def rotate(
        self, platform_id: str, endpoint_id: str, sealed: bytes, expires_at: datetime, now: datetime
    ) -> bool: ...

    async def deliveries(
        self, platform_id: str, endpoint_id: str, status: str | None, offset: int, limit: int
    ) -> Page: ...

    async def replay(self, platform_id: str, endpoint_id: str, delivery_id: str, now: datetime) -> Record | None:
        """``EndpointInactive`` when the endpoint is disabled."""
        ...


class RateOverrideRepository(Protocol):
    async def end_user_exists(self, platform_id: str, end_user_id: str) -> bool: ...

    async def get(self, platform_id: str, end_user_id: str) -> Record | None: ...

    async def put(self, platform_id: str, end_user_id: str, limits: RateLimits, now: datetime) -> Record | None: ...

    async def delete(self, platform_id: str, end_user_id: str) -> bool: ...

    async def limits_of(self, platform_id: str, end_user_id: str) -> tuple[RateLimits | None, RateLimits]:
        """(the end user's override, or None; the platform's default limits)."""
        ...
