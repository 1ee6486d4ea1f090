"""model rows: cache-write price per Mtok and price per request (SPEC 19)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("cache_write_price_nanos", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("price_per_request_nanos", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("price_per_request_nanos")
        batch.drop_column("cache_write_price_nanos")
