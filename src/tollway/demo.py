"""``tollway demo`` (what ``make run`` starts): the embedded gateway on SQLite, the fake upstream, and a demo
platform seeded through the real operator and platform APIs, with keys and copy-paste examples printed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from tollway.app import create_app
from tollway.fake_upstream.mcp_app import bind, demo_mcp_server
from tollway.fake_upstream.server import start_fake_upstream
from tollway.settings import Settings
from tollway.storage.sql.migrate import upgrade


async def _call(session: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None) -> Any:
    async with session.request(method, url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        payload = await response.json()
        if response.status >= 300:
            raise RuntimeError(f"{method} {url} -> {response.status}: {payload}")
        return payload


async def seed(base: str, admin_key: str, upstream_base: str, mcp_url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as session:
        provider = await _call(
            session,
            "POST",
            f"{base}/v1/admin/providers",
            admin_key,
            {"slug": "fake", "name": "Built-in fake upstream", "kind": "openai_compatible", "base_url": upstream_base},
        )
        chat = {"input_price_per_mtok": "0.15", "output_price_per_mtok": "0.6", "max_output_tokens": 1024}
        rows = (
            {"slug": "gpt-4o-mini", "upstream_model": "fake/default", **chat},
            {"slug": "echo", "upstream_model": "fake/echo", **chat},
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
        created = await _call(session, "POST", f"{base}/v1/admin/platforms", admin_key, {"name": "Demo Notes"})
        platform_id = created["platform"]["id"]
        platform_key = created["api_key"]["raw_key"]
        await _call(
            session,
            "POST",
            f"{base}/v1/platforms/{platform_id}/llm-configs",
            platform_key,
            {"provider_id": provider["id"], "api_key": "sk-demo-provider-key-not-real"},
        )
        await _call(
            session,
            "POST",
            f"{base}/v1/admin/platforms/{platform_id}/wallet/topup",
            admin_key,
            {"amount_usd": "25", "description": "demo funds"},
        )
        user = await _call(
            session,
            "POST",
            f"{base}/v1/platforms/{platform_id}/end-users",
            platform_key,
            {"external_id": "demo-user", "display_name": "Dana (demo)"},
        )
        await _call(
            session,
            "POST",
            f"{base}/v1/platforms/{platform_id}/end-users/{user['id']}/budget",
            platform_key,
            {"max_usd": "5", "period": "monthly"},
        )
        # The built-in MCP app (no network needed), served by this process; $0.001 a call after the free tier.
        app = {"slug": "demo-tools", "name": "Demo tools", "server_url": mcp_url, "auth": {"type": "none"}}
        await _call(session, "POST", f"{base}/v1/platforms/{platform_id}/mcp/apps", platform_key, app)
    return {
        "platform_id": platform_id,
        "platform_key": platform_key,
        "end_user_id": user["id"],
        "end_user_key": user["api_key"]["raw_key"],
    }


_AGENT_TOOL = "demo-tools__lookup_order"  # how the gateway offers the app's tool to the model
_AGENT_ARGS = json.dumps({"order_id": "A-1001"}, separators=(",", ":"))
_AGENT_QUESTION = "Where is my order A-1001?"


def _agent_tool(base: str) -> str:
    tool = {"type": "mcp", "server_label": "demo-tools", "server_url": f"{base}/v1/mcp/demo-tools"}
    return json.dumps({**tool, "require_approval": "never"})


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
Tollway demo is running on {base} (SQLite, fake upstream, wallet funded with $25)

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
        print(_banner(base, admin_key, seeded), flush=True)
        await serving
    finally:
        server.should_exit = True
        mcp_server.should_exit = True
        await fake.close()
        with contextlib.suppress(Exception):
            await mcp_serving
        mcp_socket.close()
