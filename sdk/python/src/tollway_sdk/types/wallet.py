"""The platform wallet and its ledger (SPEC §5.7, §9.5), and card top-ups (§17.2). Amounts are exact ``Decimal``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, Field

from tollway_sdk._models import TollwayModel


class WalletTransaction(TollwayModel):
    id: str
    wallet_id: str
    type: str  # topup or usage
    amount_usd: Decimal
    balance_usd_after: Decimal
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    created_at: AwareDatetime


class Wallet(TollwayModel):
    id: str
    platform_id: str
    currency: str
    balance_usd: Decimal
    held_usd: Decimal
    available_usd: Decimal
    low_balance_threshold: Decimal | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class WalletWithTransactions(Wallet):
    """``GET /wallet``: the wallet with its five newest ledger rows."""

    recent_transactions: list[WalletTransaction]


class WalletTopup(TollwayModel):
    wallet: Wallet
    transaction: WalletTransaction


class CheckoutSession(TollwayModel):
    """A Stripe Checkout Session to add funds by card; send the user to ``checkout_url``."""

    checkout_url: str
    session_id: str
