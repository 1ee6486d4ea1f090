"""usage logs: response, turn, thread and MCP tool of each row (SPEC 12, 16)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("usage_logs") as batch:
        batch.add_column(sa.Column("response_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("iteration", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("thread_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("mcp_app", sa.String(length=63), nullable=True))
        batch.add_column(sa.Column("mcp_tool", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("mcp_free", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_logs") as batch:
        for column in ("mcp_free", "mcp_tool", "mcp_app", "thread_id", "iteration", "response_id"):
            batch.drop_column(column)
