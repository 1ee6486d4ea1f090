"""The schema as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL, migrated by Alembic.

Money columns are BIGINT nano-dollars; CHECK constraints are the last line of defence for SPEC §9.6.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_ID = sa.String(36)


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


system_meta = sa.Table(
    "system_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

providers = sa.Table(
    "providers",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("base_url", sa.String(2048), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("slug", sa.String(128), nullable=False, index=True),
    sa.Column("provider_id", _ID, sa.ForeignKey("providers.id"), nullable=False, index=True),
    sa.Column("upstream_model", sa.String(256), nullable=False),
    sa.Column("input_price_nanos", sa.BigInteger, nullable=False),
    sa.Column("output_price_nanos", sa.BigInteger, nullable=False),
    sa.Column("cached_input_price_nanos", sa.BigInteger, nullable=True),
    sa.Column("price_per_image_nanos", sa.BigInteger, nullable=True),
    sa.Column("cache_write_price_nanos", sa.BigInteger, nullable=True),
    sa.Column("price_per_request_nanos", sa.BigInteger, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("min_output_tokens", sa.Integer, nullable=True),
    sa.Column("max_output_tokens", sa.Integer, nullable=False),
    sa.Column("context_window", sa.Integer, nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    sa.UniqueConstraint("slug", "provider_id", name="uq_models_slug_provider"),
    sa.CheckConstraint("input_price_nanos >= 0 AND output_price_nanos >= 0", name="prices_non_negative"),
)

platforms = sa.Table(
    "platforms",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("settings", sa.JSON, nullable=False),
    _ts("deleted_at", nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
)

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False, unique=True),
    sa.Column("balance_nanos", sa.BigInteger, nullable=False),
    sa.Column("held_nanos", sa.BigInteger, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    # wallet.low_balance is edge-triggered (SPEC §9.8); added by migration 0006.
    sa.Column("low_balance_armed", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.CheckConstraint("balance_nanos >= 0", name="balance_non_negative"),
    sa.CheckConstraint("held_nanos >= 0 AND held_nanos <= balance_nanos", name="held_within_balance"),
)

wallet_transactions = sa.Table(
    "wallet_transactions",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("wallet_id", _ID, sa.ForeignKey("wallets.id"), nullable=False),
    sa.Column("platform_id", _ID, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("amount_nanos", sa.BigInteger, nullable=False),
    sa.Column("balance_after_nanos", sa.BigInteger, nullable=False),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("request_id", sa.String(40), nullable=True),
    _ts("created_at"),
    sa.CheckConstraint("balance_after_nanos >= 0", name="balance_after_non_negative"),
    sa.Index("ix_wallet_transactions_wallet_created", "wallet_id", "created_at"),
    # SPEC §9.6 invariant 3: at most one wallet usage row per request id.
    sa.Index(
        "uq_wallet_transactions_usage_request",
        "request_id",
        unique=True,
        sqlite_where=sa.text("type = 'usage'"),
        postgresql_where=sa.text("type = 'usage'"),
    ),
    # Late charges (§9.4) look corrections up by request id; they are rare, so this index costs settlements nothing.
    sa.Index(
        "ix_wallet_transactions_correction_request",
        "request_id",
        sqlite_where=sa.text("type = 'usage_correction'"),
        postgresql_where=sa.text("type = 'usage_correction'"),
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False, index=True),
    sa.Column("end_user_id", _ID, nullable=True, index=True),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("key_prefix", sa.String(12), nullable=False),
    sa.Column("key_hash", sa.LargeBinary(32), nullable=False, unique=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    _ts("expires_at", nullable=True),
    _ts("last_used_at", nullable=True),
    _ts("revoked_at", nullable=True),
    _ts("created_at"),
)

llm_configs = sa.Table(
    "llm_configs",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False, index=True),
    sa.Column("provider_id", _ID, sa.ForeignKey("providers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("api_key_ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
)

usage_logs = sa.Table(
    "usage_logs",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, nullable=False),
    sa.Column("end_user_id", _ID, nullable=True),
    sa.Column("request_type", sa.String(32), nullable=False),
    sa.Column("provider_id", _ID, nullable=True),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("provider_model", sa.String(256), nullable=True),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("total_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("ttft_ms", sa.Integer, nullable=True),
    sa.Column("cost_nanos", sa.BigInteger, nullable=False),
    sa.Column("charged_nanos", sa.BigInteger, nullable=True),
    sa.Column("uncollected_nanos", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("finish_reason", sa.String(32), nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("token_count_method", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(40), nullable=False),
    sa.Column("session_id", sa.String(128), nullable=True),
    sa.Column("response_id", sa.String(64), nullable=True),
    sa.Column("iteration", sa.Integer, nullable=True),
    sa.Column("thread_id", sa.String(64), nullable=True),
    sa.Column("mcp_app", sa.String(63), nullable=True),
    sa.Column("mcp_tool", sa.String(128), nullable=True),
    sa.Column("mcp_free", sa.Boolean, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    _ts("created_at"),
    sa.Index("ix_usage_logs_platform_created", "platform_id", "created_at"),
    sa.Index("ix_usage_logs_request_id", "request_id"),
    sa.CheckConstraint("cost_nanos >= 0 AND uncollected_nanos >= 0", name="cost_non_negative"),
)

end_users = sa.Table(
    "end_users",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    _ts("deleted_at", nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    sa.Index("ix_end_users_platform_created", "platform_id", "created_at"),
    # One live end user per (platform, external_id); a deleted one frees the external_id (SPEC §5.4).
    sa.Index(
        "uq_end_users_platform_external_live",
        "platform_id",
        "external_id",
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
)

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("end_user_id", _ID, sa.ForeignKey("end_users.id"), nullable=False, unique=True),
    sa.Column("max_nanos", sa.BigInteger, nullable=False),
    sa.Column("used_nanos", sa.BigInteger, nullable=False),
    sa.Column("held_nanos", sa.BigInteger, nullable=False),
    sa.Column("period", sa.String(16), nullable=False),
    _ts("period_start"),
    sa.Column("auto_replenish", sa.Boolean, nullable=False),
    sa.Column("replenish_nanos", sa.BigInteger, nullable=True),
    sa.Column("low_balance_threshold_nanos", sa.BigInteger, nullable=True),
    sa.Column("low_balance_armed", sa.Boolean, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("is_suspended", sa.Boolean, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    sa.CheckConstraint("used_nanos >= 0 AND held_nanos >= 0 AND max_nanos >= 0", name="amounts_non_negative"),
    # SPEC §9.6 invariant 2: available = max − used − held ≥ 0.
    sa.CheckConstraint("max_nanos - used_nanos - held_nanos >= 0", name="available_non_negative"),
)

budget_transactions = sa.Table(
    "budget_transactions",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("budget_id", _ID, sa.ForeignKey("budgets.id"), nullable=False),
    sa.Column("platform_id", _ID, nullable=False),
    sa.Column("end_user_id", _ID, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("amount_nanos", sa.BigInteger, nullable=False),
    sa.Column("max_after_nanos", sa.BigInteger, nullable=False),
    sa.Column("used_after_nanos", sa.BigInteger, nullable=False),
    sa.Column("remaining_after_nanos", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(500), nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("request_id", sa.String(40), nullable=True),
    _ts("created_at"),
    sa.Index("ix_budget_transactions_budget_created", "budget_id", "created_at"),
    # SPEC §9.6 invariant 3: at most one budget inference row per request id.
    sa.Index(
        "uq_budget_transactions_inference_request",
        "request_id",
        unique=True,
        sqlite_where=sa.text("type = 'inference'"),
        postgresql_where=sa.text("type = 'inference'"),
    ),
    sa.Index(
        "ix_budget_transactions_correction_request",
        "request_id",
        sqlite_where=sa.text("type = 'inference_correction'"),
        postgresql_where=sa.text("type = 'inference_correction'"),
    ),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("request_id", sa.String(40), nullable=False, unique=True),
    sa.Column("platform_id", _ID, nullable=False),
    sa.Column("end_user_id", _ID, nullable=True),
    sa.Column("wallet_id", _ID, sa.ForeignKey("wallets.id"), nullable=False),
    sa.Column("budget_id", _ID, sa.ForeignKey("budgets.id"), nullable=True),
    sa.Column("wallet_nanos", sa.BigInteger, nullable=False),
    sa.Column("budget_nanos", sa.BigInteger, nullable=False),
    sa.Column("terms", sa.JSON, nullable=False),  # captured prices, markup, model and prompt bound
    sa.Column("status", sa.String(16), nullable=False),  # active, captured, released, expired
    sa.Column("checkpoint", sa.JSON, nullable=True),  # delivered bytes and usage while streaming
    _ts("expires_at"),
    _ts("created_at"),
    _ts("resolved_at", nullable=True),
    sa.CheckConstraint("wallet_nanos >= 0 AND budget_nanos >= 0", name="amounts_non_negative"),
    sa.Index("ix_holds_status_expires", "status", "expires_at"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("scope", sa.String(64), nullable=False),  # platform id, or "operator"
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # in_progress, done
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_body", sa.LargeBinary, nullable=True),
    _ts("created_at"),
    _ts("expires_at"),
    sa.UniqueConstraint("scope", "method", "path", "key", name="uq_idempotency_keys_scope_method_path_key"),
    sa.Index("ix_idempotency_keys_expires", "expires_at"),
)

# Per-end-user rate-limit overrides (SPEC §5.6); a null limit inherits the platform default for that dimension.
rate_limit_overrides = sa.Table(
    "rate_limit_overrides",
    metadata,
    sa.Column("end_user_id", _ID, sa.ForeignKey("end_users.id"), primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("rpm_limit", sa.BigInteger, nullable=True),
    sa.Column("tpm_limit", sa.BigInteger, nullable=True),
    sa.Column("rpd_limit", sa.BigInteger, nullable=True),
    _ts("updated_at"),
    sa.CheckConstraint(
        "(rpm_limit IS NULL OR rpm_limit > 0) AND (tpm_limit IS NULL OR tpm_limit > 0) "
        "AND (rpd_limit IS NULL OR rpd_limit > 0)",
        name="limits_positive",
    ),
)

# -- stored responses (SPEC §7.6; migration 0005) --------------------------------------------------------------

# A Responses API result kept for previous_response_id and GET (SPEC §7.6): the expanded input items and the result
# object (output and metadata included) as orjson bytes, owned by a platform and, for end-user keys, an end user.
stored_responses = sa.Table(
    "stored_responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # resp_<32 hex>
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("end_user_id", _ID, sa.ForeignKey("end_users.id"), nullable=True),
    sa.Column("input_items", sa.LargeBinary, nullable=False),
    sa.Column("response_body", sa.LargeBinary, nullable=False),
    _ts("created_at"),
    _ts("expires_at"),
    # A turn of an agent thread (SPEC §16.4; migration 0011): its thread and its place in it. Its input_items are
    # then the input of its own request only.
    sa.Column("thread_key", _ID, sa.ForeignKey("threads.id"), nullable=True),
    sa.Column("thread_seq", sa.Integer, nullable=True),
    sa.Index("ix_stored_responses_expires", "expires_at"),
    sa.Index("ix_stored_responses_thread", "thread_key", "thread_seq"),
)

# -- agent threads (SPEC §16.4; migration 0011) ---------------------------------------------------------------

# One row per owner and caller-chosen id. ``owner_key`` is the end user's id, or '' for a platform key, so that the
# unique constraint holds for platform keys too (NULLs are distinct in a unique index). ``turns`` numbers the
# appended responses; ``busy_until``/``busy_request_id`` are the lease of the request running on the thread.
threads = sa.Table(
    "threads",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("end_user_id", _ID, sa.ForeignKey("end_users.id"), nullable=True),
    sa.Column("owner_key", sa.String(36), nullable=False),
    sa.Column("thread_id", sa.String(64), nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("turns", sa.Integer, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("busy_until", nullable=True),
    sa.Column("busy_request_id", sa.String(64), nullable=True),
    sa.UniqueConstraint("platform_id", "owner_key", "thread_id", name="uq_threads_owner_thread_id"),
    sa.Index("ix_threads_platform_created", "platform_id", "created_at"),
)

# -- webhooks: endpoints, outbox events, deliveries (SPEC §11; migration 0006) -----------------------------------

# A platform's receiver. Secrets are sealed (AES-GCM bound to the platform and endpoint); during a rotation the
# previous one stays in force until ``previous_secret_expires_at``. Deleted endpoints keep their rows (deliveries).
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False, index=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.String(16), nullable=True),
    sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
    sa.Column("previous_secret_sealed", sa.LargeBinary, nullable=True),
    _ts("previous_secret_expires_at", nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    _ts("deleted_at", nullable=True),
)

# The outbox: one row per event (the exact envelope bytes), committed with the ledger row that caused it.
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(80), primary_key=True),  # <transaction_id>:<event_type>
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("webhook_id", sa.String(36), nullable=False),  # msg_<32 hex>
    sa.Column("body", sa.LargeBinary, nullable=False),
    _ts("created_at"),
)

# One row per (event, endpoint), plus one per replay; ``attempts`` is the attempt log (SPEC §11.4). A pending row
# is due at ``next_attempt_at``; a worker claims it by moving that time forward under a row lock.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("endpoint_id", _ID, sa.ForeignKey("webhook_endpoints.id"), nullable=False),
    sa.Column("platform_id", _ID, nullable=False),
    sa.Column("event_id", sa.String(80), sa.ForeignKey("webhook_events.id"), nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("webhook_id", sa.String(36), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.JSON, nullable=False),
    _ts("next_attempt_at", nullable=True),
    _ts("created_at"),
    _ts("updated_at"),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
)

# -- instance heartbeats (SPEC §13.2; migration 0007) ---------------------------------------------------------

# One row per serving process; beaten every 5 s and deleted on a clean exit, so that an instance without Redis can
# refuse to start next to another one (rate limits would silently multiply).
instance_heartbeats = sa.Table(
    "instance_heartbeats",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("uses_redis", sa.Boolean, nullable=False),
    _ts("started_at"),
    _ts("heartbeat_at"),
)

# -- MCP apps and end users' OAuth connections (SPEC §16.1, §16.2; migration 0010) ----------------------------

# ``auth_config`` holds the non-secret part of ``auth`` (header name; OAuth endpoints, client id, scopes); the header
# value or client secret is sealed in ``secret_sealed`` (bound to platform and app).
mcp_apps = sa.Table(
    "mcp_apps",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("slug", sa.String(63), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("server_url", sa.String(2048), nullable=False),
    sa.Column("auth_type", sa.String(16), nullable=False),
    sa.Column("auth_config", sa.JSON, nullable=False),
    sa.Column("secret_sealed", sa.LargeBinary, nullable=True),
    sa.Column("price_per_call_nanos", sa.BigInteger, nullable=False),
    sa.Column("allowed_tools", sa.JSON, nullable=True),
    sa.Column("is_active", sa.Boolean, nullable=False),
    _ts("created_at"),
    _ts("updated_at"),
    sa.UniqueConstraint("platform_id", "slug", name="uq_mcp_apps_platform_slug"),
    sa.CheckConstraint("price_per_call_nanos >= 0", name="price_non_negative"),
)

# One row per (app, end user). ``version`` changes with every token change; a refresher holds ``refresh_lease_until``
# (a conditional UPDATE claims it), so that one refresh runs per token across instances (SPEC §16.2).
mcp_connections = sa.Table(
    "mcp_connections",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("app_id", _ID, sa.ForeignKey("mcp_apps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("end_user_id", _ID, sa.ForeignKey("end_users.id"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("access_token_sealed", sa.LargeBinary, nullable=False),
    sa.Column("refresh_token_sealed", sa.LargeBinary, nullable=True),
    _ts("access_expires_at", nullable=True),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    _ts("refresh_lease_until", nullable=True),
    _ts("connected_at"),
    _ts("updated_at"),
    sa.UniqueConstraint("app_id", "end_user_id", name="uq_mcp_connections_app_end_user"),
    sa.Index("ix_mcp_connections_platform_end_user", "platform_id", "end_user_id"),
)

# Pending authorizations: the state's digest (never the state), the sealed PKCE verifier, valid 10 minutes.
mcp_oauth_states = sa.Table(
    "mcp_oauth_states",
    metadata,
    sa.Column("state_digest", sa.String(64), primary_key=True),
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), nullable=False),
    sa.Column("app_id", _ID, sa.ForeignKey("mcp_apps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("end_user_id", _ID, sa.ForeignKey("end_users.id"), nullable=False),
    sa.Column("verifier_sealed", sa.LargeBinary, nullable=False),
    sa.Column("redirect_uri", sa.String(2048), nullable=True),
    _ts("expires_at"),
    _ts("created_at"),
)

# -- card top-ups (SPEC §17.2; migration 0012) ----------------------------------------------------------------

# One row per Stripe Checkout Session that credited a wallet, inserted in the transaction of the credit: the
# primary key makes a redelivered event, or the same event at two instances at once, credit the wallet once.
card_payments = sa.Table(
    "card_payments",
    metadata,
    sa.Column("session_id", sa.String(255), primary_key=True),
    sa.Column("platform_id", _ID, nullable=False),
    sa.Column("amount_nanos", sa.BigInteger, nullable=False),
    _ts("created_at"),
    sa.CheckConstraint("amount_nanos > 0", name="amount_positive"),
)

# The platform's free MCP calls of one UTC calendar month (SPEC §16.1; migration 0013): a conditional UPDATE takes a
# slot only while ``used`` is below the month's limit, so the count is exact across instances.
mcp_free_calls = sa.Table(
    "mcp_free_calls",
    metadata,
    sa.Column("platform_id", _ID, sa.ForeignKey("platforms.id"), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),  # "YYYY-MM" in UTC
    sa.Column("used", sa.BigInteger, nullable=False),
    sa.CheckConstraint("used >= 0", name="used_non_negative"),
)

# Console sign-ins (SPEC §17.1): a digest of the session id (the cookie holds the id itself), the key's id (never the
# key; NULL for the operator, whose sessions keep a digest of the operator key's digest to notice a rotation).
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key_id", _ID, nullable=True),
    sa.Column("operator_check", sa.LargeBinary(32), nullable=True),
    sa.Column("platform_id", _ID, nullable=True),
    sa.Column("end_user_id", _ID, nullable=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    _ts("created_at"),
    _ts("last_seen_at"),
    sa.Index("ix_console_sessions_last_seen_at", "last_seen_at"),
)

# New keys and secrets that console forms show once, sealed for their session, each under the random id of the page
# that shows it, until it is shown or expires (several per session: one per form sent).
console_pending_secrets = sa.Table(
    "console_pending_secrets",
    metadata,
    sa.Column("id_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("display_id", sa.String(32), primary_key=True),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    _ts("expires_at"),
    sa.Index("ix_console_pending_secrets_expires_at", "expires_at"),
)
