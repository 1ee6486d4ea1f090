"""What ``tollway demo`` prints once the demo platform is seeded: the console URL, the keys, the models and
copy-paste examples of each feature (kept apart from ``demo.py``, which starts and seeds everything)."""

from __future__ import annotations

import json
from typing import Final

AGENT_TOOL: Final = "demo-tools__lookup_order"  # how the gateway offers the built-in app's tool to the model
AGENT_ARGS: Final = json.dumps({"order_id": "A-1001"}, separators=(",", ":"))
AGENT_QUESTION: Final = "Where is my order A-1001?"

_MCP_CALL = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "lookup_order", "arguments": {"order_id": "A-1001"}},
    },
    separators=(",", ":"),
)


def _agent_tool(base: str) -> str:
    tool = {"type": "mcp", "server_label": "demo-tools", "server_url": f"{base}/v1/mcp/demo-tools"}
    return json.dumps({**tool, "require_approval": "never"})


def banner(base: str, admin_key: str, seeded: dict[str, str], funds_usd: int, limits: dict[str, int]) -> str:
    key = seeded["end_user_key"]
    rpm, tpm, rpd = (f"{limits[name]:,}" for name in ("rpm_limit", "tpm_limit", "rpd_limit"))
    return f"""
Tollway demo is running on {base} (SQLite, fake upstream, wallet funded with ${funds_usd}, 30 days of usage)

  console      : {base}/console   (sign in with the platform key below; the other keys work too)
  operator key : {admin_key}
  platform id  : {seeded["platform_id"]}
  platform key : {seeded["platform_key"]}
  end user     : demo-user, monthly budget $5; {rpm} requests/min, {tpm} tokens/min, {rpd} requests/day
                 (answers carry x-ratelimit-* headers; past the limits: 429, past the budget: 402)
  end-user key : {key}
  models       : gpt-4o-mini (canned answer, or JSON following your response_format schema),
                 echo (repeats your last message), reasoner (reasons first, then echoes),
                 tools (calls get_weather, answers once you send the tool's result back),
                 agent (answers with an MCP tool), asi1-mini (an ASI:One-style provider),
                 gpt-image-1 (images, $0.04 each), text-embedding-3-small (embeddings),
                 omni-moderation-latest (moderations, free)

curl (-i shows the x-ratelimit-* headers):
  curl -si {base}/v1/chat/completions -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "echo", "messages": [{{"role": "user", "content": "Hello, Tollway!"}}]}}'
  curl -s {base}/v1/embeddings -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "text-embedding-3-small", "input": "Hello, Tollway!"}}'

Python (openai SDK):
  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  reply = client.chat.completions.create(model="echo", messages=[{{"role": "user", "content": "Hello, Tollway!"}}])
  print(reply.choices[0].message.content)

  # Tools: the model asks for get_weather; send the result back and it answers with it.
  tools = [{{"type": "function", "function": {{"name": "get_weather", "parameters": {{"type": "object"}}}}}}]
  messages = [{{"role": "user", "content": "Weather in Paris?"}}]
  asked = client.chat.completions.create(model="tools", messages=messages, tools=tools).choices[0].message
  messages += [asked.model_dump(exclude_none=True),
               {{"role": "tool", "tool_call_id": asked.tool_calls[0].id, "content": "18 C, sunny"}}]
  print(client.chat.completions.create(model="tools", messages=messages, tools=tools).choices[0].message.content)

  # Structured output, reasoning, images, an ASI:One-style model:
  schema = {{"type": "object", "properties": {{"city": {{"type": "string"}}}}, "required": ["city"]}}
  fmt = {{"type": "json_schema", "json_schema": {{"name": "city", "schema": schema}}}}
  client.chat.completions.create(model="gpt-4o-mini", messages=messages[:1], response_format=fmt)
  client.responses.create(model="reasoner", input="Hello!", reasoning={{"summary": "auto"}})
  client.images.generate(model="gpt-image-1", prompt="a lighthouse at dusk")
  client.chat.completions.create(model="asi1-mini", messages=messages[:1], extra_headers={{"x-session-id": "demo"}})

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
    -d '{{"model": "agent", "input": "{AGENT_QUESTION}", "tools": [{_agent_tool(base)}]}}'

Python (openai SDK):
  reply = client.responses.create(model="agent", input="{AGENT_QUESTION}",
                                  tools=[{_agent_tool(base)}])
  print(reply.output_text)

Budget: curl -s {base}/v1/me/budget -H "Authorization: Bearer {key}"
Usage log: curl -s {base}/v1/platforms/{seeded["platform_id"]}/logs -H "Authorization: Bearer {seeded["platform_key"]}"
Press Ctrl+C to stop.
"""
