"""``make run`` (``tollway demo``) works on a fresh data directory: keys printed, the example call answers."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


def test_demo_seeds_and_answers_the_printed_example(tmp_path: Path) -> None:
    port, upstream = free_port(), free_port()
    tollway = str(Path(sys.executable).with_name("tollway"))
    args = [tollway, "demo", "--port", str(port), "--upstream-port", str(upstream), "--data-dir", str(tmp_path / "d")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("Press Ctrl+C" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        banner = "".join(lines)
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
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
