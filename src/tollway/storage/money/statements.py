"""The static driver SQL a batch writes with (see ``driver_sql``): one UPDATE per touched wallet, budget and hold,
bulk INSERTs for new holds, ledger rows and usage logs; and the one read of end users' external ids for events."""

from __future__ import annotations

INSERT_HOLD = (
    "INSERT INTO holds (id, request_id, platform_id, end_user_id, wallet_id, budget_id, wallet_nanos, budget_nanos,"
    " terms, status, checkpoint, expires_at, created_at, resolved_at) VALUES (:id, :request_id, :platform_id,"
    " :end_user_id, :wallet_id, :budget_id, :wallet_nanos, :budget_nanos, :terms, :status, :checkpoint, :expires_at,"
    " :created_at, :resolved_at)"
)
INSERT_WALLET_TX = (
    "INSERT INTO wallet_transactions (id, wallet_id, platform_id, type, amount_nanos, balance_after_nanos,"
    " description, metadata, request_id, created_at) VALUES (:id, :wallet_id, :platform_id, :type, :amount_nanos,"
    " :balance_after_nanos, :description, :metadata, :request_id, :created_at)"
)
INSERT_BUDGET_TX = (
    "INSERT INTO budget_transactions (id, budget_id, platform_id, end_user_id, type, amount_nanos, max_after_nanos,"
    " used_after_nanos, remaining_after_nanos, reason, metadata, request_id, created_at) VALUES (:id, :budget_id,"
    " :platform_id, :end_user_id, :type, :amount_nanos, :max_after_nanos, :used_after_nanos, :remaining_after_nanos,"
    " :reason, :metadata, :request_id, :created_at)"
)
INSERT_LOG = (
    "INSERT INTO usage_logs (id, platform_id, end_user_id, request_type, provider_id, model, provider_model,"
    " prompt_tokens, completion_tokens, total_tokens, cached_tokens, latency_ms, ttft_ms, cost_nanos, charged_nanos,"
    " uncollected_nanos, status, finish_reason, error_code, token_count_method, request_id, session_id, metadata,"
    " response_id, iteration, thread_id, mcp_app, mcp_tool, mcp_free,"
    " created_at) VALUES (:id, :platform_id, :end_user_id, :request_type, :provider_id, :model, :provider_model,"
    " :prompt_tokens, :completion_tokens, :total_tokens, :cached_tokens, :latency_ms, :ttft_ms, :cost_nanos,"
    " :charged_nanos, :uncollected_nanos, :status, :finish_reason, :error_code, :token_count_method, :request_id,"
    " :session_id, :metadata, :response_id, :iteration, :thread_id, :mcp_app, :mcp_tool, :mcp_free, :created_at)"
)
UPDATE_WALLET = (
    "UPDATE wallets SET balance_nanos = :balance, held_nanos = :held, low_balance_armed = :armed, updated_at = :now"
    " WHERE id = :id"
)
UPDATE_BUDGET = (
    "UPDATE budgets SET max_nanos = :max, used_nanos = :used, held_nanos = :held, period_start = :period_start,"
    " low_balance_armed = :armed, updated_at = :now WHERE id = :id"
)
RESOLVE_HOLD = "UPDATE holds SET status = :status, resolved_at = :now WHERE id = :id"
CHECKPOINT_HOLD = "UPDATE holds SET checkpoint = :checkpoint WHERE id = :id"
SELECT_EXTERNAL_IDS = "SELECT id, external_id FROM end_users WHERE id IN (:ids)"
