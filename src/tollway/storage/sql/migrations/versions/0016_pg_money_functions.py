"""the PostgreSQL money path (issue 18): one function writes a decided money batch, wallet and budgets last

``tollway_money_apply`` writes a decided batch in the statement's own transaction: the holds it resolves are locked
and must still be active, then the new rows are inserted, and the wallets, then the budgets, are locked last and
only when what the batch decided still holds for their current values (``storage/money/postgres.py`` explains the
guards); otherwise it raises SQLSTATE TW409 and writes nothing. PostgreSQL only: SQLite has no such functions.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPLY = """
CREATE OR REPLACE FUNCTION tollway_money_apply(p jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    n_locked integer;
    a jsonb;
    offset_a bigint;
    offset_b bigint;
    offsets jsonb := '{}'::jsonb;
    now_rows jsonb := '{}'::jsonb;
    row_now jsonb;
BEGIN
    -- 0. A batch decided from the writer's cached rows (not read for it) checks what the cache assumed: the
    --    platforms' settings (the low-balance threshold) unchanged, no budget since created for an end user it
    --    has none for, and the same webhook subscriptions for the platforms it charges.
    IF p ? 'verify' THEN
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(p->'verify'->'platforms') v
                LEFT JOIN platforms pl ON pl.id = v->>0 WHERE pl.id IS NULL OR pl.xmin::text <> v->>1)
            OR EXISTS (SELECT 1 FROM budgets b WHERE b.is_active
                AND b.end_user_id IN (SELECT jsonb_array_elements_text(p->'verify'->'no_budget')))
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(p->'verify'->'digests') v
                WHERE (SELECT md5(coalesce(string_agg(e.id || '=' || e.events::text, ',' ORDER BY e.id), ''))
                    FROM webhook_endpoints e WHERE e.platform_id = v->>0 AND e.is_active AND e.deleted_at IS NULL)
                    <> v->>1) THEN
            RAISE EXCEPTION 'money batch conflict: cached rows changed' USING ERRCODE = 'TW409';
        END IF;
    END IF;
    -- 1. The holds the batch resolves or checkpoints: locked, and still active (else the batch was decided on
    --    rows that changed: a sweep or another instance's settlement).
    SELECT count(*) INTO n_locked FROM (
        SELECT id FROM holds WHERE id IN (SELECT jsonb_array_elements_text(p->'locked'))
        AND status = 'active' ORDER BY id FOR UPDATE
    ) locked;
    IF n_locked <> jsonb_array_length(p->'locked') THEN
        RAISE EXCEPTION 'money batch conflict: a hold changed' USING ERRCODE = 'TW409';
    END IF;
    UPDATE holds SET status = x.status, resolved_at = (p->>'now')::timestamptz
    FROM jsonb_to_recordset(p->'resolved') AS x(id text, status text) WHERE holds.id = x.id;
    UPDATE holds SET checkpoint = x.checkpoint
    FROM jsonb_to_recordset(p->'checkpoints') AS x(id text, checkpoint json) WHERE holds.id = x.id;
    -- 2. The rows that lock nothing anyone waits for.
    INSERT INTO holds (id, request_id, platform_id, end_user_id, wallet_id, budget_id, wallet_nanos, budget_nanos,
        terms, status, checkpoint, expires_at, created_at, resolved_at)
    SELECT id, request_id, platform_id, end_user_id, wallet_id, budget_id, wallet_nanos, budget_nanos, terms,
        status, checkpoint, expires_at, created_at, resolved_at
    FROM jsonb_populate_recordset(NULL::holds, p->'holds');
    INSERT INTO usage_logs (id, platform_id, end_user_id, request_type, provider_id, model, provider_model,
        prompt_tokens, completion_tokens, total_tokens, cached_tokens, latency_ms, ttft_ms, cost_nanos, charged_nanos,
        uncollected_nanos, status, finish_reason, error_code, token_count_method, request_id, session_id, metadata,
        response_id, iteration, thread_id, mcp_app, mcp_tool, mcp_free, created_at)
    SELECT id, platform_id, end_user_id, request_type, provider_id, model, provider_model, prompt_tokens,
        completion_tokens, total_tokens, cached_tokens, latency_ms, ttft_ms, cost_nanos, charged_nanos,
        uncollected_nanos, status, finish_reason, error_code, token_count_method, request_id, session_id, metadata,
        response_id, iteration, thread_id, mcp_app, mcp_tool, mcp_free, created_at
    FROM jsonb_populate_recordset(NULL::usage_logs, p->'logs');
    INSERT INTO webhook_events (id, platform_id, event_type, webhook_id, body, created_at)
    SELECT x.id, x.platform_id, x.event_type, x.webhook_id, decode(x.body, 'hex'), x.created_at
    FROM jsonb_to_recordset(p->'events')
        AS x(id text, platform_id text, event_type text, webhook_id text, body text, created_at timestamptz);
    INSERT INTO webhook_deliveries (id, endpoint_id, platform_id, event_id, event_type, webhook_id, status, attempts,
        next_attempt_at, created_at, updated_at)
    SELECT id, endpoint_id, platform_id, event_id, event_type, webhook_id, status, attempts, next_attempt_at,
        created_at, updated_at
    FROM jsonb_populate_recordset(NULL::webhook_deliveries, p->'deliveries');
    -- 3. The wallets, then the budgets (SPEC §8 lock order), last: each UPDATE locks its row and applies the batch
    --    only if its guard holds. Exact: the row is the one the batch read (xmin). Otherwise the batch's decisions
    --    had room to spare: the row still has at least ``need`` available and nothing a low-balance rule reads
    --    changed, so the same decisions apply to the current values and only the ledger's "after" amounts move.
    FOR a IN SELECT * FROM jsonb_array_elements(p->'wallets') ORDER BY value->>'id' LOOP
        UPDATE wallets w SET
            balance_nanos = w.balance_nanos + (a->>'d_balance')::bigint,
            held_nanos = w.held_nanos + (a->>'d_held')::bigint,
            low_balance_armed = (a->>'armed')::boolean,
            updated_at = (p->>'now')::timestamptz
        WHERE w.id = a->>'id' AND CASE WHEN (a->>'exact')::boolean THEN w.xmin::text = a->>'xmin' ELSE
            w.low_balance_armed = (a->>'armed0')::boolean
            AND w.balance_nanos - w.held_nanos >= coalesce((a->>'need')::bigint, -1)
            AND (a->>'floor' IS NULL OR w.balance_nanos + (a->>'d_balance')::bigint > (a->>'floor')::bigint) END
        RETURNING w.balance_nanos - (a->>'balance')::bigint,
            jsonb_build_array(w.balance_nanos, w.held_nanos, w.low_balance_armed, w.xmin::text)
        INTO offset_a, row_now;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'money batch conflict: wallet %', a->>'id' USING ERRCODE = 'TW409';
        END IF;
        offsets := offsets || jsonb_build_object(a->>'id', offset_a);
        now_rows := now_rows || jsonb_build_object(a->>'id', row_now);
    END LOOP;
    INSERT INTO wallet_transactions (id, wallet_id, platform_id, type, amount_nanos, balance_after_nanos,
        description, metadata, request_id, created_at)
    SELECT id, wallet_id, platform_id, type, amount_nanos,
        balance_after_nanos + coalesce((offsets->>wallet_id)::bigint, 0), description, metadata, request_id,
        created_at
    FROM jsonb_populate_recordset(NULL::wallet_transactions, p->'wallet_rows');
    offsets := '{}'::jsonb;
    FOR a IN SELECT * FROM jsonb_array_elements(p->'budgets') ORDER BY value->>'id' LOOP
        UPDATE budgets b SET
            max_nanos = CASE WHEN (a->>'exact')::boolean THEN (a->>'max')::bigint ELSE b.max_nanos END,
            used_nanos = b.used_nanos + (a->>'d_used')::bigint,
            held_nanos = b.held_nanos + (a->>'d_held')::bigint,
            period_start = (a->>'period_start')::timestamptz,
            low_balance_armed = (a->>'armed')::boolean,
            updated_at = (p->>'now')::timestamptz
        WHERE b.id = a->>'id' AND CASE WHEN (a->>'exact')::boolean THEN b.xmin::text = a->>'xmin' ELSE
            b.is_active AND NOT b.is_suspended
            AND b.low_balance_armed = (a->>'armed0')::boolean
            AND b.period_start = (a->>'period_start0')::timestamptz
            AND b.period = a->>'period'
            AND b.low_balance_threshold_nanos IS NOT DISTINCT FROM (a->>'threshold')::bigint
            AND b.max_nanos - b.used_nanos - b.held_nanos >= coalesce((a->>'need')::bigint, -1)
            AND (a->>'floor' IS NULL
                OR b.max_nanos - b.used_nanos - (a->>'d_used')::bigint > (a->>'floor')::bigint) END
        RETURNING b.used_nanos - (a->>'used')::bigint, b.max_nanos - (a->>'max')::bigint,
            jsonb_build_array(b.max_nanos, b.used_nanos, b.held_nanos, b.low_balance_armed, b.xmin::text,
                b.period_start)
        INTO offset_a, offset_b, row_now;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'money batch conflict: budget %', a->>'id' USING ERRCODE = 'TW409';
        END IF;
        offsets := offsets || jsonb_build_object(a->>'id', jsonb_build_array(offset_a, offset_b));
        now_rows := now_rows || jsonb_build_object(a->>'id', row_now);
    END LOOP;
    INSERT INTO budget_transactions (id, budget_id, platform_id, end_user_id, type, amount_nanos, max_after_nanos,
        used_after_nanos, remaining_after_nanos, reason, metadata, request_id, created_at)
    SELECT x.id, x.budget_id, x.platform_id, x.end_user_id, x.type, x.amount_nanos,
        x.max_after_nanos + coalesce((offsets->x.budget_id->>1)::bigint, 0),
        x.used_after_nanos + coalesce((offsets->x.budget_id->>0)::bigint, 0),
        x.remaining_after_nanos + coalesce((offsets->x.budget_id->>1)::bigint, 0)
            - coalesce((offsets->x.budget_id->>0)::bigint, 0),
        x.reason, x.metadata, x.request_id, x.created_at
    FROM jsonb_populate_recordset(NULL::budget_transactions, p->'budget_rows') x;
    -- The wallets and budgets as this transaction leaves them, for the writer's cache.
    RETURN now_rows;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(APPLY)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS tollway_money_apply(jsonb)")
