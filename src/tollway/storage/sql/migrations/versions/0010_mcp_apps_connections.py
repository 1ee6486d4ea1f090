"""MCP apps, end users' OAuth connections and pending OAuth states (SPEC 16.1, 16.2)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "mcp_apps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("server_url", sa.String(length=2048), nullable=False),
        sa.Column("auth_type", sa.String(length=16), nullable=False),
        sa.Column("auth_config", sa.JSON(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("price_per_call_nanos", sa.BigInteger(), nullable=False),
        sa.Column("allowed_tools", sa.JSON(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint("price_per_call_nanos >= 0", name=op.f("ck_mcp_apps_price_non_negative")),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"], name=op.f("fk_mcp_apps_platform_id_platforms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_apps")),
        sa.UniqueConstraint("platform_id", "slug", name="uq_mcp_apps_platform_slug"),
    )
    op.create_table(
        "mcp_connections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("end_user_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("access_token_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_token_sealed", sa.LargeBinary(), nullable=True),
        _ts("access_expires_at", nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("refresh_lease_until", nullable=True),
        _ts("connected_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name=op.f("fk_mcp_connections_platform_id_platforms")
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["mcp_apps.id"], name=op.f("fk_mcp_connections_app_id_mcp_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["end_user_id"], ["end_users.id"], name=op.f("fk_mcp_connections_end_user_id_end_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_connections")),
        sa.UniqueConstraint("app_id", "end_user_id", name="uq_mcp_connections_app_end_user"),
    )
    op.create_index(
        "ix_mcp_connections_platform_end_user", "mcp_connections", ["platform_id", "end_user_id"], unique=False
    )
    op.create_table(
        "mcp_oauth_states",
        sa.Column("state_digest", sa.String(length=64), nullable=False),
        sa.Column("platform_id", sa.String(length=36), nullable=False),
        sa.Column("app_id", sa.String(length=36), nullable=False),
        sa.Column("end_user_id", sa.String(length=36), nullable=False),
        sa.Column("verifier_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=True),
        _ts("expires_at"),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["platforms.id"], name=op.f("fk_mcp_oauth_states_platform_id_platforms")
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["mcp_apps.id"], name=op.f("fk_mcp_oauth_states_app_id_mcp_apps"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["end_user_id"], ["end_users.id"], name=op.f("fk_mcp_oauth_states_end_user_id_end_users")
        ),
        sa.PrimaryKeyConstraint("state_digest", name=op.f("pk_mcp_oauth_states")),
    )


def downgrade() -> None:
    op.drop_table("mcp_oauth_states")
    op.drop_index("ix_mcp_connections_platform_end_user", table_name="mcp_connections")
    op.drop_table("mcp_connections")
    op.drop_table("mcp_apps")
