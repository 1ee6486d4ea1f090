"""Embedded SQLite answers a hold once it is decided under the write lock and commits it while the upstream request
runs (``MoneyWriter._commit_split``). These tests make that commit fail for real, with a trigger on the ``holds``
table that aborts the insert of marked holds, and check that no answer is delivered on a hold that does not exist,
that nothing is charged for it, and that the settlements committed in the same batch are not lost."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.invariants import assert_invariants, count
from tests.support.seed import Tenant, cent_tenant
from tests.support.servers import GatewayServer, running_gateway
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.storage.sql.tables import holds, usage_logs

MARK = "refuse-this-hold"
USER = [{"role": "user", "content": "x"}]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("hold-commit")
    with running_gateway(make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}")) as server:
        yield server


@pytest.fixture
def tenant(embedded: GatewayServer, fake_upstream: FakeUpstreamThread) -> Iterator[Tenant]:
    made = cent_tenant(embedded.url, embedded.settings.admin_key, fake_upstream.base_url, topup="10")
    yield made
    made.client.close()


@pytest.fixture
def failing_holds(embedded: GatewayServer) -> Iterator[None]:
    """Holds whose terms carry ``MARK`` (it rides in the request's metadata) cannot be inserted."""
    path = Path(embedded.settings.database_url.removeprefix("sqlite:///"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TRIGGER refuse_marked_holds BEFORE INSERT ON holds"
        f" WHEN NEW.terms LIKE '%{MARK}%' BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END"
    )
    try:
        yield
    finally:
        conn.execute("DROP TRIGGER refuse_marked_holds")
        conn.close()


def _body(marked: bool, stream: bool = False) -> dict[str, Any]:
    return {"model": "cent", "messages": USER, "stream": stream, "metadata": {"tag": MARK if marked else "plain"}}


def _log_rows(embedded: GatewayServer, request_id: str) -> int:
    return count(embedded.settings, usage_logs, usage_logs.c.request_id == request_id)


def _wait_settled(embedded: GatewayServer, request_ids: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while count(embedded.settings, usage_logs, usage_logs.c.request_id.in_(request_ids)) < len(request_ids):
        assert time.monotonic() < deadline, "settlements never committed"
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_hold_that_cannot_be_committed_withholds_the_answer_and_charges_nothing(
    embedded: GatewayServer, tenant: Tenant, fake_upstream: FakeUpstreamThread, failing_holds: None, stream: bool
) -> None:
    served = tenant.client.post("/v1/chat/completions", json=_body(False))
    assert served.status_code == 200, served.text
    calls_before = fake_upstream.request_count

    refused = tenant.client.post("/v1/chat/completions", json=_body(True, stream))

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/json")  # no SSE byte went out
    assert refused.json()["error"]["code"] == "service_unavailable"
    request_id = refused.headers["x-request-id"]
    # The upstream was called (the hold commits while the request runs), but its answer was withheld.
    assert fake_upstream.request_count == calls_before + 1
    _wait_settled(embedded, [served.headers["x-request-id"]])
    assert _log_rows(embedded, served.headers["x-request-id"]) == 1
    assert _log_rows(embedded, request_id) == 0
    assert count(embedded.settings, holds, holds.c.request_id == request_id) == 0
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()
    assert wallet["balance_usd"] == 9.99 and wallet["held_usd"] == 0  # only the served call was charged
    assert_invariants(embedded.settings)

    again = tenant.client.post("/v1/chat/completions", json=_body(False, stream))
    assert again.status_code == 200, again.text


def test_under_concurrency_every_answer_is_charged_once_and_every_withheld_one_not_at_all(
    embedded: GatewayServer, tenant: Tenant, fake_upstream: FakeUpstreamThread, failing_holds: None
) -> None:
    """A failed commit voids every hold of its batch (their callers get 503), while the settlements that rode in
    it are committed one by one: each delivered answer ends with exactly one log row and one ledger row."""
    marked = [i % 5 == 0 for i in range(60)]
    calls_before = fake_upstream.request_count

    def call(flag: bool) -> httpx.Response:
        with httpx.Client(base_url=embedded.url, headers={"Authorization": f"Bearer {tenant.platform_key}"}) as c:
            return c.post("/v1/chat/completions", json=_body(flag), timeout=30)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(call, marked))

    served = [r.headers["x-request-id"] for r in responses if r.status_code == 200]
    withheld = [r.headers["x-request-id"] for r in responses if r.status_code == 503]
    assert len(served) + len(withheld) == len(marked), [r.status_code for r in responses]
    assert all(r.status_code == 503 for r, flag in zip(responses, marked, strict=True) if flag)
    assert served, "unmarked calls must get through"
    # Every served call went upstream. A withheld one usually did too (its hold was answered before the commit that
    # failed), unless its batch failed while it was being decided: then it was refused before any upstream call.
    assert calls_before + len(served) <= fake_upstream.request_count <= calls_before + len(marked)
    _wait_settled(embedded, served)
    settings = embedded.settings
    for request_id in served:
        assert _log_rows(embedded, request_id) == 1
    for request_id in withheld:
        assert _log_rows(embedded, request_id) == 0
        assert count(settings, holds, holds.c.request_id == request_id) == 0
    wallet = tenant.client.get(f"/v1/platforms/{tenant.platform_id}/wallet").json()
    assert wallet["held_usd"] == 0
    assert round(10 - wallet["balance_usd"], 6) == round(0.01 * len(served), 6)
    assert count(settings, holds, holds.c.status == "active", holds.c.platform_id == tenant.platform_id) == 0
    assert_invariants(settings)
