"""console sessions keep a secret to show once (SPEC 17.1): sealed, with the random id its page is opened by

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("console_sessions", sa.Column("shown_once_id", sa.String(length=32), nullable=True))
    op.add_column("console_sessions", sa.Column("shown_once", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_column("shown_once")
        batch.drop_column("shown_once_id")
