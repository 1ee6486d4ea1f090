"""How long the platform's wallet row stays locked under load, measured inside PostgreSQL (issue 18's target: ≤ 1 ms
p99 at concurrency 32).

A row lock is held from the statement that takes it (``SELECT … FOR UPDATE`` or ``UPDATE``) to the end of its
transaction, and PostgreSQL keeps no statistics of row-lock hold times (``pg_locks`` shows a row lock only while
someone waits for it). So the probe asks PostgreSQL's own clock: a deferred constraint trigger on ``wallets`` fires
at the COMMIT of every transaction that changed a wallet row and notes the transaction's start (``now()``) and the
moment of the commit (``clock_timestamp()``), microsecond timestamps of the server. The lock cannot be taken before
the transaction starts, nor before the previous holder of the same row commits (it is exclusive), and it is
released once the commit record is written (on the bench's server, with ``fsync=off``, microseconds after the
trigger): so ``commit − max(start, previous commit on the row)`` bounds each hold from above, without the time
spent queueing for the lock (reported apart, as the transaction's duration). It covers whatever the gateway does
while the lock is held (its own CPU between statements included), which statement timings such as
``pg_stat_statements`` would miss. A transaction that locks a wallet row without changing it is not seen (it only
makes the bound looser).

A second trigger, ``BEFORE UPDATE`` on each wallet row, notes when the ``UPDATE`` got the row: PostgreSQL locks the
row before it runs a row's BEFORE triggers (waiting there for a previous holder), so for a transaction whose first
lock on the row is that ``UPDATE``, as in ``tollway_money_apply`` (storage/money/postgres.py, the call that carries
nearly every batch), ``commit − locked`` is the hold itself, not a bound. A transaction of the locked path takes the
row earlier with ``SELECT … FOR UPDATE``, which fires no trigger, so for those (told apart by the statement running
when the row was updated) the bound above is used instead. Both are reported: ``held`` (exact for the function, the
bound for the rest) and ``bound`` (the bound for all).

The triggers are installed only for the probe run and cost one insert into an unlogged table per transaction.
"""

from __future__ import annotations

import asyncpg

_INSTALL = """
CREATE SCHEMA IF NOT EXISTS bench_probe;
CREATE UNLOGGED TABLE IF NOT EXISTS bench_probe.wallet_locks (
    wallet_id text NOT NULL, xid xid8 NOT NULL, began timestamptz NOT NULL, committing timestamptz NOT NULL
);
CREATE UNLOGGED TABLE IF NOT EXISTS bench_probe.wallet_updates (
    wallet_id text NOT NULL, xid xid8 NOT NULL, locked timestamptz NOT NULL, by_function boolean NOT NULL
);
CREATE OR REPLACE FUNCTION bench_probe.note_wallet_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_probe.wallet_locks VALUES (NEW.id::text, pg_current_xact_id(), now(), clock_timestamp());
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION bench_probe.note_wallet_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_probe.wallet_updates VALUES (NEW.id::text, pg_current_xact_id(), clock_timestamp(),
        current_query() LIKE '%tollway_money_apply%');
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS bench_probe_wallet_lock ON wallets;
CREATE CONSTRAINT TRIGGER bench_probe_wallet_lock AFTER UPDATE ON wallets
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bench_probe.note_wallet_lock();
DROP TRIGGER IF EXISTS bench_probe_wallet_update ON wallets;
CREATE TRIGGER bench_probe_wallet_update BEFORE UPDATE ON wallets
    FOR EACH ROW EXECUTE FUNCTION bench_probe.note_wallet_update();
"""

_REMOVE = """
DROP TRIGGER IF EXISTS bench_probe_wallet_lock ON wallets;
DROP TRIGGER IF EXISTS bench_probe_wallet_update ON wallets;
DROP SCHEMA IF EXISTS bench_probe CASCADE;
"""

# One row per transaction and wallet (a transaction that changed the row twice fired the triggers twice, at the same
# commit). ``transaction_ms``: start to commit, which includes any wait for the lock. ``bound_ms`` removes that wait:
# the lock is exclusive, so a transaction got it no earlier than the commit of the one before it on the same row.
# ``held_ms``: from the first UPDATE's lock to the commit for the function's transactions, ``bound_ms`` for the rest.
_SUMMARY = """
WITH per_transaction AS (
    SELECT l.wallet_id, l.xid, min(l.began) AS began, max(l.committing) AS committing,
           (SELECT min(u.locked) FROM bench_probe.wallet_updates u
            WHERE u.wallet_id = l.wallet_id AND u.xid = l.xid) AS locked,
           coalesce((SELECT bool_and(u.by_function) FROM bench_probe.wallet_updates u
            WHERE u.wallet_id = l.wallet_id AND u.xid = l.xid), false) AS by_function
    FROM bench_probe.wallet_locks l GROUP BY l.wallet_id, l.xid
), timed AS (
    SELECT by_function, extract(epoch FROM committing - began) * 1000 AS transaction_ms,
           extract(epoch FROM committing - greatest(began, coalesce(
               lag(committing) OVER (PARTITION BY wallet_id ORDER BY committing), began))) * 1000 AS bound_ms,
           extract(epoch FROM committing - locked) * 1000 AS from_update_ms
    FROM per_transaction
), held AS (
    SELECT *, CASE WHEN by_function THEN from_update_ms ELSE bound_ms END AS held_ms FROM timed
)
SELECT count(*) AS transactions,
       count(*) FILTER (WHERE by_function) AS by_function,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY held_ms) AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY held_ms) AS p99_ms,
       max(held_ms) AS max_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY bound_ms) AS bound_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY bound_ms) AS bound_p99_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY transaction_ms) AS transaction_p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY transaction_ms) AS transaction_p99_ms
FROM held
"""


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def install(database_url: str) -> None:
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        await connection.execute(_INSTALL)
    finally:
        await connection.close()


async def collect(database_url: str) -> dict[str, float]:
    """The probe's figures (transactions seen, how many by the function, p50, p99 and max of the hold in ms, the
    bound's and the whole transactions' p50 and p99); removes the triggers."""
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        row = await connection.fetchrow(_SUMMARY)
        await connection.execute(_REMOVE)
    finally:
        await connection.close()
    assert row is not None and row["transactions"], "no transaction changed a wallet row during the probe"
    names = (
        "transactions",
        "by_function",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "bound_p50_ms",
        "bound_p99_ms",
        "transaction_p50_ms",
        "transaction_p99_ms",
    )
    return {name: float(row[name]) for name in names}
