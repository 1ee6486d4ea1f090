"""the PostgreSQL money function locks the wallets last, after the budgets (issue 18)

Every call of every instance writes its platform's wallet row; a platform with thousands of end users has one
wallet and thousands of budgets. So the row everyone queues on is now locked last and for the shortest time: in
``tollway_money_apply`` (migrations 0016, 0017) the budgets are locked, updated and given their ledger rows first,
and the wallets after them. The wallets' ledger rows go in before the wallets are locked, their "after" amounts
computed from the wallets as read a moment before without a lock, so a wallet row is held only from its ``UPDATE``
to the commit. When another writer committed to a wallet in between (the ``UPDATE`` moved the amounts by other
offsets than the rows assumed), that part is undone in a subtransaction and done again with the wallets locked
first (SQLSTATE TW410, caught inside the function); the ledger rows are append-only (migration 0004), so they are
never corrected in place. (Before, the wallets came first, so every budget of the batch, up to one per call, was
locked, updated and written while the wallet row was held, and its ledger rows after it.)

The locked path (``storage/money/batch.py``, the fallback that reads rows ``FOR NO KEY UPDATE`` before deciding)
takes the same order: holds, budgets, wallets. Every transaction that locks both a budget and a wallet is one of
these two, so one order everywhere keeps them free of deadlocks; management operations lock a budget or a wallet,
never both. SPEC §8 and §9.3–9.4 name the opposite order (wallet, then budget); the decisions do not depend on it
(a refusal by the budget still wins over the wallet's, §8), only how long the hot row stays locked does.

Otherwise the function is 0017's, statement for statement; its payload and result are unchanged.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 13:00:00
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The function as migration 0017 created it, restored by the downgrade (Alembic loads these files by path, so the
# module is named in full).
APPLY_0017: str = importlib.import_module("tollway.storage.sql.migrations.versions.0017_pg_money_set_based").APPLY

APPLY = """
CREATE OR REPLACE FUNCTION tollway_money_apply(p jsonb) RETURNS jsonb LANGUAGE plpgsql
SET enable_seqscan = off SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
    n_locked integer;
    n_updated integer;
    hold_ids text[];
    wallet_ids text[];
    budget_ids text[];
    offsets jsonb := '{}'::jsonb;
    shift jsonb := '{}'::jsonb;
    locked boolean := false;
    wallets_now jsonb := '{}'::jsonb;
    budgets_now jsonb := '{}'::jsonb;
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
    -- Every statement on an existing table names its rows by ``id = ANY(…_ids)``, read through the primary key
    -- (the function runs without sequential scans: see the migration's docstring). A statement with no rows to
    -- write is not run.
    SELECT ARRAY(SELECT jsonb_array_elements_text(p->'locked')),
        ARRAY(SELECT x->>'id' FROM jsonb_array_elements(p->'wallets') x),
        ARRAY(SELECT x->>'id' FROM jsonb_array_elements(p->'budgets') x)
    INTO hold_ids, wallet_ids, budget_ids;
    -- 1. The holds the batch resolves or checkpoints: locked, and still active as the lock left them (else the
    --    batch was decided on rows that changed: a sweep or another instance's settlement).
    IF cardinality(hold_ids) > 0 THEN
        SELECT count(*) FILTER (WHERE status = 'active') INTO n_locked FROM (
            SELECT status FROM holds WHERE id = ANY(hold_ids) ORDER BY id FOR UPDATE
        ) locked;
        IF n_locked <> cardinality(hold_ids) THEN
            RAISE EXCEPTION 'money batch conflict: a hold changed' USING ERRCODE = 'TW409';
        END IF;
        IF jsonb_array_length(p->'resolved') > 0 THEN
            UPDATE holds SET status = x.status, resolved_at = (p->>'now')::timestamptz
            FROM jsonb_to_recordset(p->'resolved') AS x(id text, status text)
            WHERE holds.id = ANY(hold_ids) AND holds.id = x.id;
        END IF;
        IF jsonb_array_length(p->'checkpoints') > 0 THEN
            UPDATE holds SET checkpoint = x.checkpoint
            FROM jsonb_to_recordset(p->'checkpoints') AS x(id text, checkpoint json)
            WHERE holds.id = ANY(hold_ids) AND holds.id = x.id;
        END IF;
    END IF;
    -- 2. The rows that lock nothing anyone waits for.
    IF jsonb_array_length(p->'holds') > 0 THEN
        INSERT INTO holds (id, request_id, platform_id, end_user_id, wallet_id, budget_id, wallet_nanos,
            budget_nanos, terms, status, checkpoint, expires_at, created_at, resolved_at)
        SELECT id, request_id, platform_id, end_user_id, wallet_id, budget_id, wallet_nanos, budget_nanos, terms,
            status, checkpoint, expires_at, created_at, resolved_at
        FROM jsonb_populate_recordset(NULL::holds, p->'holds');
    END IF;
    IF jsonb_array_length(p->'logs') > 0 THEN
        INSERT INTO usage_logs (id, platform_id, end_user_id, request_type, provider_id, model, provider_model,
            prompt_tokens, completion_tokens, total_tokens, cached_tokens, latency_ms, ttft_ms, cost_nanos,
            charged_nanos, uncollected_nanos, status, finish_reason, error_code, token_count_method, request_id,
            session_id, metadata, response_id, iteration, thread_id, mcp_app, mcp_tool, mcp_free, created_at)
        SELECT id, platform_id, end_user_id, request_type, provider_id, model, provider_model, prompt_tokens,
            completion_tokens, total_tokens, cached_tokens, latency_ms, ttft_ms, cost_nanos, charged_nanos,
            uncollected_nanos, status, finish_reason, error_code, token_count_method, request_id, session_id, metadata,
            response_id, iteration, thread_id, mcp_app, mcp_tool, mcp_free, created_at
        FROM jsonb_populate_recordset(NULL::usage_logs, p->'logs');
    END IF;
    IF jsonb_array_length(p->'events') > 0 THEN
        INSERT INTO webhook_events (id, platform_id, event_type, webhook_id, body, created_at)
        SELECT x.id, x.platform_id, x.event_type, x.webhook_id, decode(x.body, 'hex'), x.created_at
        FROM jsonb_to_recordset(p->'events')
            AS x(id text, platform_id text, event_type text, webhook_id text, body text, created_at timestamptz);
    END IF;
    IF jsonb_array_length(p->'deliveries') > 0 THEN
        INSERT INTO webhook_deliveries (id, endpoint_id, platform_id, event_id, event_type, webhook_id, status,
            attempts, next_attempt_at, created_at, updated_at)
        SELECT id, endpoint_id, platform_id, event_id, event_type, webhook_id, status, attempts, next_attempt_at,
            created_at, updated_at
        FROM jsonb_populate_recordset(NULL::webhook_deliveries, p->'deliveries');
    END IF;
    -- 3. The budgets, then (4.) the wallets, last (issue 18: the platform's wallet row is the one every call of
    --    every instance writes, so it is locked for the shortest time: its UPDATE and the commit). Each
    --    table's rows are locked in id order, then one UPDATE applies the batch to every row whose guard holds.
    --    Exact: the row is the one the batch read (xmin). Otherwise the batch's decisions had room to spare: the
    --    row still has at least ``need`` available and nothing a low-balance rule reads changed, so the same
    --    decisions apply to the current values and only the ledger's "after" amounts move (by the returned
    --    offsets). A row missing or failing its guard: TW409.
    IF cardinality(budget_ids) > 0 THEN
        PERFORM 1 FROM budgets WHERE id = ANY(budget_ids) ORDER BY id FOR NO KEY UPDATE;
        WITH done AS (
            UPDATE budgets b SET
                max_nanos = CASE WHEN a.exact THEN a.max ELSE b.max_nanos END,
                used_nanos = b.used_nanos + a.d_used,
                held_nanos = b.held_nanos + a.d_held,
                period_start = a.period_start,
                low_balance_armed = a.armed,
                updated_at = (p->>'now')::timestamptz
            FROM jsonb_to_recordset(p->'budgets') AS a(id text, exact boolean, xmin text, need bigint, armed0 boolean,
                armed boolean, floor bigint, threshold bigint, period text, period_start0 timestamptz,
                period_start timestamptz, max bigint, used bigint, d_used bigint, d_held bigint)
            WHERE b.id = ANY(budget_ids) AND b.id = a.id AND CASE WHEN a.exact THEN b.xmin::text = a.xmin ELSE
                b.is_active AND NOT b.is_suspended
                AND b.low_balance_armed = a.armed0
                AND b.period_start = a.period_start0
                AND b.period = a.period
                AND b.low_balance_threshold_nanos IS NOT DISTINCT FROM a.threshold
                AND b.max_nanos - b.used_nanos - b.held_nanos >= coalesce(a.need, -1)
                AND (a.floor IS NULL OR b.max_nanos - b.used_nanos - a.d_used > a.floor) END
            RETURNING b.id, jsonb_build_array(b.used_nanos - a.used, b.max_nanos - a.max) AS moved,
                jsonb_build_array(b.max_nanos, b.used_nanos, b.held_nanos, b.low_balance_armed, b.xmin::text,
                    b.period_start) AS now_row
        )
        SELECT count(*), coalesce(jsonb_object_agg(id, moved), '{}'::jsonb),
            coalesce(jsonb_object_agg(id, now_row), '{}'::jsonb)
        INTO n_updated, offsets, budgets_now FROM done;
        IF n_updated <> jsonb_array_length(p->'budgets') THEN
            RAISE EXCEPTION 'money batch conflict: budget %', (SELECT string_agg(x->>'id', ', ')
                FROM jsonb_array_elements(p->'budgets') x WHERE NOT budgets_now ? (x->>'id')) USING ERRCODE = 'TW409';
        END IF;
    END IF;
    IF jsonb_array_length(p->'budget_rows') > 0 THEN
        INSERT INTO budget_transactions (id, budget_id, platform_id, end_user_id, type, amount_nanos, max_after_nanos,
            used_after_nanos, remaining_after_nanos, reason, metadata, request_id, created_at)
        SELECT x.id, x.budget_id, x.platform_id, x.end_user_id, x.type, x.amount_nanos,
            x.max_after_nanos + coalesce((offsets->x.budget_id->>1)::bigint, 0),
            x.used_after_nanos + coalesce((offsets->x.budget_id->>0)::bigint, 0),
            x.remaining_after_nanos + coalesce((offsets->x.budget_id->>1)::bigint, 0)
                - coalesce((offsets->x.budget_id->>0)::bigint, 0),
            x.reason, x.metadata, x.request_id, x.created_at
        FROM jsonb_populate_recordset(NULL::budget_transactions, p->'budget_rows') x;
    END IF;
    -- 4. The wallets, last. Their ledger rows go in before the lock, their "after" amounts moved by ``shift``, what
    --    each wallet was found to hold a moment before (read without a lock: what the UPDATE's offsets will be if
    --    nobody writes the wallet in between); then the wallets are locked and updated, so a wallet row is held
    --    only for its UPDATE and the commit. If another writer committed to a wallet in between, the offsets differ
    --    from the shift: the block is undone (its rows and its lock; TW410, caught here) and done again with the
    --    wallets locked first, the shift read under the lock and so exact. A failed guard is TW409, not caught.
    offsets := '{}'::jsonb;
    LOOP
        IF cardinality(wallet_ids) > 0 THEN
            IF locked THEN
                PERFORM 1 FROM wallets WHERE id = ANY(wallet_ids) ORDER BY id FOR NO KEY UPDATE;
            END IF;
            SELECT coalesce(jsonb_object_agg(w.id, w.balance_nanos + a.d_balance - a.balance), '{}'::jsonb)
            INTO shift
            FROM wallets w JOIN jsonb_to_recordset(p->'wallets') AS a(id text, balance bigint, d_balance bigint)
                ON w.id = a.id
            WHERE w.id = ANY(wallet_ids);
        END IF;
        BEGIN
            IF jsonb_array_length(p->'wallet_rows') > 0 THEN
                INSERT INTO wallet_transactions (id, wallet_id, platform_id, type, amount_nanos, balance_after_nanos,
                    description, metadata, request_id, created_at)
                SELECT id, wallet_id, platform_id, type, amount_nanos,
                    balance_after_nanos + coalesce((shift->>wallet_id)::bigint, 0), description, metadata, request_id,
                    created_at
                FROM jsonb_populate_recordset(NULL::wallet_transactions, p->'wallet_rows');
            END IF;
            IF cardinality(wallet_ids) > 0 THEN
                PERFORM 1 FROM wallets WHERE id = ANY(wallet_ids) ORDER BY id FOR NO KEY UPDATE;
                WITH done AS (
                    UPDATE wallets w SET
                        balance_nanos = w.balance_nanos + a.d_balance,
                        held_nanos = w.held_nanos + a.d_held,
                        low_balance_armed = a.armed,
                        updated_at = (p->>'now')::timestamptz
                    FROM jsonb_to_recordset(p->'wallets') AS a(id text, exact boolean, xmin text, need bigint,
                        armed0 boolean, armed boolean, floor bigint, balance bigint, d_balance bigint, d_held bigint)
                    WHERE w.id = ANY(wallet_ids) AND w.id = a.id AND CASE WHEN a.exact THEN w.xmin::text = a.xmin ELSE
                        w.low_balance_armed = a.armed0
                        AND w.balance_nanos - w.held_nanos >= coalesce(a.need, -1)
                        AND (a.floor IS NULL OR w.balance_nanos + a.d_balance > a.floor) END
                    RETURNING w.id, w.balance_nanos - a.balance AS moved,
                        jsonb_build_array(w.balance_nanos, w.held_nanos, w.low_balance_armed, w.xmin::text) AS now_row
                )
                SELECT count(*), coalesce(jsonb_object_agg(id, moved), '{}'::jsonb),
                    coalesce(jsonb_object_agg(id, now_row), '{}'::jsonb)
                INTO n_updated, offsets, wallets_now FROM done;
                IF n_updated <> jsonb_array_length(p->'wallets') THEN
                    RAISE EXCEPTION 'money batch conflict: wallet %', (SELECT string_agg(x->>'id', ', ')
                        FROM jsonb_array_elements(p->'wallets') x WHERE NOT wallets_now ? (x->>'id'))
                        USING ERRCODE = 'TW409';
                END IF;
                IF offsets <> shift THEN
                    RAISE EXCEPTION 'a wallet moved before its lock' USING ERRCODE = 'TW410';
                END IF;
            END IF;
            EXIT;
        EXCEPTION WHEN SQLSTATE 'TW410' THEN
            locked := true;
        END;
    END LOOP;
    -- The wallets and budgets as this transaction leaves them, for the writer's cache.
    RETURN wallets_now || budgets_now;
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
    op.execute(APPLY_0017)
