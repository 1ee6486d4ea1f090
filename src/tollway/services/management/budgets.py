"""End-user budgets as a platform manages them (SPEC §5.5, §9.5, §9.8): strict bodies with money by §9.1, creation,
reads with the lazy period reset, and the writes (topup, debit, PATCH) as actions that run inside the unit of work an
``Idempotency`` gives them, so that their ledger rows and the idempotency record commit together. The rules
themselves are ``domain/budget_changes.py``; this module locks, asks, and has the repository write the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from tollway.domain.bodies import Body, Boolean, Custom, Field, Metadata, Text, Usd
from tollway.domain.budget_changes import (
    BudgetChange,
    BudgetOverflow,
    BudgetPatch,
    BudgetRow,
    BudgetRuleViolation,
    InsufficientBudget,
    MaxBelowMinimum,
    debited,
    opened,
    patched,
    reset_if_due,
    topped_up,
)
from tollway.domain.budgets import BudgetSpec, BudgetTxnType, replenish_violation
from tollway.domain.clock import utcnow
from tollway.domain.conflicts import BudgetExists
from tollway.domain.money import format_usd
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.ports.management import Action, BudgetReads, UnitOfWork, UnitOfWorkFactory
from tollway.domain.records import Record
from tollway.errors import BudgetExhausted, InvalidRequest, NotFound

TXN_TYPES: Final = tuple(t.value for t in BudgetTxnType)
REASON_MAX: Final = 500
_READ_ONLY: Final = (
    "id", "platform_id", "end_user_id", "used_usd", "remaining_usd", "held_usd", "available_usd", "period_start",
    "next_reset_at", "created_at", "updated_at",
)  # fmt: skip
_PERIODS: Final = ", ".join(p.value for p in BudgetPeriod)
_NO_BUDGET: Final = "This end user has no budget."


@dataclass(frozen=True, slots=True)
class Movement:
    """A manual topup or debit: the amount (> 0), its reason and metadata."""

    amount_nanos: int
    reason: str | None
    metadata: dict[str, Any] = field(default_factory=dict)


def _period(value: object, param: str) -> BudgetPeriod:
    if not isinstance(value, str) or value not in BudgetPeriod.__members__.values():
        raise InvalidRequest(f"{param} must be one of {_PERIODS}.", param)
    return BudgetPeriod(value)


_USD_OR_ZERO: Final = Usd(allow_zero=True)
BUDGET_BODY: Final = Body(
    Field("max_usd", _USD_OR_ZERO, required=True),
    Field("period", Custom({"type": "string", "enum": [p.value for p in BudgetPeriod]}, _period), default="one_time"),
    Field("auto_replenish", Boolean(), default=False, description="Not with period one_time."),
    Field("replenish_amount", Usd(), nullable=True, description="Required iff auto_replenish."),
    Field("low_balance_threshold", _USD_OR_ZERO, nullable=True),
    read_only=(*_READ_ONLY, "is_suspended", "is_active"),
)
BUDGET_PATCH: Final = Body(
    *BUDGET_BODY.updating().fields.values(),
    Field("is_suspended", Boolean()),
    Field("is_active", Boolean()),
    read_only=_READ_ONLY,
)
_REASON: Final = Text(REASON_MAX, min_len=0, single_line=False)
_MOVEMENT_METADATA: Final = Field("metadata", Metadata(), nullable=True)
TOPUP_BODY: Final = Body(
    Field("amount_usd", Usd(), required=True), Field("reason", _REASON, nullable=True), _MOVEMENT_METADATA
)
DEBIT_BODY: Final = Body(
    Field("amount_usd", Usd(), required=True),
    Field("reason", Text(REASON_MAX, single_line=False), required=True),
    _MOVEMENT_METADATA,
)


def parse_spec(body: Mapping[str, Any]) -> BudgetSpec:
    """POST …/budget: ``max_usd`` (≥ 0) required; replenishment rules checked on the whole."""
    spec = BUDGET_BODY
    spec.check(body)
    period = spec.read(body, "period")
    auto = spec.read(body, "auto_replenish")
    replenish = spec.read(body, "replenish_amount")
    violation = replenish_violation(period, auto, replenish)
    if violation is not None:
        raise InvalidRequest(violation[1], violation[0])
    return BudgetSpec(
        max_nanos=spec.read(body, "max_usd"),
        period=period,
        auto_replenish=auto,
        replenish_nanos=replenish,
        low_balance_threshold_nanos=spec.read(body, "low_balance_threshold"),
    )


def parse_patch(body: Mapping[str, Any]) -> BudgetPatch:
    """PATCH …/budget: only the fields present change; rules that depend on the stored budget are checked under its
    lock (``Budgets.update``)."""
    spec = BUDGET_PATCH
    spec.check(body)
    return BudgetPatch(
        max_nanos=spec.read(body, "max_usd"),
        period=spec.read(body, "period"),
        auto_replenish=spec.read(body, "auto_replenish"),
        replenish_nanos=spec.read(body, "replenish_amount"),
        replenish_set="replenish_amount" in body,
        low_balance_threshold_nanos=spec.read(body, "low_balance_threshold"),
        threshold_set="low_balance_threshold" in body,
        is_suspended=spec.read(body, "is_suspended"),
        is_active=spec.read(body, "is_active"),
    )


def parse_topup(body: Mapping[str, Any]) -> Movement:
    return _movement(TOPUP_BODY, body)


def parse_debit(body: Mapping[str, Any]) -> Movement:
    return _movement(DEBIT_BODY, body)


def _movement(spec: Body, body: Mapping[str, Any]) -> Movement:
    spec.check(body)
    return Movement(
        amount_nanos=spec.read(body, "amount_usd"),
        reason=spec.read(body, "reason"),
        metadata=spec.read(body, "metadata") or {},
    )


class Budgets:
    def __init__(self, reads: BudgetReads, unit_of_work: UnitOfWorkFactory) -> None:
        self._reads = reads
        self._unit_of_work = unit_of_work

    async def create(
        self, platform_id: str, end_user_id: str, spec: BudgetSpec, now: datetime | None = None
    ) -> BudgetChange:
        step = opened(platform_id, end_user_id, spec, now or utcnow())
        try:
            async with self._unit_of_work() as uow:
                if not await uow.end_users.is_live(platform_id, end_user_id):
                    raise NotFound("No end user with this id.")
                await uow.budgets.open(step)
                await uow.commit()
        except BudgetExists:
            raise InvalidRequest("This end user already has a budget; change it with PATCH.") from None
        return step.change

    async def get(self, platform_id: str, end_user_id: str, now: datetime | None = None) -> BudgetRow:
        budget = await self._current(platform_id, end_user_id, now or utcnow())
        if budget is None:
            raise NotFound(_NO_BUDGET)
        return budget

    async def get_active(self, platform_id: str, end_user_id: str, now: datetime | None = None) -> BudgetRow:
        """The budget inference applies (§6 ``/v1/me/budget``): 404 when none is active."""
        budget = await self._current(platform_id, end_user_id, now or utcnow())
        if budget is None or not budget.is_active:
            raise NotFound("You have no active budget.")
        return budget

    async def _current(self, platform_id: str, end_user_id: str, now: datetime) -> BudgetRow | None:
        """The current budget; a due reset is applied (and committed) first, so reads never show a stale period."""
        budget = await self._reads.find(platform_id, end_user_id)
        if budget is None or reset_if_due(budget, now) is None:
            return budget
        async with self._unit_of_work() as uow:
            budget = await _locked(uow, platform_id, end_user_id, now)
            await uow.commit()
        return budget

    async def transactions(
        self,
        platform_id: str,
        end_user_id: str,
        txn_type: str | None,
        since: datetime | None,
        until: datetime | None,
        offset: int,
        limit: int,
    ) -> tuple[list[Record], int]:
        if txn_type is not None and txn_type not in TXN_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(TXN_TYPES)}.", "type")
        budget = await self.get(platform_id, end_user_id)  # applies a due reset, so its row is listed
        return await self._reads.transactions(
            budget.id, txn_type=txn_type, since=since, until=until, offset=offset, limit=limit
        )

    def topup(
        self, platform_id: str, end_user_id: str, movement: Movement, now: datetime | None = None
    ) -> Action[BudgetChange]:
        """Raises ``max`` (works while suspended or inactive), inside the caller's unit of work."""

        async def run(uow: UnitOfWork) -> BudgetChange:
            at = now or utcnow()
            budget = await _locked(uow, platform_id, end_user_id, at)
            if budget is None:
                raise NotFound(_NO_BUDGET)
            try:
                step = topped_up(budget, movement.amount_nanos, at, reason=movement.reason, metadata=movement.metadata)
            except BudgetOverflow:
                raise InvalidRequest("This top-up would exceed the largest budget.", "amount_usd") from None
            await uow.budgets.apply(step)
            return step.change

        return run

    def debit(
        self, platform_id: str, end_user_id: str, movement: Movement, now: datetime | None = None
    ) -> Action[BudgetChange]:
        """Raises ``used``, at most by what is available; a refusal rolls the unit of work back (also a reset the
        lock applied), so nothing is written."""

        async def run(uow: UnitOfWork) -> BudgetChange:
            assert movement.reason is not None
            at = now or utcnow()
            budget = await _locked(uow, platform_id, end_user_id, at)
            if budget is None:
                raise NotFound(_NO_BUDGET)
            try:
                step = debited(budget, movement.amount_nanos, at, reason=movement.reason, metadata=movement.metadata)
            except InsufficientBudget as exc:
                available = format_usd(exc.available_nanos)
                raise BudgetExhausted(
                    f"amount_usd exceeds the budget's available {available} USD; nothing was debited.", "amount_usd"
                ) from None
            await uow.budgets.apply(step)
            return step.change

        return run

    def update(
        self, platform_id: str, end_user_id: str, patch: BudgetPatch, now: datetime | None = None
    ) -> Action[BudgetRow]:
        async def run(uow: UnitOfWork) -> BudgetRow:
            at = now or utcnow()
            budget = await _locked(uow, platform_id, end_user_id, at)
            if budget is None:
                raise NotFound(_NO_BUDGET)
            try:
                step = patched(budget, patch, at)
            except MaxBelowMinimum as exc:
                minimum = format_usd(exc.minimum_nanos)
                raise InvalidRequest(
                    f"max_usd must be at least {minimum} (used_usd + held_usd of this budget).", "max_usd"
                ) from None
            except BudgetRuleViolation as exc:
                raise InvalidRequest(exc.message, exc.param) from None
            await uow.budgets.apply(step)
            return step.budget

        return run


async def _locked(uow: UnitOfWork, platform_id: str, end_user_id: str, now: datetime) -> BudgetRow | None:
    """The budget locked in ``uow`` with its due period reset applied first (§9.8), as every operation sees it."""
    budget = await uow.budgets.lock(platform_id, end_user_id)
    if budget is None:
        return None
    reset = reset_if_due(budget, now)
    if reset is None:
        return budget
    await uow.budgets.apply(reset)
    return reset.budget
