"""The Node clients: the `openai` package (chat, streaming) and the Vercel AI SDK (`ai` with `@ai-sdk/openai`, over
chat completions and over the Responses API, streamed). Pinned in tests/clients/node/package-lock.json; `.ci/run`
installs node and runs `npm ci` there. Without node they are skipped loudly, except where TOLLWAY_REQUIRE_NODE=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from tests.clients.conftest import Account

NODE_DIR = Path(__file__).with_name("node")


def _node() -> str:
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "openai").is_dir() and (NODE_DIR / "node_modules" / "ai").is_dir()
    if node is not None and installed:
        return node
    message = "node or tests/clients/node/node_modules missing (run `npm ci` there): Node client tests are SKIPPED"
    if os.environ.get("TOLLWAY_REQUIRE_NODE") == "1":
        pytest.fail(message.replace("are SKIPPED", "cannot run, but TOLLWAY_REQUIRE_NODE=1"))
    warnings.warn(message, pytest.PytestWarning, stacklevel=2)
    pytest.skip(message)


@pytest.mark.parametrize(
    ("scenario", "request_type"),
    [
        ("openai-chat", "chat.completion"),
        ("openai-stream", "chat.completion"),
        ("ai-chat", "chat.completion"),
        ("ai-stream-responses", "response"),
    ],
)
def test_node_client(account: Account, scenario: str, request_type: str) -> None:
    env = {**os.environ, "TOLLWAY_BASE_URL": account.base_url, "TOLLWAY_API_KEY": account.key}
    done = subprocess.run(
        [_node(), "matrix.mjs", scenario], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["text"] == "Hello from Node"
    [row] = account.rows(1)
    assert row["request_type"] == request_type
    assert (seen["input"], seen["output"]) == (row["prompt_tokens"], row["completion_tokens"]) == (7, 5)
    account.assert_billed([row])
