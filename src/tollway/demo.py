"""``tollway demo`` (what ``make run`` starts): the embedded gateway on SQLite, the fake upstream, and a demo
platform seeded through the real operator and platform APIs, with 30 days of past usage for the console's charts,
and the console URL, keys and copy-paste examples printed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aiohttp
import uvicorn

from tollway.app import create_app
from tollway.domain.clock import utcnow
from tollway.domain.money import NANOS_PER_USD, usd_to_nanos
from tollway.domain.pricing import Prices, Usage, charge_nanos, cost_nanos
from tollway.fake_upstream.mcp_app import bind, demo_mcp_server
from tollway.fake_upstream.server import start_fake_upstream
from tollway.settings import Settings
from tollway.storage.sql.db import create_engine
from tollway.storage.sql.demo_history import PastCall, PastTopup, record_history
from tollway.storage.sql.migrate import upgrade


async def _call(session: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None) -> Any:
    async with session.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        payload = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url} -> {response.status}: {payload}")
        return payload


DEMO_PRICES: Final = {"input_price_per_mtok": "0.15", "output_price_per_mtok": "0.6"}
DEMO_MODELS: Final = (("gpt-4o-mini", "fake/default"), ("echo", "fake/echo"))
DEMO_FUNDS_USD: Final = 25
DEMO_MARKUP_PERCENT: Final = 20
# End users with 30 days of history (no budget: see storage/sql/demo_history.py); demo-user has the $5 budget.
HISTORY_USERS: Final = ("ada", "brook", "chen", "dara", "emil", "farah", "gus")
HISTORY_DAYS: Final = 30


async def seed(base: str, admin_key: str, upstream_base: str, mcp_url: str) -> dict[str, str]:
    """The demo platform through the real operator and platform APIs: the fake provider and its models, the
    platform (markup 20 %) with an LLM config and the built-in MCP app at ``mcp_url``, demo-user with a $5 monthly
    budget, and the end users of the history. The wallet is funded by ``seed_history`` (its opening top-up comes
    before the past calls)."""
    async with aiohttp.ClientSession() as session:
        provider = await _call(
            session,
            "POST",
            f"{base}/v1/admin/providers",
            admin_key,
            {"slug": "fake", "name": "Built-in fake upstream", "kind": "openai_compatible", "base_url": upstream_base},
        )
        chat = {**DEMO_PRICES, "max_output_tokens": 1024}
        rows = (
            *({"slug": slug, "upstream_model": upstream, **chat} for slug, upstream in DEMO_MODELS),
            # An agent model: it calls the built-in app's lookup_order through an `mcp` tool, then answers with the
            # result (the gateway runs the loop, SPEC §16.3).
            {"slug": "agent", "upstream_model": f"fake/agent?name={_AGENT_TOOL}&args={_AGENT_ARGS}", **chat},
            # OpenAI's list prices: $0.02 per million input tokens; moderations are free (SPEC §19).
            {
                "slug": "text-embedding-3-small",
                "upstream_model": "text-embedding-3-small",
                "input_price_per_mtok": "0.02",
                "output_price_per_mtok": "0",
                "max_output_tokens": 1,
                "context_window": 8192,
            },
            {
                "slug": "omni-moderation-latest",
                "upstream_model": "omni-moderation-latest",
                "input_price_per_mtok": "0",
                "output_price_per_mtok": "0",
                "max_output_tokens": 1,
                "price_per_request": "0",
            },
        )
        for row in rows:
            await _call(session, "POST", f"{base}/v1/admin/models", admin_key, {**row, "provider_id": provider["id"]})
        settings = {"markup_percentage": DEMO_MARKUP_PERCENT}
        created = await _call(
            session, "POST", f"{base}/v1/admin/platforms", admin_key, {"name": "Demo Notes", "settings": settings}
        )
        platform_id = created["platform"]["id"]
        platform_key = created["api_key"]["raw_key"]
        await _call(
            session,
            "POST",
            f"{base}/v1/platforms/{platform_id}/llm-configs",
            platform_key,
            {"provider_id": provider["id"], "api_key": "sk-demo-provider-key-not-real"},
        )
        users = f"{base}/v1/platforms/{platform_id}/end-users"
        user = await _call(
            session, "POST", users, platform_key, {"external_id": "demo-user", "display_name": "Dana (demo)"}
        )
        await _call(
            session, "POST", f"{users}/{user['id']}/budget", platform_key, {"max_usd": "5", "period": "monthly"}
        )
        # The built-in MCP app (no network needed), served by this process; $0.001 a call after the free tier.
        app = {"slug": "demo-tools", "name": "Demo tools", "server_url": mcp_url, "auth": {"type": "none"}}
        await _call(session, "POST", f"{base}/v1/platforms/{platform_id}/mcp/apps", platform_key, app)
        history_users = [
            (await _call(session, "POST", users, platform_key, {"external_id": name}))["id"] for name in HISTORY_USERS
        ]
    return {
        "platform_id": platform_id,
        "platform_key": platform_key,
        "provider_id": provider["id"],
        "end_user_id": user["id"],
        "end_user_key": user["api_key"]["raw_key"],
        "history_users": ",".join(history_users),
    }


_AGENT_TOOL = "demo-tools__lookup_order"  # how the gateway offers the app's tool to the model
_AGENT_ARGS = json.dumps({"order_id": "A-1001"}, separators=(",", ":"))
_AGENT_QUESTION = "Where is my order A-1001?"


def _agent_tool(base: str) -> str:
    tool = {"type": "mcp", "server_label": "demo-tools", "server_url": f"{base}/v1/mcp/demo-tools"}
    return json.dumps({**tool, "require_approval": "never"})


def past_calls(seeded: dict[str, str], now: datetime, days: int = HISTORY_DAYS) -> list[PastCall]:
    """A deterministic month of chat calls: weekday-shaped traffic, a few heavy users, ~3 % upstream errors."""
    rng = random.Random(17)
    users: list[str | None] = [*seeded["history_users"].split(","), None]
    weights = [30, 22, 15, 10, 8, 5, 3, 7][: len(users)]
    input_nanos, output_nanos = (usd_to_nanos(DEMO_PRICES[k], k) for k in DEMO_PRICES)
    prices = Prices(input_nanos, output_nanos)
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    calls: list[PastCall] = []
    for day in range(days):
        midnight = start + timedelta(days=day)
        weekend = midnight.weekday() >= 5
        for _ in range(rng.randint(8, 14) if weekend else rng.randint(20, 40)):
            at = midnight + timedelta(seconds=rng.randint(0, 86_399))
            if at >= now - timedelta(minutes=1):
                continue
            user = rng.choices(users, weights)[0]
            model, upstream = rng.choice(DEMO_MODELS)
            usage = Usage(prompt_tokens=rng.randint(200, 4000), completion_tokens=rng.randint(40, 1200))
            cost = cost_nanos(usage, prices)
            charged = None if user is None else charge_nanos(usage, prices, DEMO_MARKUP_PERCENT * 100)
            failed = rng.random() < 0.03
            calls.append(
                PastCall(
                    at=at,
                    end_user_id=user,
                    model=model,
                    provider_id=seeded["provider_id"],
                    provider_model=upstream,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    latency_ms=rng.randint(300, 2500),
                    ttft_ms=rng.randint(80, 400),
                    cost_nanos=0 if failed else cost,
                    charged_nanos=charged,
                    error_code="upstream_error" if failed else None,
                )
            )
    return calls


async def seed_history(settings: Settings, seeded: dict[str, str], now: datetime | None = None) -> None:
    """The wallet's opening top-up 30 days ago and the month of calls since, so the console's charts have data."""
    moment = now or utcnow()
    opening = (moment - timedelta(days=HISTORY_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    topup = PastTopup(opening - timedelta(minutes=5), DEMO_FUNDS_USD * NANOS_PER_USD, "demo funds")
    engine = create_engine(settings)
    try:
        await record_history(engine, seeded["platform_id"], topup, past_calls(seeded, moment))
    finally:
        await engine.dispose()


_MCP_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "lookup_order", "arguments": {"order_id": "A-1001"}},
    },
    separators=(",", ":"),
)


def _banner(base: str, admin_key: str, seeded: dict[str, str]) -> str:
    key = seeded["end_user_key"]
    return f"""
Tollway demo is running on {base} (SQLite, fake upstream, wallet funded with ${DEMO_FUNDS_USD}, 30 days of usage)

  console      : {base}/console   (sign in with the platform key below; the other keys work too)
  operator key : {admin_key}
  platform id  : {seeded["platform_id"]}
  platform key : {seeded["platform_key"]}
  end user     : demo-user, monthly budget $5
  end-user key : {key}
  models       : gpt-4o-mini (canned answer), echo (repeats your last message), agent (answers with an MCP tool),
                 text-embedding-3-small (embeddings), omni-moderation-latest (moderations, free)

curl:
  curl -s {base}/v1/chat/completions -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "echo", "messages": [{{"role": "user", "content": "Hello, Tollway!"}}]}}'
  curl -s {base}/v1/embeddings -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "text-embedding-3-small", "input": "Hello, Tollway!"}}'

Python (openai SDK):
  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  reply = client.chat.completions.create(model="echo", messages=[{{"role": "user", "content": "Hello, Tollway!"}}])
  print(reply.choices[0].message.content)

MCP (the built-in app demo-tools through the proxy: get_time, lookup_order; $0.001 a call, the first 1,000 calls
of a month are free):
  curl -s {base}/v1/mcp/demo-tools -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -H "Accept: application/json, text/event-stream" \\
    -d '{_MCP_CALL}'

Python (mcp SDK, any MCP client works the same way):
  import asyncio, httpx2
  from mcp.client.client import Client
  from mcp.client.streamable_http import streamable_http_client
  async def main():
      http = httpx2.AsyncClient(headers={{"Authorization": "Bearer {key}"}})
      async with http, Client(streamable_http_client("{base}/v1/mcp/demo-tools", http_client=http)) as mcp:
          print((await mcp.call_tool("get_time", {{}})).content[0].text)
  asyncio.run(main())

An agent answering through the built-in MCP app (`mcp` tool in /v1/responses: the gateway lists the app's tools,
calls lookup_order, and the model answers; each model turn and the call are billed, see the usage log):
  curl -s {base}/v1/responses -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "agent", "input": "{_AGENT_QUESTION}", "tools": [{_agent_tool(base)}]}}'

Python (openai SDK):
  reply = client.responses.create(model="agent", input="{_AGENT_QUESTION}",
                                  tools=[{_agent_tool(base)}])
  print(reply.output_text)

Budget: curl -s {base}/v1/me/budget -H "Authorization: Bearer {key}"
Usage log: curl -s {base}/v1/platforms/{seeded["platform_id"]}/logs -H "Authorization: Bearer {seeded["platform_key"]}"
Press Ctrl+C to stop.
"""


def _fresh_dir(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)


async def run_demo(port: int, upstream_port: int, data_dir: str) -> None:
    root = Path(data_dir)
    await asyncio.to_thread(_fresh_dir, root)
    admin_key = "sk-admin_" + secrets.token_urlsafe(32)
    settings = Settings(
        database_url=f"sqlite:///{root / 'tollway.db'}",
        admin_key=admin_key,
        secret_key=base64.b64encode(os.urandom(32)).decode(),
        data_dir=root,
        port=port,
        log_level="warning",
        allow_private_urls=True,  # the built-in MCP app listens on 127.0.0.1 over http (SPEC §11.5, development)
    )
    await upgrade(settings)
    fake = await start_fake_upstream("127.0.0.1", upstream_port)
    mcp_socket, mcp_url = bind()
    mcp_server = demo_mcp_server()
    mcp_serving = asyncio.create_task(mcp_server.serve(sockets=[mcp_socket]))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=settings.host, port=port, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        base = f"http://{settings.host}:{port}"
        while not mcp_server.started:
            if mcp_serving.done():
                await mcp_serving
                return
            await asyncio.sleep(0.05)
        seeded = await seed(base, admin_key, fake.base_url, mcp_url)
        await seed_history(settings, seeded)
        print(_banner(base, admin_key, seeded), flush=True)
        await serving
    finally:
        server.should_exit = True
        mcp_server.should_exit = True
        await fake.close()
        with contextlib.suppress(Exception):
            await mcp_serving
        mcp_socket.close()
