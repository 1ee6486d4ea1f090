"""The platforms' free MCP calls per UTC calendar month (SPEC 16.1)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mcp_free_calls",
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("used >= 0", name=op.f("ck_mcp_free_calls_used_non_negative")),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name=op.f("fk_mcp_free_calls_platform_id_platforms")
        ),
        sa.PrimaryKeyConstraint("platform_id", "month", name=op.f("pk_mcp_free_calls")),
    )


def downgrade() -> None:
    op.drop_table("mcp_free_calls")
