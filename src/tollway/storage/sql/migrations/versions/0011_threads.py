"""agent threads (SPEC 16.4): the threads table and the link of stored responses to their thread

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("end_user_id", sa.String(length=36), nullable=True),
        sa.Column("owner_key", sa.String(length=36), nullable=False),
        sa.Column("thread_id", sa.String(length=64), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("busy_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("busy_request_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["end_user_id"], ["end_users.id"], name=op.f("fk_threads_end_user_id_end_users")),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"], name=op.f("fk_threads_platform_id_platforms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threads")),
        sa.UniqueConstraint("platform_id", "owner_key", "thread_id", name="uq_threads_owner_thread_id"),
    )
    op.create_index("ix_threads_platform_created", "threads", ["platform_id", "created_at"], unique=False)
    with op.batch_alter_table("stored_responses") as batch:
        batch.add_column(sa.Column("thread_key", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("thread_seq", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_stored_responses_thread_key_threads"), "threads", ["thread_key"], ["id"])
        batch.create_index("ix_stored_responses_thread", ["thread_key", "thread_seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stored_responses") as batch:
        batch.drop_index("ix_stored_responses_thread")
        batch.drop_constraint(op.f("fk_stored_responses_thread_key_threads"), type_="foreignkey")
        batch.drop_column("thread_seq")
        batch.drop_column("thread_key")
    op.drop_index("ix_threads_platform_created", table_name="threads")
    op.drop_table("threads")
