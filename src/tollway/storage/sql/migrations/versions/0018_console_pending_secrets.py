"""console secrets waiting to be shown once get their own rows (SPEC 17.1): several per session, each under the
random id of its page, with a deadline after which it is deleted unseen; the single slot on the session goes

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_pending_secrets",
        sa.Column("id_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("display_id", sa.String(length=32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", "display_id"),
    )
    op.create_index("ix_console_pending_secrets_expires_at", "console_pending_secrets", ["expires_at"])
    # A secret waiting in the old slot is not carried over: it was to be shown within minutes of its form.
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_column("shown_once")
        batch.drop_column("shown_once_id")


def downgrade() -> None:
    op.add_column("console_sessions", sa.Column("shown_once_id", sa.String(length=32), nullable=True))
    op.add_column("console_sessions", sa.Column("shown_once", sa.LargeBinary(), nullable=True))
    op.drop_index("ix_console_pending_secrets_expires_at", table_name="console_pending_secrets")
    op.drop_table("console_pending_secrets")
