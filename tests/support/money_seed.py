"""A platform with a funded wallet and budgeted end users, written through the real services, and the hold and
settlement commands the money writer takes: the seeding shared by ``tests/integration/test_pg_money_set_based.py``
and ``bench/pgapply.py``."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from tollway.domain.budgets import BudgetSpec
from tollway.domain.clock import utcnow
from tollway.domain.holds import CandidateTerms, HoldGrant, HoldRequest, Settlement
from tollway.domain.platform_settings import BudgetPeriod
from tollway.domain.pricing import Prices
from tollway.domain.usage import CallStatus, UsageRecord
from tollway.services.management.budgets import Budgets
from tollway.services.management.end_users import EndUsers
from tollway.services.management.platforms import Platforms
from tollway.settings import Settings
from tollway.storage.sql.budgets import BudgetStore
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.end_users import EndUserStore
from tollway.storage.sql.migrate import upgrade
from tollway.storage.sql.tables import wallet_transactions, wallets
from tollway.storage.sql.tenants import PlatformStore
from tollway.storage.sql.unit_of_work import SqlUnitOfWork

HOLD = 1_000_000  # what each hold reserves, on the wallet and on the budget
COST = 700_001  # what each settlement charges


async def funded_tenant(
    settings: Settings, users: int, wallet_nanos: int, budget_nanos: int, name: str
) -> tuple[str, list[str]]:
    """Migrates the database, then creates a platform whose wallet holds ``wallet_nanos`` (a top-up with its ledger
    row) and ``users`` end users with a one-time budget of ``budget_nanos`` each; returns the platform's id and the
    end users' ids."""
    await upgrade(settings)
    engine = create_engine(settings)
    try:
        platform_id = (await Platforms(PlatformStore(engine)).create({"name": name})).platform["id"]
        async with engine.begin() as conn:
            wallet_id = (
                await conn.execute(sa.select(wallets.c.id).where(wallets.c.platform_id == platform_id))
            ).scalar_one()
            await conn.execute(sa.update(wallets).where(wallets.c.id == wallet_id).values(balance_nanos=wallet_nanos))
            await conn.execute(
                sa.insert(wallet_transactions).values(
                    id=str(uuid.uuid4()), wallet_id=wallet_id, platform_id=platform_id, type="topup",
                    amount_nanos=wallet_nanos, balance_after_nanos=wallet_nanos, description=name, metadata={},
                    request_id=None, created_at=utcnow(),
                )
            )  # fmt: skip
        budget_service = Budgets(BudgetStore(engine), lambda: SqlUnitOfWork(engine))
        ids = []
        for _ in range(users):
            created, _ = await EndUsers(EndUserStore(engine)).create(platform_id, {"external_id": uuid.uuid4().hex})
            user = created.end_user["id"]
            await budget_service.create(
                platform_id, user, BudgetSpec(budget_nanos, BudgetPeriod.ONE_TIME, False, None, None), utcnow()
            )
            ids.append(user)
        return platform_id, ids
    finally:
        await engine.dispose()


def hold_request(platform_id: str, user: str) -> HoldRequest:
    """A hold of ``HOLD`` (one output token at ``HOLD`` a token) for ``user``, expiring in five minutes."""
    terms = (CandidateTerms("m", Prices(HOLD * 1_000_000, 0), output_limit=1, min_output=1, prompt_tokens=1),)
    return HoldRequest("req_" + uuid.uuid4().hex, platform_id, user, terms, 1, 0, utcnow() + timedelta(minutes=5))


def settlement(grant: HoldGrant, request: HoldRequest) -> Settlement:
    """The granted hold settled as a successful chat call costing and charging ``COST``."""
    record = UsageRecord(
        request.request_id, request.platform_id, request.end_user_id, "chat.completion", None, "m", None, 1, 0, 0, 3,
        None, COST, COST, CallStatus.SUCCESS, "stop", None, "reported", None, {},
    )  # fmt: skip
    return Settlement(grant.hold_id, record, COST)
