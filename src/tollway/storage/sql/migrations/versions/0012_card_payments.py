"""card payments: one row per Stripe Checkout Session that credited a wallet (SPEC 17.2)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "card_payments",
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_nanos > 0", name=op.f("ck_card_payments_amount_positive")),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_card_payments")),
    )


def downgrade() -> None:
    op.drop_table("card_payments")
