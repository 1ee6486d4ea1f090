"""``DriverSQL.any_of``: the locked money batch's id lists, one statement shape per query on PostgreSQL (whatever
the number of ids, so asyncpg prepares it once), one placeholder per id on SQLite."""

from __future__ import annotations

import sqlite3

from tollway.storage.money.driver_sql import DriverSQL

SQL = "SELECT id FROM t WHERE (a IN (:users) AND b = :b) OR id IN (:ids) ORDER BY id"


def test_postgres_sends_one_text_whatever_the_number_of_ids() -> None:
    sql = DriverSQL("postgresql")
    texts = set()
    for size in (1, 2, 7):
        text, params = sql.any_of(SQL, {"users": [f"u{i}" for i in range(size)], "ids": ["h"]})
        texts.add(sql._convert(text)[0])
        assert params == {"users": [f"u{i}" for i in range(size)], "ids": ["h"]}
    assert texts == {"SELECT id FROM t WHERE (a = ANY($1::text[]) AND b = $2) OR id = ANY($3::text[]) ORDER BY id"}


def test_sqlite_expands_each_list_and_finds_the_same_rows() -> None:
    sql = DriverSQL("sqlite")
    text, params = sql.any_of(SQL, {"users": ["u1", "u3"], "ids": ["x2"]})
    assert text == ("SELECT id FROM t WHERE (a IN (:users0, :users1) AND b = :b) OR id IN (:ids0) ORDER BY id")
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id TEXT, a TEXT, b INTEGER)")
    rows = [("x1", "u1", 1), ("x2", "u2", 0), ("x3", "u3", 1), ("x4", "u3", 0), ("x5", "u4", 1)]
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    found = sql.execute(conn, text, {**params, "b": 1})
    assert [r[0] for r in found] == ["x1", "x2", "x3"]


def test_a_list_used_twice_binds_the_same_ids_in_both_places() -> None:
    twice = "SELECT r FROM w WHERE r IN (:ids) AND k = 'a' UNION ALL SELECT r FROM w WHERE r IN (:ids) AND k = 'b'"
    pg_text, pg_params = DriverSQL("postgresql").any_of(twice, {"ids": ["r1", "r2"]})
    assert pg_text.count("= ANY(:ids::text[])") == 2 and pg_params == {"ids": ["r1", "r2"]}
    lite = DriverSQL("sqlite")
    text, params = lite.any_of(twice, {"ids": ["r1", "r2"]})
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE w (r TEXT, k TEXT)")
    conn.executemany("INSERT INTO w VALUES (?, ?)", [("r1", "a"), ("r2", "b"), ("r3", "a")])
    assert sorted(r[0] for r in lite.execute(conn, text, params)) == ["r1", "r2"]
