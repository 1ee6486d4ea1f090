"""Threads under the Responses tool loop (SPEC §16.3, §16.4), end to end on SQLite and PostgreSQL with a short thread
lease (``TOLLWAY_THREAD_LEASE_S`` = 2 s), real MCP servers built with the ``mcp`` SDK, the fake upstream in two wire
formats and the official ``openai`` SDK:

- a loop that runs longer than its lease (a slow tool) keeps its thread: a second request meanwhile gets 409
  ``thread_busy``, and the thread is free at once when the loop ends;
- a stream whose client leaves before its first event, so that the server never starts its body (an ASGI 2.4 server,
  ``tests/support/asgi_server.py``), frees its thread at once (not when a lease lapses; renewed, it never would) and
  its opened turn is billed as a stream cut before its output, for its prompt;
- the loop's first turn is in the instance's journal before the prelude's first byte (SPEC §9.4);
- a budget suspended while a loop runs ends it ``incomplete`` with reason ``budget_suspended``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import STORES, database_url_for, make_settings
from tests.e2e.test_agent_loop import Tenant, make_tenant, mcp_tool, model
from tests.support.asgi_server import AsgiServer
from tests.support.invariants import checked_gateway
from tests.support.mcp_app import McpApp
from tests.support.servers import GatewayServer
from tollway.app import create_app
from tollway.domain.holds import Recover
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.storage.money.journal import read_entries

LEASE_S = 2.0
KINDS = ["openai", "anthropic"]  # Tollway's loop over OpenAI's own Responses API, and over a chat adapter
INPUT_PRICE = Decimal("0.0001")  # USD per prompt token ($100 per Mtok, test_agent_loop's prices)


@pytest.fixture(scope="module", params=STORES)
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("agent-threads")
    database = database_url_for(request.param, tmp, request)
    settings = make_settings(tmp, database, mcp_call_timeout_s=30, thread_lease_s=LEASE_S)
    with checked_gateway(settings) as server:
        yield server


@pytest.fixture(scope="module", params=KINDS)
def tenant(
    request: pytest.FixtureRequest,
    gateway: GatewayServer,
    admin: httpx.Client,
    fake_upstream: FakeUpstreamThread,
    app: McpApp,
) -> Iterator[Tenant]:
    made = make_tenant(gateway, admin, fake_upstream, request.param, app, mcp_free_calls_per_month=0)
    yield made
    made.client.close()


def _post(tenant: Tenant, key: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(tenant.gateway.url + "/v1/responses", json=body, headers=headers, timeout=timeout)


def _thread() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _wait_for(condition: Any, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _in_background(call: Any) -> tuple[threading.Thread, dict[str, httpx.Response]]:
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: result.update(response=call()), daemon=True)
    worker.start()
    return worker, result


def test_a_loop_longer_than_its_lease_keeps_its_thread_until_it_ends(tenant: Tenant, app: McpApp) -> None:
    _, key = tenant.end_user()
    thread = _thread()
    body = {"model": model(tenant, "dozer"), "input": "nap", "tools": [mcp_tool(tenant)], "thread_id": thread}
    naps = app.calls.count("sleep")
    worker, result = _in_background(lambda: _post(tenant, key, body))
    _wait_for(lambda: app.calls.count("sleep") > naps, "the slow tool was never called")
    time.sleep(LEASE_S * 1.5)  # the claim, taken before the first turn, is past its first lease by now
    meanwhile = {"model": model(tenant, "plain"), "input": "me too", "thread_id": thread}
    busy = _post(tenant, key, meanwhile)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "thread_busy", busy.text
    worker.join(timeout=60)
    answer = result["response"]
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["status"] == "completed" and [i["type"] for i in done["output"]] == [
        "mcp_list_tools", "mcp_call", "message",
    ]  # fmt: skip
    assert done["output"][1]["output"] == "awake"
    after = _post(tenant, key, meanwhile)  # released when the loop ended: free at once
    assert after.status_code == 200, after.text
    got = tenant.client.get(f"/v1/threads/{thread}", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200 and got.json()["response_count"] == 2


@pytest.mark.parametrize("loop", [True, False], ids=["tool-loop", "plain"])
def test_a_stream_left_before_its_first_event_frees_its_thread_and_bills_its_opened_turn(
    tenant: Tenant, gateway: GatewayServer, loop: bool
) -> None:
    # A second instance on the same database, served in this test's event loop by an ASGI 2.4 server: its client
    # hangs up while the first turn is still to answer (3 s), so Starlette never starts the answer's body.
    _, key = tenant.end_user()
    thread = _thread()
    body: dict[str, Any] = {"input": "hi", "stream": True, "thread_id": thread}
    if loop:
        body.update(model=model(tenant, "late-agent"), tools=[mcp_tool(tenant)])
    else:
        body.update(model=model(tenant, "late-echo"))
    plain = {"model": model(tenant, "plain"), "input": "next", "thread_id": thread}

    async def run() -> tuple[httpx.Response, list[dict[str, Any]]]:
        instance = AsgiServer(create_app(gateway.settings))
        await instance.start()
        try:
            assert await instance.post_and_leave("/v1/responses", body, key, leave_after_s=0.5) == []
            auth = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=30) as client:
                # Free at once, where a lease kept renewed (or left to lapse, 2 s later) answers 409.
                for _ in range(20):
                    after = await client.post("/v1/responses", json=plain)
                    if after.status_code != 409:
                        break
                    await asyncio.sleep(0.1)
                rows: list[dict[str, Any]] = []
                for _ in range(100):  # the opened turn's settlement, committed by the instance's money writer
                    logs = await tenant_logs(client, tenant, thread)
                    rows = [r for r in logs if r["request_id"] != after.headers["x-request-id"]]
                    if rows:
                        break
                    await asyncio.sleep(0.1)
            return after, rows
        finally:
            await instance.stop()

    after, rows = asyncio.run(run())
    assert after.status_code == 200, after.text
    assert len(rows) == 1, rows  # the opened turn only: no later turn, no tool call
    (turn,) = rows
    assert (turn["request_type"], turn["iteration"], turn["status"]) == ("response", 0, "interrupted")
    assert turn["completion_tokens"] == 0 and turn["prompt_tokens"] > 0  # a stream cut before its output
    assert Decimal(str(turn["cost_usd"])) == turn["prompt_tokens"] * INPUT_PRICE
    items = tenant.client.get(f"/v1/threads/{thread}/items", headers={"Authorization": f"Bearer {key}"}).json()
    assert [i["type"] for i in items["data"]] == ["message", "message"]  # only the later response was appended


def test_the_loops_first_turn_is_in_the_journal_before_the_preludes_first_byte(
    tenant: Tenant, gateway: GatewayServer
) -> None:
    # SPEC §9.4: the first turn is opened upstream (its prompt spent) before the prelude (response.created, the
    # listing) goes out; its provisional record is written ahead first, as a plain stream writes it before its
    # response.created, so that an instance killed while the prelude goes out still bills the turn for its prompt.
    _, key = tenant.end_user()
    body = {"model": model(tenant, "echo-agent"), "input": "hi", "tools": [mcp_tool(tenant)], "stream": True}
    journal = gateway.settings.data_dir / "journal"
    seen: list[Recover] = []

    async def first_bytes(start: dict[str, Any]) -> None:
        request_id = dict(start["headers"])[b"x-request-id"].decode()
        for path in journal.glob("*.journal"):
            seen.extend(e for e in read_entries(path) if isinstance(e, Recover) and e.request_id == request_id)

    async def run() -> list[dict[str, Any]]:
        instance = AsgiServer(create_app(gateway.settings))
        await instance.start()
        try:
            return await instance.post("/v1/responses", body, key, first_bytes)
        finally:
            await instance.stop()

    sent = asyncio.run(run())
    streamed = b"".join(m.get("body", b"") for m in sent[1:])
    assert streamed.startswith(b"event: response.created") and b"event: response.completed" in streamed
    assert [(e.progress["delivered_bytes"], "usage" in e.progress) for e in seen] == [(0, False)]


async def tenant_logs(client: httpx.AsyncClient, tenant: Tenant, thread: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"{tenant.base}/logs", params={"thread_id": thread}, headers={"Authorization": f"Bearer {tenant.key}"}
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_a_budget_suspended_while_the_loop_runs_ends_it_incomplete_with_that_reason(
    tenant: Tenant, app: McpApp
) -> None:
    end_user_id, key = tenant.end_user()
    body = {"model": model(tenant, "dozer"), "input": "nap", "tools": [mcp_tool(tenant)]}
    naps = app.calls.count("sleep")
    worker, result = _in_background(lambda: _post(tenant, key, body))
    _wait_for(lambda: app.calls.count("sleep") > naps, "the slow tool was never called")
    suspended = tenant.client.patch(f"{tenant.base}/end-users/{end_user_id}/budget", json={"is_suspended": True})
    assert suspended.status_code == 200, suspended.text
    worker.join(timeout=60)
    answer = result["response"]
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["status"] == "incomplete" and done["incomplete_details"] == {"reason": "budget_suspended"}
    assert [i["type"] for i in done["output"]] == ["mcp_list_tools", "mcp_call"]
    assert (done["output"][1]["status"], done["output"][1]["output"]) == ("completed", "awake")  # billed, returned
    rows = tenant.rows(answer.headers["x-request-id"], 2)
    assert sorted((r["request_type"], r["status"]) for r in rows) == [("mcp", "success"), ("response", "success")]
    charged = sum(Decimal(str(r["charged_usd"])) for r in rows)
    assert Decimal(str(done["usage"]["cost"])) == charged
