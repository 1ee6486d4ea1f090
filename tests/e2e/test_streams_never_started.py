"""Streams of ``/v1/chat/completions`` and ``/v1/messages`` whose client leaves before their first event (SPEC §7.3,
§9.4), on SQLite and PostgreSQL, served by a second instance in the test's own event loop through an ASGI 2.4 server
(``tests/support/asgi_server.py``), where ``send`` raises once the client has gone and Starlette never starts the
answer's body, so no relay ``finally`` runs:

- the opened call is settled at once (its holds back to zero long before the hold sweeper would look), as a stream
  cut before its output: one usage row, ``interrupted``, billed for its prompt only, exactly as a Responses stream
  left the same way (``tests/e2e/test_agent_threads.py``);
- a stream that did start is settled by its relay, once: read to the end (``success``, the reported usage), or left
  mid-stream (``interrupted``, billed for what it delivered, not redone as a stream cut before its output).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.asgi_server import AsgiServer, Message
from tests.support.invariants import assert_invariants
from tests.support.seed import create_end_user, create_model, create_provider, create_tenant
from tests.support.servers import GatewayServer
from tollway.app import create_app
from tollway.fake_upstream.server import FakeUpstreamThread

TOPUP_NANOS = 10 * 10**9
BUDGET_NANOS = 5 * 10**9
IN_NANOS = 100_000  # $100 per Mtok in: 100,000 n$ a prompt token
OUT_NANOS = 1_000_000  # $1,000 per Mtok out: 1,000,000 n$ a completion token
# The one user message {"role":"user","content":"x"} (29 bytes): T_p = 32 + (16 + 29) = 77 tokens, so a stream cut
# before its output is billed for ⌈77/4⌉ = 20 prompt tokens (SPEC §9.3, §9.4): 2,000,000 n$.
CUT_PROMPT_TOKENS = 20
ENDPOINTS = ["/v1/chat/completions", "/v1/messages"]


@dataclass(frozen=True)
class Account:
    """A fresh platform (its wallet) and one end user with a budget: every row they have is this test's."""

    client: httpx.Client
    platform_id: str
    end_user_id: str
    key: str

    @property
    def base(self) -> str:
        return f"/v1/platforms/{self.platform_id}"

    def wallet(self) -> dict[str, Any]:
        return dict(self.client.get(f"{self.base}/wallet").json())

    def budget(self) -> dict[str, Any]:
        return dict(self.client.get(f"{self.base}/end-users/{self.end_user_id}/budget").json())

    def logs(self) -> list[dict[str, Any]]:
        return list(self.client.get(f"{self.base}/logs", params={"limit": 100}).json()["data"])

    def usage_debits(self) -> list[int]:
        rows = self.client.get(f"{self.base}/wallet/transactions", params={"type": "usage"}).json()["data"]
        return [_nanos(r["amount_usd"]) for r in rows]


@pytest.fixture(scope="module")
def provider(admin: httpx.Client, fake_upstream: FakeUpstreamThread) -> dict[str, Any]:
    made = create_provider(admin, fake_upstream.base_url)
    prices = {"input_price_per_mtok": "100", "output_price_per_mtok": "1000", "max_output_tokens": 50}
    create_model(admin, made["id"], "late", "fake/usage?in=7&out=5&ms=1500", **prices)  # first event after 1.5 s
    create_model(admin, made["id"], "prompt", "fake/usage?in=7&out=5", **prices)
    create_model(admin, made["id"], "words", "fake/words?n=40&delay_ms=100", **prices)
    return made


@pytest.fixture
def account(admin: httpx.Client, gateway: GatewayServer, provider: dict[str, Any]) -> Iterator[Account]:
    tenant = create_tenant(admin, gateway.url, provider["id"], provider["slug"], topup="10")
    user_id, key = create_end_user(tenant, budget_usd="5")
    yield Account(tenant.client, tenant.platform_id, user_id, key)
    tenant.client.close()


def _body(path: str, model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "x"}], "stream": True}
    if path == "/v1/messages":
        body["max_tokens"] = 50  # required by Anthropic's API
    return body


def _nanos(usd: float) -> int:
    return round(usd * 10**9)


def _settled(account: Account, timeout_s: float = 10) -> list[dict[str, Any]]:
    """The account's usage rows once its holds are back to zero and a row is committed (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = account.logs()
        if rows and account.wallet()["held_usd"] == 0 and account.budget()["held_usd"] == 0:
            return rows
        assert time.monotonic() < deadline, f"not settled in {timeout_s} s: {rows}, {account.wallet()}"
        time.sleep(0.05)


def _serve(gateway: GatewayServer, visit: Any) -> Any:
    """Run ``visit(instance)`` against a second instance on the gateway's database, then wait (on the running
    instance) until the account's holds are released, before the instance stops and flushes what it still has."""

    async def run() -> Any:
        instance = AsgiServer(create_app(gateway.settings))
        await instance.start()
        try:
            return await visit(instance)
        finally:
            await instance.stop()

    return asyncio.run(run())


def _assert_money(account: Account, cost_nanos: int) -> None:
    wallet, budget = account.wallet(), account.budget()
    assert (_nanos(wallet["balance_usd"]), wallet["held_usd"]) == (TOPUP_NANOS - cost_nanos, 0)
    assert (_nanos(budget["used_usd"]), budget["held_usd"]) == (cost_nanos, 0)  # no markup: charge = cost
    assert account.usage_debits() == [-cost_nanos]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_stream_left_before_its_first_event_is_settled_at_once_for_its_prompt(
    gateway: GatewayServer, account: Account, path: str
) -> None:
    # The client hangs up after 0.5 s; the upstream's first event comes after 1.5 s, so the answer is handed to the
    # server after the client has gone and its body never starts.
    async def visit(instance: AsgiServer) -> tuple[list[Message], list[dict[str, Any]], float]:
        sent = await instance.post_and_leave(path, _body(path, "late"), account.key, leave_after_s=0.5)
        left = time.monotonic()
        rows = await asyncio.to_thread(_settled, account)  # while the instance runs: not its shutdown's flush
        return sent, rows, time.monotonic() - left

    sent, rows, waited_s = _serve(gateway, visit)
    assert sent == []
    assert waited_s < 10  # the hold sweeper would not look before the hold expires (total timeout + 60 s)
    assert len(rows) == 1, rows
    (row,) = rows
    assert (row["status"], row["finish_reason"], row["token_count_method"]) == ("interrupted", "stop", "estimated")
    assert row["request_type"] == ("messages" if path == "/v1/messages" else "chat.completion")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (CUT_PROMPT_TOKENS, 0)
    cost = CUT_PROMPT_TOKENS * IN_NANOS
    assert (_nanos(row["cost_usd"]), _nanos(row["charged_usd"]), row["end_user_id"]) == (
        cost,
        cost,
        account.end_user_id,
    )
    _assert_money(account, cost)
    assert_invariants(gateway.settings)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_stream_read_to_its_end_is_charged_once_by_its_relay(
    gateway: GatewayServer, account: Account, path: str
) -> None:
    async def visit(instance: AsgiServer) -> tuple[list[Message], list[dict[str, Any]]]:
        async def first_bytes(start: Message) -> None:
            assert start["status"] == 200

        sent = await instance.post(path, _body(path, "prompt"), account.key, first_bytes)
        return sent, await asyncio.to_thread(_settled, account)

    sent, rows = _serve(gateway, visit)
    streamed = b"".join(m.get("body", b"") for m in sent[1:])
    assert (b"data: [DONE]" if path == "/v1/chat/completions" else b"event: message_stop") in streamed
    assert len(rows) == 1, rows
    (row,) = rows
    assert (row["status"], row["token_count_method"]) == ("success", "reported")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (7, 5)
    cost = 7 * IN_NANOS + 5 * OUT_NANOS
    assert _nanos(row["cost_usd"]) == cost
    _assert_money(account, cost)
    assert_invariants(gateway.settings)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_stream_left_after_it_started_is_billed_once_for_what_it_delivered(
    gateway: GatewayServer, account: Account, path: str
) -> None:
    # 40 words, one every 100 ms: the client hangs up 0.5 s after the first body bytes, mid-stream. The answer's end
    # must not settle it as a stream cut before its output; the relay (closed once abandoned) bills what it delivered.
    async def visit(instance: AsgiServer) -> tuple[list[Message], list[dict[str, Any]]]:
        body = _body(path, "words")
        sent = await instance.post_and_leave(path, body, account.key, leave_after_s=0.5, after_bodies=1)
        return sent, await asyncio.to_thread(_settled, account)

    sent, rows = _serve(gateway, visit)
    assert sent[0]["type"] == "http.response.start" and len(sent) >= 2
    assert len(rows) == 1, rows
    (row,) = rows
    assert (row["status"], row["finish_reason"], row["token_count_method"]) == ("interrupted", "stop", "estimated")
    assert row["prompt_tokens"] == CUT_PROMPT_TOKENS and 1 <= row["completion_tokens"] < 40
    cost = CUT_PROMPT_TOKENS * IN_NANOS + row["completion_tokens"] * OUT_NANOS
    assert _nanos(row["cost_usd"]) == cost
    _assert_money(account, cost)
    assert_invariants(gateway.settings)
