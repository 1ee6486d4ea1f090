"""A kill -9 never leaves a delivered answer unbilled (SPEC §9.4, issue 21): every settlement, and every stream
checkpoint, is in the instance's journal before the bytes it accounts for reach the client. A gateway process is
killed right after its answers (and after its long streams' first bytes), or while its store hangs so that none of
them could commit; the instance started next on its data directory adopts the journal and bills every delivered
answer exactly once, in full, and every cut stream for what it delivered. Replaying the same journal again changes
nothing; the journal stays small under load and empties when idle."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from tests.conftest import database_url_for, make_settings
from tests.integration.test_settlement_journal import _money, _replay_once
from tests.support.invariants import assert_invariants, count
from tests.support.processes import GatewayProcess
from tests.support.seed import Tenant, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer, PostgresServer, free_port
from tollway.domain.estimation import ceil_quarter, estimate_completion_tokens
from tollway.domain.holds import Recover
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.settings import Settings
from tollway.storage.money.journal import COMPACT_BYTES, read_entries
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.tables import holds, usage_logs

CALL_NANOS = 10_000_000  # 10 completion tokens at $1,000 per Mtok, input free: $0.01 a call
TOKEN_NANOS = 1_000_000  # one completion token at that price ($0.001)
USER = [{"role": "user", "content": "hi"}]
MODELS = {
    # slug: (upstream, max output tokens)
    "quick": ("fake/usage?in=0&out=10", 10),
    "quick-stream": ("fake/usage?in=0&out=10&delay_ms=5", 10),
    "late": ("fake/usage?in=0&out=10&ms=1500", 10),  # answers 1.5 s after its hold
    "late-stream": ("fake/usage?in=0&out=10&ms=1500&delay_ms=20", 10),
    "dribble": ("fake/words?n=2000&delay_ms=50", 5000),  # streams for ~100 s: cut by the kill
    "late-dribble": ("fake/words?n=2000&ms=1500&delay_ms=50", 5000),  # its first byte 1.5 s after its hold
    "hesitant": ("fake/words?n=10&delay_ms=60000", 10),  # opens at once, its first content a minute later
}
PROMPT_PRICED = {"hesitant"}  # input at $1,000 per Mtok too: a stream cut before any output pays its prompt


@dataclass
class Answer:
    key: str
    model: str
    request_id: str = ""
    status: int = 0
    text: str = ""
    first_event: threading.Event = field(default_factory=threading.Event)
    first_content: threading.Event = field(default_factory=threading.Event)

    @property
    def complete(self) -> bool:
        if self.status != 200:
            return False
        if self.model.endswith("stream"):
            return "data: [DONE]" in self.text or "event: response.completed" in self.text
        return '"finish_reason":"stop"' in self.text.replace(" ", "")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Settings, PostgresServer | None]:
    """The gateway's settings, and the PostgreSQL server of its own that a test may freeze."""
    if request.param == "sqlite":
        url, pg = database_url_for("sqlite", tmp_path, request), None
    else:
        pg = request.getfixturevalue("private_postgres")
        url = pg.new_database()
    return make_settings(tmp_path, url, port=free_port(), total_timeout_s=30), pg


def _seed(settings: Settings, upstream: str) -> tuple[Tenant, str]:
    """A tenant with $50 and every model of ``MODELS`` at $1,000 per Mtok out; an end user with a $50 budget."""
    url = f"http://{settings.host}:{settings.port}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {settings.admin_key}"}, timeout=30) as admin:
        provider = create_provider(admin, upstream)
        for slug, (model, tokens) in MODELS.items():
            prompt = "1000" if slug in PROMPT_PRICED else "0"
            prices = {"input_price_per_mtok": prompt, "output_price_per_mtok": "1000", "max_output_tokens": tokens}
            create_model(admin, provider["id"], slug, model, **prices)
        tenant = create_tenant(admin, url, provider["id"], provider["slug"], topup="50")
    user = tenant.client.post(f"/v1/platforms/{tenant.platform_id}/end-users", json={"external_id": "u1"})
    assert user.status_code == 201, user.text
    budget = f"/v1/platforms/{tenant.platform_id}/end-users/{user.json()['id']}/budget"
    assert tenant.client.post(budget, json={"max_usd": "50"}).status_code == 201
    return tenant, user.json()["api_key"]["raw_key"]


def _call(url: str, answer: Answer, responses: bool = False) -> None:
    """One request; a stream is read until it ends or its connection drops (the instance was killed)."""
    stream = answer.model.endswith("stream") or answer.model in ("dribble", "late-dribble", "hesitant")
    if responses:
        path, body = "/v1/responses", {"model": answer.model, "input": "hi", "stream": True, "store": False}
    else:
        path, body = "/v1/chat/completions", {"model": answer.model, "messages": USER, "stream": stream}
    headers = {"Authorization": f"Bearer {answer.key}"}
    with (
        contextlib.suppress(httpx.TransportError),
        httpx.Client(timeout=60) as client,
        client.stream("POST", url + path, json=body, headers=headers) as response,
    ):
        answer.request_id = response.headers.get("x-request-id", "")
        answer.status = response.status_code
        for line in response.iter_lines():
            answer.text += line + "\n"
            if line.startswith("data: {"):
                answer.first_event.set()
            if '"content":"w' in line or '"delta":"' in line:
                answer.first_content.set()


def _start(url: str, answers: list[Answer], responses: bool = False) -> list[threading.Thread]:
    threads = [threading.Thread(target=_call, args=(url, a, responses), daemon=True) for a in answers]
    for thread in threads:
        thread.start()
    return threads


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30, every_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(every_s)


@contextlib.contextmanager
def _frozen(settings: Settings, pg: PostgresServer | None) -> Iterator[None]:
    """The store stops answering, connections open: PostgreSQL SIGSTOPped; SQLite's write lock held by another
    writer (the money writer's commit then waits for it)."""
    if pg is not None:
        pids = pg.freeze()
        try:
            yield
        finally:
            pg.thaw(pids)
        return
    conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _rows(settings: Settings, request_ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    rows: dict[str, list[tuple[Any, ...]]] = {rid: [] for rid in request_ids}
    for row in _money(settings)["logs"]:  # (id, request_id, status, cost, uncollected, charged, error_code)
        if row[1] in rows:
            rows[row[1]].append(row)
    return rows


def _prompt_tokens(settings: Settings, hold_id: str) -> int:
    async def read() -> int:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                terms = (await conn.execute(sa.select(holds.c.terms).where(holds.c.id == hold_id))).scalar_one()
        finally:
            await engine.dispose()
        return ceil_quarter(int((terms if isinstance(terms, dict) else orjson.loads(terms))["prompt_bound"]))

    return asyncio.run(read())


def _billed(settings: Settings, delivered: list[Answer], cut: list[Answer], journal: Path) -> None:
    """Every complete answer billed once in full, every cut stream once for what its journal record says it
    delivered (one cut before any content: its prompt); nothing expired, nothing held, the books exact."""
    ids = [a.request_id for a in delivered + cut]
    assert all(ids) and len(set(ids)) == len(ids)
    wanted = {a.request_id for a in delivered}
    _wait(
        lambda: (
            sum(1 for r in _rows(settings, ids).values() for row in r if row[2] in ("success", "interrupted"))
            >= len(ids)
        ),
        "the journal of the killed instance was never replayed",
        every_s=0.3,
    )
    recorded = {r.hold_id: r for path in journal.glob("*.journal") for r in read_entries(path)}
    rows = _rows(settings, ids)
    total = 0
    for answer in delivered + cut:
        (row,) = rows[answer.request_id]  # exactly one usage row: billed once, never twice
        row_id, _, status, cost, uncollected, charged, error_code = row
        if answer.request_id in wanted:
            assert (status, cost, uncollected, error_code) == ("success", CALL_NANOS, 0, None), row
        else:
            checkpoint = recorded[row_id]  # the settlement row has the hold's id; the hold's record was journaled
            assert isinstance(checkpoint, Recover), checkpoint
            tokens = estimate_completion_tokens(int(checkpoint.progress["delivered_bytes"]))
            if answer.model in PROMPT_PRICED:  # its opening only: the provisional record says 0 bytes
                assert tokens == 0 and not answer.first_content.is_set()
                tokens = _prompt_tokens(settings, row_id)
            assert tokens > 0
            assert (status, cost, uncollected, error_code) == ("interrupted", tokens * TOKEN_NANOS, 0, None), row
        user = answer.key.startswith("sk-eu_")
        assert charged == (cost if user else None), row  # no markup: the budget is charged the cost
        total += cost
    assert count(settings, usage_logs, usage_logs.c.error_code == "hold_expired") == 0
    assert count(settings, holds, holds.c.status == "active") == 0
    assert _money(settings)["wallets"] == [(50_000_000_000 - total, 0)]
    assert_invariants(settings)


def _replayed_again_changes_nothing(settings: Settings, journal: Path) -> None:
    """The dead instance's journal replayed a second time (as if a copy survived): every record is applied already."""
    before = _money(settings)
    for path in journal.glob("*.journal"):
        shutil.copy(path, settings.data_dir / "journal" / "ghost.journal")
    (settings.data_dir / "journal" / "ghost.lock").write_bytes(b"")
    asyncio.run(_replay_once(settings))
    assert _money(settings) == before
    assert_invariants(settings)


def _restart(settings: Settings) -> GatewayProcess:
    return GatewayProcess(settings.model_copy(update={"port": free_port(), "log_level": "info"}))


def test_kill_minus_nine_right_after_answers_bills_each_delivered_answer_once(
    store: tuple[Settings, PostgresServer | None], fake_upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    settings, _ = store
    first = GatewayProcess(settings)
    try:
        tenant, user_key = _seed(settings, fake_upstream.base_url)
        keys = [tenant.platform_key, user_key]
        cut = [Answer(key, "dribble") for key in keys]
        hesitant = Answer(tenant.platform_key, "hesitant")
        _start(first.url, [*cut, hesitant])
        _wait(lambda: all(a.first_content.is_set() for a in cut), "the long streams sent no content")
        _wait(hesitant.first_event.is_set, "the hesitant stream never opened")
        cut.append(hesitant)
        # Plain answers and short streams back to back; the instance dies the moment the last one is read.
        delivered = [Answer(keys[i % 2], ("quick", "quick-stream")[i // 2 % 2]) for i in range(16)]
        for batch in (delivered[i : i + 4] for i in range(0, len(delivered), 4)):
            for thread in _start(first.url, batch):
                thread.join(timeout=30)
        first.kill()
    finally:
        first.stop()
    tenant.client.close()
    assert all(a.complete for a in delivered), [a.text for a in delivered if not a.complete]
    saved = tmp_path / "journal-copy"
    shutil.copytree(settings.data_dir / "journal", saved)

    restarted = _restart(settings)
    try:
        _billed(settings, delivered, cut, saved)
    finally:
        restarted.stop()
    _replayed_again_changes_nothing(settings, saved)


def test_kill_minus_nine_while_the_store_hangs_loses_nothing(
    store: tuple[Settings, PostgresServer | None], fake_upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    """The worst case of the old crash windows: the store hangs (PostgreSQL frozen, SQLite locked by another
    writer), so no settlement and no checkpoint can commit; answers and first stream bytes are delivered all the
    same; the instance is killed during the freeze. Only the journal knows what was delivered."""
    settings, pg = store
    first = GatewayProcess(settings)
    try:
        tenant, user_key = _seed(settings, fake_upstream.base_url)
        keys = [tenant.platform_key, user_key]
        delivered = [Answer(key, model) for key in keys for model in ("late", "late-stream")]
        responses = [Answer(tenant.platform_key, "late-stream")]  # a Responses stream: response.completed
        cut = [Answer(key, "late-dribble") for key in keys]
        _start(first.url, delivered + cut)
        _start(first.url, responses, responses=True)
        _wait(lambda: count(settings, holds, holds.c.status == "active") == 7, "the holds were never placed")
        with _frozen(settings, pg):
            _wait(lambda: all(a.complete for a in delivered + responses), "answers never arrived during the freeze")
            _wait(lambda: all(a.first_content.is_set() for a in cut), "the long streams sent no content")
            first.kill()
    finally:
        first.stop()
    tenant.client.close()
    # The kill caught all of them before any commit: nothing settled, no checkpoint on any hold.
    assert count(settings, holds, holds.c.status == "active") == 7
    assert count(settings, holds, holds.c.checkpoint.is_not(None)) == 0
    assert count(settings, usage_logs) == 0
    saved = tmp_path / "journal-copy"
    shutil.copytree(settings.data_dir / "journal", saved)

    restarted = _restart(settings)
    try:
        _billed(settings, delivered + responses, cut, saved)
    finally:
        restarted.stop()
    _replayed_again_changes_nothing(settings, saved)


def test_the_journal_stays_small_under_load_and_empties_when_idle(
    fake_upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'tollway.db'}", port=free_port())
    gateway = GatewayServer(settings)
    gateway.start()
    try:
        tenant, _ = _seed(settings, fake_upstream.base_url)
        path = settings.data_dir / "journal"
        largest = 0
        answers = [Answer(tenant.platform_key, ("quick", "quick-stream")[i % 2]) for i in range(240)]
        for batch in (answers[i : i + 8] for i in range(0, len(answers), 8)):
            for thread in _start(gateway.url, batch):
                thread.join(timeout=30)
            largest = max([largest, *(p.stat().st_size for p in path.glob("*.journal"))])
        assert all(a.complete for a in answers)
        written = 240 * 600  # far more was written ahead than the file ever held (a record is over 0.6 kB)
        assert 0 < largest <= COMPACT_BYTES + 16 * 1024 < written, largest
        _wait(lambda: all(p.stat().st_size == 0 for p in path.glob("*.journal")), "the idle journal kept its records")
        assert count(settings, usage_logs, usage_logs.c.status == "success") == 240
        tenant.client.close()
    finally:
        gateway.stop()
    assert list(path.iterdir()) == []  # a clean stop leaves nothing behind
