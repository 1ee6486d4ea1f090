"""the PostgreSQL money function locks a batch's holds FOR NO KEY UPDATE, as the rest of the money path does

``tollway_money_apply`` (migrations 0016, 0017, 0019) locked the holds it resolves or checkpoints with
``FOR UPDATE``, the lock for a row about to be deleted or to have a key changed: it also blocks the ``FOR KEY SHARE``
lock that inserting a row whose foreign key references the hold takes. The function then only updates the holds'
``status``, ``resolved_at`` and ``checkpoint``, none of them in a unique index, so the lock its ``UPDATE`` takes
anyway is ``FOR NO KEY UPDATE``, which is what the wallets and budgets (0017) and the locked path
(``storage/money/batch.py``) take. It conflicts with itself, with ``FOR UPDATE`` and with every ``UPDATE`` and
``DELETE``, so two writers still serialise on a hold exactly as before; no table references ``holds`` today, so
nothing else changes either.

The function is 0019's, byte for byte, but for that one lock clause.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 13:00:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The function as migration 0019 created it, restored by the downgrade (Alembic loads these files by path, so the
# module is named in full).
APPLY_0019: str = importlib.import_module("tollway.storage.sql.migrations.versions.0019_pg_money_wallet_last").APPLY

_HOLDS = "SELECT status FROM holds WHERE id = ANY(hold_ids) ORDER BY id FOR UPDATE\n"
assert APPLY_0019.count(_HOLDS) == 1
APPLY = APPLY_0019.replace(_HOLDS, _HOLDS.replace("FOR UPDATE", "FOR NO KEY UPDATE"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(APPLY)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(APPLY_0019)
