"""``make run`` (``tollway demo``) works on a fresh data directory: keys printed, the example call answers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.console import ConsoleClient
from tests.support.servers import free_port


def _console_shows_the_seeded_month(port: int, platform_key: str) -> None:
    """The printed sign-in key opens the console, whose overview has 30 days of spend to draw."""
    with ConsoleClient(f"http://127.0.0.1:{port}") as console:
        assert console.sign_in(platform_key).status_code == 303
        overview = console.get("/console").text
    days = re.search(r'id="chart-models"[^>]*data-days="([^"]+)"', overview)
    assert days is not None and len(re.findall(r"\d{4}-\d{2}-\d{2}", days.group(1))) == 30
    requests = re.search(r'id="requests-30d">(\d+)<', overview)
    assert requests is not None and int(requests.group(1)) > 300


@dataclass
class Demo:
    port: int
    data_dir: Path
    banner: str
    proc: subprocess.Popen[str]


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    tollway = str(Path(sys.executable).with_name("tollway"))
    return subprocess.Popen(
        [tollway, "demo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo for the module, on the port TOLLWAY_PORT names (no --port)."""
    port, upstream = free_port(), free_port()
    data_dir = tmp_path_factory.mktemp("demo") / "d"
    env = {**os.environ, "TOLLWAY_PORT": str(port)}
    proc = _start(["--upstream-port", str(upstream), "--data-dir", str(data_dir)], env)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("Press Ctrl+C" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        yield Demo(port, data_dir, "".join(lines), proc)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_demo_seeds_and_answers_the_printed_example(demo: Demo) -> None:
    port, banner = demo.port, demo.banner
    key = re.search(r"end-user key : (sk-eu_\S+)", banner)
    platform_key = re.search(r"platform key : (sk-plat_\S+)", banner)
    assert key is not None and platform_key is not None
    assert re.search(rf"console      : http://[0-9.]+:{port}/console ", banner)
    reply = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key.group(1)}"},
        json={"model": "echo", "messages": [{"role": "user", "content": "Hello, Tollway!"}]},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "Hello, Tollway!"
    # demo-user has rate limits of its own: the headers show them (SPEC §10)
    assert reply.headers["x-ratelimit-limit-requests"] == "60"
    assert reply.headers["x-ratelimit-limit-tokens"] == "200000"
    assert int(reply.headers["x-ratelimit-remaining-requests"]) < 60
    assert "60 requests/min, 200,000 tokens/min, 5,000 requests/day" in banner
    curl = re.search(r"curl -s (\S+/v1/embeddings) .*\n\s*-d '(.+)'", banner)
    assert curl is not None, banner
    embedded = httpx.post(
        curl.group(1),
        headers={"Authorization": f"Bearer {key.group(1)}", "Content-Type": "application/json"},
        content=curl.group(2),
        timeout=30,
    )
    assert embedded.status_code == 200, embedded.text
    assert embedded.json()["model"] == "text-embedding-3-small" and len(embedded.json()["data"]) == 1
    moderated = httpx.post(
        f"http://127.0.0.1:{port}/v1/moderations",
        headers={"Authorization": f"Bearer {key.group(1)}"},
        json={"input": "a calm sentence"},
        timeout=30,
    )
    assert moderated.status_code == 200, moderated.text
    assert moderated.json()["model"] == "omni-moderation-latest"
    assert moderated.json()["results"][0]["flagged"] is False
    # The built-in MCP app answers the printed MCP example through the proxy (SPEC §16.3), free within the tier.
    mcp = re.search(r"curl -s (\S+/v1/mcp/demo-tools) .*\n.*\n\s*-d '(.+)'", banner)
    assert mcp is not None, banner
    headers = {
        "Authorization": f"Bearer {key.group(1)}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    called = httpx.post(mcp.group(1), headers=headers, content=mcp.group(2), timeout=30)
    assert called.status_code == 200, called.text
    answer = called.json()["result"]
    assert answer["isError"] is False
    shipped = "Order A-1001 (notebook, pen set) is shipped with DHL, arriving in 2 days."
    assert answer["content"][0]["text"] == shipped
    assert 'mcp.call_tool("get_time"' in banner
    # The printed agent example: the gateway runs the MCP loop through the built-in app (SPEC §16.3).
    agent = re.search(r"curl -s (\S+/v1/responses) .*\n\s*-d '(.+)'", banner)
    assert agent is not None, banner
    answered = httpx.post(agent.group(1), headers=headers, content=agent.group(2), timeout=60)
    assert answered.status_code == 200, answered.text
    response = answered.json()
    assert [item["type"] for item in response["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert response["output"][1]["output"] == shipped
    assert response["output"][2]["content"][0]["text"] == f"The tool returned: {shipped}"
    assert 'client.responses.create(model="agent"' in banner
    budget = httpx.get(f"http://127.0.0.1:{port}/v1/me/budget", headers={"Authorization": f"Bearer {key.group(1)}"})
    assert budget.json()["max_usd"] == 5
    _console_shows_the_seeded_month(port, platform_key.group(1))
    admin_key = re.search(r"operator key : (sk-admin_\S+)", banner)
    assert admin_key is not None
    report = httpx.get(
        f"http://127.0.0.1:{port}/v1/admin/reconcile", headers={"Authorization": f"Bearer {admin_key.group(1)}"}
    ).json()
    assert report["ok"] is True, report


def _end_user_client(demo: Demo) -> openai.OpenAI:
    key = re.search(r"end-user key : (sk-eu_\S+)", demo.banner)
    assert key is not None
    return openai.OpenAI(base_url=f"http://127.0.0.1:{demo.port}/v1", api_key=key.group(1), max_retries=0, timeout=30)


def test_demo_models_show_tools_json_reasoning_images_and_asi1(demo: Demo) -> None:
    with _end_user_client(demo) as client:
        # Tools: a call to get_weather, then, once its result is sent back, an answer with it.
        tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
        asked = client.chat.completions.create(model="tools", messages=messages, tools=tools).choices[0]
        assert asked.finish_reason == "tool_calls" and asked.message.tool_calls is not None
        call = asked.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        messages += [
            asked.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18 C, sunny"},
        ]
        answered = client.chat.completions.create(model="tools", messages=messages, tools=tools).choices[0]
        assert (answered.finish_reason, answered.message.content) == ("stop", "The tool returned: 18 C, sunny")
        # Structured output: JSON that follows the schema asked for.
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}}
        structured = client.chat.completions.create(model="gpt-4o-mini", messages=messages[:1], response_format=fmt)
        assert json.loads(structured.choices[0].message.content or "") == {"city": "example"}
        # Reasoning: the thought comes first, its tokens counted.
        reasoned = client.chat.completions.create(model="reasoner", messages=[{"role": "user", "content": "Hi"}])
        assert (reasoned.choices[0].message.model_extra or {}).get("reasoning_content")
        assert reasoned.usage is not None and reasoned.usage.completion_tokens_details is not None
        assert reasoned.usage.completion_tokens_details.reasoning_tokens == 12
        assert reasoned.usage.completion_tokens == 12 + 1  # the reasoning, then "Hi"
        # Images, priced per image.
        images = client.images.generate(model="gpt-image-1", prompt="a lighthouse at dusk")
        assert images.data and (images.data[0].b64_json or images.data[0].url)
        # An ASI:One-style provider behind a model of its own.
        asi1 = client.chat.completions.create(
            model="asi1-mini", messages=[{"role": "user", "content": "Hello"}], extra_headers={"x-session-id": "demo"}
        )
        assert asi1.choices[0].message.content == "Hello"
        # README: a 402 is the openai SDK's generic status error, its code on the unwrapped body.
        suspended = _set_suspended(demo, True)
        try:
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "Hi"}])
        finally:
            _set_suspended(demo, False)
        assert suspended and type(refused.value) is openai.APIStatusError
        assert refused.value.status_code == 402 and refused.value.code == "budget_suspended"
        assert refused.value.body["code"] == "budget_suspended"  # type: ignore[index]
    for printed in ('model="tools"', 'model="gpt-4o-mini"', 'model="reasoner"', 'model="gpt-image-1"', "asi1-mini"):
        assert printed in demo.banner


def _set_suspended(demo: Demo, value: bool) -> bool:
    platform_id = re.search(r"platform id  : (\S+)", demo.banner)
    platform_key = re.search(r"platform key : (sk-plat_\S+)", demo.banner)
    assert platform_id is not None and platform_key is not None
    base = f"http://127.0.0.1:{demo.port}/v1/platforms/{platform_id.group(1)}/end-users"
    with httpx.Client(headers={"Authorization": f"Bearer {platform_key.group(1)}"}, timeout=30) as client:
        users = client.get(base, params={"external_id": "demo-user"}).json()["data"]
        patched = client.patch(f"{base}/{users[0]['id']}/budget", json={"is_suspended": value})
    assert patched.status_code == 200, patched.text
    return bool(patched.json()["is_suspended"]) is value


def _refused(args: list[str], env: dict[str, str] | None = None) -> str:
    """A demo that must not start: its stderr, once it has exited non-zero."""
    proc = _start(args, env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, out
    return err


def test_a_busy_port_gives_one_line_and_leaves_the_running_demo_alone(demo: Demo, tmp_path: Path) -> None:
    database = demo.data_dir / "tollway.db"
    size = database.stat().st_size
    # The same port, another data directory: one line, no traceback.
    err = _refused(["--port", str(demo.port), "--data-dir", str(tmp_path / "other")])
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"port {demo.port} on 127.0.0.1 is in use" in err and "--port" in err and "TOLLWAY_PORT" in err
    # The same data directory (and port): refused before anything is wiped.
    err = _refused(["--port", str(demo.port), "--data-dir", str(demo.data_dir)])
    assert err.count("\n") == 1 and "another demo is running" in err, err
    # The same data directory on a free port: still refused, the first demo's database kept.
    err = _refused(["--port", str(free_port()), "--data-dir", str(demo.data_dir)])
    assert err.count("\n") == 1 and "another demo is running" in err, err
    assert database.exists() and database.stat().st_size >= size
    models = httpx.get(f"http://127.0.0.1:{demo.port}/healthz", timeout=10)
    assert models.status_code == 200
    err = _refused(["--data-dir", str(tmp_path / "third")], {**os.environ, "TOLLWAY_PORT": "http"})
    assert err.strip() == "tollway: TOLLWAY_PORT: 'http' is not a port number (0-65535)"
