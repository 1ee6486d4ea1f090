"""usage logs: response, turn, thread and MCP tool of each row (SPEC 12, 16); correction rows by request id (9.4)

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
    for table, kind in (("wallet_transactions", "usage_correction"), ("budget_transactions", "inference_correction")):
        op.create_index(
            f"ix_{table}_correction_request",
            table,
            ["request_id"],
            sqlite_where=sa.text(f"type = '{kind}'"),
            postgresql_where=sa.text(f"type = '{kind}'"),
        )


def downgrade() -> None:
    for table in ("wallet_transactions", "budget_transactions"):
        op.drop_index(f"ix_{table}_correction_request", table_name=table)
    with op.batch_alter_table("usage_logs") as batch:
        for column in ("mcp_free", "mcp_tool", "mcp_app", "thread_id", "iteration", "response_id"):
            batch.drop_column(column)
