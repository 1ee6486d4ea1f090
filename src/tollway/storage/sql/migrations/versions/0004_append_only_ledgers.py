"""ledger rows are append-only (SPEC §9.6 invariant 4), enforced by the database

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGERS = ("wallet_transactions", "budget_transactions")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in _LEDGERS:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'ledger rows are append-only'); END"
                )
        return
    op.execute(
        "CREATE FUNCTION tollway_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'ledger rows are append-only'; END $$"
    )
    for table in _LEDGERS:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION tollway_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in _LEDGERS:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_no_{action}")
        return
    for table in _LEDGERS:
        op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    op.execute("DROP FUNCTION tollway_append_only()")
