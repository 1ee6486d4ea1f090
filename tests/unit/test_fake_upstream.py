"""The fake upstream, over real loopback sockets: its wire formats checked against the official SDKs' own types and
clients (openai, anthropic, google-genai), every model-string scenario, the HTTP edge cases (pipelining,
100-continue, HTTP/1.0), and the CLI.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import anthropic
import openai
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from tollway.fake_upstream.asi1 import EXECUTED_RECORD
from tollway.fake_upstream.embeddings import fake_prompt_tokens, fake_vector
from tollway.fake_upstream.responses import build_completion
from tollway.fake_upstream.routes import RecordedRequest, RequestLog
from tollway.fake_upstream.scenarios import (
    DEFAULT_CONTENT,
    ScenarioError,
    count_prompt_tokens,
    parse_model,
    split_pieces,
)
from tollway.fake_upstream.server import FakeUpstream, FakeUpstreamThread, start_fake_upstream
from tollway.providers.asi1 import translate as asi1_translate

AUTH = {"Authorization": "Bearer sk-test"}
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there, fake!"}]
HELLO_PROMPT_TOKENS = (len("Be brief.Hi there, fake!") + 3) // 4 + 3 * 2
DEFAULT_PIECES = ["Hello!", " I", " am", " a", " fake", " model."]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with await start_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sdk(fake: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


async def post(
    http: aiohttp.ClientSession, fake: FakeUpstream, body: dict[str, Any], headers: dict[str, str] = AUTH
) -> tuple[int, dict[str, str], bytes]:
    async with http.post(f"{fake.base_url}/chat/completions", json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def complete(http: aiohttp.ClientSession, fake: FakeUpstream, model: str, **extra: Any) -> dict[str, Any]:
    status, _, raw = await post(http, fake, {"model": model, "messages": HELLO, **extra})
    assert status == 200, raw
    payload: dict[str, Any] = orjson.loads(raw)
    ChatCompletion.model_validate(payload)
    return payload


def sse_data(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\n\n"), raw[-50:]
    events = raw[:-2].split(b"\n\n")
    assert all(event.startswith(b"data: ") for event in events)
    return [event[len(b"data: ") :] for event in events]


async def stream(http: aiohttp.ClientSession, fake: FakeUpstream, model: str, **extra: Any) -> list[dict[str, Any]]:
    status, headers, raw = await post(http, fake, {"model": model, "messages": HELLO, "stream": True, **extra})
    assert status == 200, raw
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Transfer-Encoding"] == "chunked"
    *data, done = sse_data(raw)
    assert done == b"[DONE]"
    chunks = [orjson.loads(d) for d in data]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


async def read_into(response: aiohttp.ClientResponse, received: bytearray) -> None:
    async for data in response.content.iter_any():
        received += data


def streamed_content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# Pure parts: model strings, token counting, the request log.


def test_parse_model_reads_the_name_and_url_decoded_parameters() -> None:
    assert parse_model("gpt-4o-mini").kind == "default"
    assert parse_model("fake/slow?ms=2000").delay_ms == 2000
    assert parse_model("echo").kind == parse_model("fake/echo").kind == "echo"
    tool = parse_model('fake/tool-call?name=get_weather&args={"city":"Paris"}')
    assert (tool.kind, tool.tool_name, tool.tool_args) == ("tool-call", "get_weather", '{"city":"Paris"}')
    assert parse_model("fake/tool-call?args=%7B%22q%22%3A%22a%26b%22%7D").tool_args == '{"q":"a&b"}'
    assert parse_model("fake/stream-cut").cut_after == 0
    assert parse_model("fake/words").words == 16
    usage = parse_model("fake/usage?in=5&out=6&cached=2&reasoning=1&ms=10")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (5, 6, 2, 1)


@pytest.mark.parametrize(
    "model", ["fake/echo?delay=5", "fake/slow?ms=abc", "fake/slow?ms=-1", "fake/error?status=200", "fake/x?n=1.5"]
)
def test_parse_model_rejects_typos_and_bad_values(model: str) -> None:
    with pytest.raises(ScenarioError):
        parse_model(model)


@pytest.mark.parametrize("text", [DEFAULT_CONTENT, "", "   ", " lead", "trail \n", "a  b\tc", "é ü 日本"])
def test_split_pieces_keeps_whitespace_and_joins_back(text: str) -> None:
    assert "".join(split_pieces(text)) == text
    assert split_pieces(DEFAULT_CONTENT) == DEFAULT_PIECES


def test_count_prompt_tokens_is_bytes_over_four_plus_three_per_message() -> None:
    parts = [
        {"type": "text", "text": "abc"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "de"},
    ]
    messages = [{"role": "user", "content": "é"}, {"role": "user", "content": parts}, {"role": "tool", "content": None}]
    assert count_prompt_tokens(messages) == (2 + 5 + 3) // 4 + 9


def test_request_log_is_bounded_but_keeps_counting() -> None:
    log = RequestLog(max_recorded=3)
    for i in range(5):
        log.record(RecordedRequest("GET", f"/{i}", "", {}, None))
    assert [r.path for r in log.requests] == ["/2", "/3", "/4"]
    assert log.count == 5
    log.reset()
    assert (log.requests, log.count) == ([], 0)


# The wire format, read raw and validated with the SDK's types.


async def test_default_answer_is_an_openai_chat_completion(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    payload = await complete(http, fake, "gpt-4o-mini")
    assert list(payload) == ["id", "object", "created", "model", "choices", "usage", "system_fingerprint"]
    assert payload["id"].startswith("chatcmpl-")
    assert (payload["object"], payload["model"], payload["system_fingerprint"]) == (
        "chat.completion",
        "gpt-4o-mini",
        "fp_fake",
    )
    assert abs(payload["created"] - time.time()) < 5
    assert payload["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_CONTENT, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert payload["usage"] == {
        "prompt_tokens": HELLO_PROMPT_TOKENS,
        "completion_tokens": len(DEFAULT_PIECES),
        "total_tokens": HELLO_PROMPT_TOKENS + len(DEFAULT_PIECES),
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def test_echo_n_choices_and_length(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    echo = await complete(http, fake, "fake/echo", n=3)
    assert [c["message"]["content"] for c in echo["choices"]] == ["Hi there, fake!"] * 3
    assert [c["index"] for c in echo["choices"]] == [0, 1, 2]
    assert echo["usage"]["completion_tokens"] == 3 * 3
    length = await complete(http, fake, "fake/length")
    assert length["choices"][0]["finish_reason"] == "length"
    words = await complete(http, fake, "fake/words?n=5")
    assert words["choices"][0]["message"]["content"] == "w1 w2 w3 w4 w5"


@pytest.mark.parametrize("limit_key", ["max_tokens", "max_completion_tokens"])
async def test_token_limit_truncates_with_finish_reason_length(
    fake: FakeUpstream, http: aiohttp.ClientSession, limit_key: str
) -> None:
    payload = await complete(http, fake, "fake/default", **{limit_key: 2})
    assert payload["choices"][0]["message"]["content"] == "Hello! I"
    assert (payload["choices"][0]["finish_reason"], payload["usage"]["completion_tokens"]) == ("length", 2)
    chunks = await stream(http, fake, "fake/default", **{limit_key: 2})
    assert streamed_content(chunks) == "Hello! I"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    roomy = await complete(http, fake, "fake/default", **{limit_key: 6})
    assert roomy["choices"][0]["finish_reason"] == "stop"


async def test_usage_parameters_and_no_usage(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    payload = await complete(http, fake, "fake/usage?in=5&out=6&cached=2&reasoning=1")
    assert payload["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 6,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 1},
    }
    assert "usage" not in await complete(http, fake, "fake/echo?no_usage=1")
    chunks = await stream(http, fake, "fake/echo?no_usage=1", stream_options={"include_usage": True})
    assert all(c["choices"] and c.get("usage") is None for c in chunks)


@pytest.mark.parametrize(
    "model", ["gpt-4o", "fake/echo", "fake/words?n=7", "fake/usage?in=5&out=6&cached=2&reasoning=1"]
)
@pytest.mark.parametrize("n", [1, 2])
async def test_stream_agrees_with_non_stream(
    fake: FakeUpstream, http: aiohttp.ClientSession, model: str, n: int
) -> None:
    full = await complete(http, fake, model, n=n)
    chunks = await stream(http, fake, model, n=n, stream_options={"include_usage": True})
    *content_chunks, usage_chunk = chunks
    assert [c["choices"][0]["delta"] for c in content_chunks[:n]] == [{"role": "assistant", "content": ""}] * n
    for index in range(n):
        mine = [c["choices"][0] for c in content_chunks if c["choices"][0]["index"] == index]
        assert "".join(ch["delta"].get("content", "") for ch in mine) == full["choices"][index]["message"]["content"]
        assert [ch["finish_reason"] for ch in mine][-2:] == [None, "stop"]
    assert all(c["usage"] is None for c in content_chunks)
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == full["usage"]
    assert len({c["id"] for c in chunks}) == 1
    plain = await stream(http, fake, model, n=n)
    assert all("usage" not in c for c in plain)
    assert [c["choices"] for c in plain] == [c["choices"] for c in content_chunks]


async def test_tool_call_non_stream_and_stream(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    model = 'fake/tool-call?name=get_weather&args={"city":"Paris"}'
    payload = await complete(http, fake, model)
    choice = payload["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_fake_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    ]
    chunks = await stream(http, fake, model, stream_options={"include_usage": True})
    first = chunks[0]["choices"][0]["delta"]["tool_calls"]
    assert first == [
        {"index": 0, "id": "call_fake_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    ]
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-2]]
    assert all(set(f) == {"index", "function"} for f in fragments)
    assert "".join(f["function"]["arguments"] for f in fragments) == '{"city":"Paris"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == payload["usage"]
    assert payload["usage"]["completion_tokens"] == len(fragments)


async def test_error_scenarios(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "fake/error?status=429&retry_after=7", "messages": HELLO}
    status, headers, raw = await post(http, fake, body)
    assert (status, headers["Retry-After"]) == (429, "7")
    error = orjson.loads(raw)["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    status, _, raw = await post(http, fake, {"model": "fake/error?status=429&type=insufficient_quota", "messages": []})
    assert status == 429
    assert orjson.loads(raw)["error"]["code"] == orjson.loads(raw)["error"]["type"] == "insufficient_quota"
    status, _, raw = await post(http, fake, {"model": "fake/error", "messages": [], "stream": True})
    assert (status, orjson.loads(raw)["error"]["type"]) == (500, "server_error")


async def test_error_times_fails_the_first_calls_per_model_string(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"model": "fake/error?status=503&times=2", "messages": HELLO}
    other = {"model": "fake/error?status=503&times=1", "messages": HELLO}
    assert [(await post(http, fake, body))[0] for _ in range(3)] == [503, 503, 200]
    assert [(await post(http, fake, other))[0] for _ in range(2)] == [503, 200]
    fake.reset()
    assert (await post(http, fake, body))[0] == 503


async def test_delays(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    await complete(http, fake, "fake/echo?ms=60")
    assert time.monotonic() - started >= 0.06
    started = time.monotonic()
    chunks = await stream(http, fake, "fake/words?n=3&delay_ms=20")
    assert time.monotonic() - started >= 0.02 * (len(chunks) - 1)
    assert streamed_content(chunks) == "w1 w2 w3"


async def test_stream_cut_drops_the_connection(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "fake/stream-cut?after=3", "messages": HELLO, "stream": True}
    received = bytearray()
    async with http.post(f"{fake.base_url}/chat/completions", json=body, headers=AUTH) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_into(response, received)
    chunks = [orjson.loads(d) for d in sse_data(bytes(received))]
    assert streamed_content(chunks) == "Hello! I am"
    assert len(chunks) == 1 + 3
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(http, fake, {"model": "fake/stream-cut", "messages": HELLO})


async def test_garbage(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    status, _, raw = await post(http, fake, {"model": "fake/garbage", "messages": HELLO})
    assert status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    status, _, raw = await post(http, fake, {"model": "fake/garbage", "messages": HELLO, "stream": True})
    first, done = sse_data(raw)
    assert status == 200
    assert done == b"[DONE]"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(first)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"messages": HELLO}, "missing_required_parameter", "model"),
        ({"model": "fake/echo"}, "missing_required_parameter", "messages"),
        ({"model": "fake/echo?dealy_ms=5", "messages": HELLO}, "invalid_fake_model", "model"),
    ],
)
async def test_bad_requests_get_400(
    fake: FakeUpstream, http: aiohttp.ClientSession, body: dict[str, Any], code: str, param: str
) -> None:
    status, _, raw = await post(http, fake, body)
    assert status == 400
    error = orjson.loads(raw)["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


async def test_non_json_body_unknown_control_route_and_non_stream_stream_error(
    fake: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{fake.base_url}/chat/completions", data=b"{not json", headers=AUTH) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (400, "invalid_json")
    assert fake.requests[-1].body is None
    async with http.get(f"{fake.base_url.removesuffix('/v1')}/_fake/nope") as r:
        assert r.status == 404
    status, _, raw = await post(http, fake, {"model": "fake/stream-error?status=502", "messages": HELLO})
    assert (status, orjson.loads(raw)["error"]["code"]) == (502, "server_error")


async def test_auth_routes_and_404(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    root = fake.base_url.removesuffix("/v1")
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        status, _, raw = await post(http, fake, {"model": "fake/echo", "messages": HELLO}, headers)
        assert status == 401
        assert orjson.loads(raw)["error"] | {"message": ""} == {
            "message": "",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": None,
        }
    async with http.post(f"{root}/chat/completions", json={"model": "fake/echo", "messages": HELLO}, headers=AUTH) as r:
        assert r.status == 200
    async with http.get(f"{fake.base_url}/models", headers=AUTH) as r:
        models = await r.json()
        assert "fake/echo" in {m["id"] for m in models["data"]}
    for method, path in [("GET", "/v1/chat/completions"), ("POST", "/v1/audio/speech"), ("GET", "/")]:
        async with http.request(method, f"{root}{path}", headers=AUTH) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "unknown_url"


async def test_recording_and_control_endpoints(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    await complete(http, fake, "fake/echo")
    await post(http, fake, {"model": "fake/echo", "messages": HELLO}, {"X-Custom": "Yes"})
    first, second = fake.requests
    assert (first.method, first.path, first.body["model"]) == ("POST", "/v1/chat/completions", "fake/echo")
    assert first.headers["authorization"] == "Bearer sk-test"
    assert second.headers["x-custom"] == "Yes"
    root = fake.base_url.removesuffix("/v1")
    async with http.get(f"{root}/_fake/requests") as r:
        recorded = await r.json()
    assert recorded["count"] == fake.request_count == 2
    assert recorded["requests"][0]["body"] == {"model": "fake/echo", "messages": HELLO}
    async with http.post(f"{root}/_fake/reset") as r:
        assert r.status == 200
    assert (fake.requests, fake.request_count) == ([], 0)


def test_replies_in_flight_counts_paced_streams_until_their_client_hangs_up() -> None:
    """What the fault suite reads to see that a stream cut by its client closed its upstream request too."""
    body = orjson.dumps({"model": "fake/words?n=50&delay_ms=100", "messages": HELLO, "stream": True})

    async def hang_up(fake: FakeUpstreamThread) -> list[int]:
        seen = [fake.replies_in_flight]
        reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test\r\n"
        writer.write(f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await reader.readuntil(b"data: ")  # the first event
        seen.append(fake.replies_in_flight)
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if fake.replies_in_flight == 0:
                break
            await asyncio.sleep(0.01)
        seen.append(fake.replies_in_flight)
        return seen

    with FakeUpstreamThread() as fake:
        assert asyncio.run(hang_up(fake)) == [0, 1, 0]


# HTTP/1.1 details, on raw sockets.


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read one Content-Length response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, await reader.readexactly(int(headers.get("content-length", "0")))


def raw_request(body: dict[str, Any], extra: str = "", version: str = "1.1") -> bytes:
    data = orjson.dumps(body)
    head = f"POST /v1/chat/completions HTTP/{version}\r\nHost: x\r\nAuthorization: Bearer k\r\n{extra}"
    return f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data


async def test_pipelined_requests_are_answered_in_order_and_recording_is_bounded(fake: FakeUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    slow = raw_request({"model": "fake/echo?ms=30", "messages": [{"role": "user", "content": "first"}]})
    fast = [
        raw_request({"model": "fake/echo", "messages": [{"role": "user", "content": f"m{i}"}]}) for i in range(1001)
    ]
    writer.write(slow + b"".join(fast))
    contents = []
    for _ in range(1002):
        status, _, body = await read_response(reader)
        assert status == 200
        contents.append(orjson.loads(body)["choices"][0]["message"]["content"])
    assert contents == ["first"] + [f"m{i}" for i in range(1001)]
    assert fake.request_count == 1002
    assert len(fake.requests) == 1000
    assert fake.requests[-1].body["messages"][0]["content"] == "m1000"
    writer.close()
    await writer.wait_closed()


async def test_expect_continue_http10_and_malformed_requests(fake: FakeUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    request = raw_request({"model": "fake/echo", "messages": HELLO}, "Expect: 100-continue\r\n")
    head, body = request.split(b"\r\n\r\n", 1)
    writer.write(head + b"\r\n\r\n")
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    assert (await read_response(reader))[0] == 200
    writer.write(raw_request({"model": "fake/echo", "messages": HELLO, "stream": True}, version="1.0"))
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert b"data: [DONE]\n\n" in await reader.read()  # an HTTP/1.0 stream ends by closing the connection
    writer.close()
    await writer.wait_closed()
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    assert (await read_response(reader))[0] == 400
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_close_drops_idle_and_streaming_connections() -> None:
    upstream = await start_fake_upstream()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", upstream.port)
    writer.write(raw_request({"model": "fake/words?n=50&delay_ms=1000", "messages": HELLO, "stream": True}))
    await reader.readuntil(b"\r\n\r\n")
    await upstream.close()
    async with asyncio.timeout(2):  # both see end-of-file at once, the stream without its final chunk
        assert await idle_reader.read() == b""
        assert not (await reader.read()).endswith(b"0\r\n\r\n")
    for w in (idle_writer, writer):
        w.close()
        await w.wait_closed()


async def test_client_disconnect_mid_stream_is_harmless(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "fake/words?n=20&delay_ms=50", "messages": HELLO, "stream": True}
    async with http.post(f"{fake.base_url}/chat/completions", json=body, headers=AUTH) as response:
        await response.content.readuntil(b"\n\n")
        response.close()
    await asyncio.sleep(0.06)
    assert (await complete(http, fake, "fake/echo"))["choices"][0]["message"]["content"] == "Hi there, fake!"


# The official openai SDK as the client.


async def test_sdk_non_stream(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "Ping"}])
    assert completion.choices[0].message.content == "Ping"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 1
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 0


@pytest.mark.parametrize("include_usage", [True, False])
async def test_sdk_stream(sdk: openai.AsyncOpenAI, include_usage: bool) -> None:
    chunks = [
        chunk
        async for chunk in await sdk.chat.completions.create(
            model="fake/default",
            messages=[{"role": "user", "content": "Ping"}],
            stream=True,
            stream_options={"include_usage": include_usage},
        )
    ]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_CONTENT
    if include_usage:
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == len(DEFAULT_PIECES)
    else:
        assert all(c.usage is None and c.choices for c in chunks)


async def test_sdk_tool_call(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model='fake/tool-call?name=get_weather&args={"city":"Paris"}', messages=[{"role": "user", "content": "?"}]
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.type == "function"
    assert (call.id, call.function.name, call.function.arguments) == ("call_fake_1", "get_weather", '{"city":"Paris"}')


@pytest.mark.parametrize(
    ("status", "error_class", "code"),
    [
        (400, openai.BadRequestError, "invalid_request"),
        (401, openai.AuthenticationError, "invalid_api_key"),
        (403, openai.PermissionDeniedError, "permission_denied"),
        (404, openai.NotFoundError, "model_not_found"),
        (409, openai.ConflictError, "conflict"),
        (422, openai.UnprocessableEntityError, "unprocessable_entity"),
        (429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "service_unavailable"),
    ],
)
async def test_sdk_raises_the_class_for_the_status(
    sdk: openai.AsyncOpenAI, status: int, error_class: type[openai.APIStatusError], code: str
) -> None:
    with pytest.raises(error_class) as caught:
        await sdk.chat.completions.create(model=f"fake/error?status={status}", messages=[])
    assert (caught.value.status_code, caught.value.code) == (status, code)


async def test_sdk_retries_through_transient_errors(fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=2) as client:
        completion = await client.chat.completions.create(
            model="fake/error?status=429&times=2&retry_after_ms=1", messages=[]
        )
    assert completion.choices[0].message.content == DEFAULT_CONTENT
    assert fake.request_count == 3


async def collect(chunks: openai.AsyncStream[ChatCompletionChunk], into: list[ChatCompletionChunk]) -> None:
    async for chunk in chunks:
        into.append(chunk)


async def test_sdk_stream_cut_and_mid_stream_error(sdk: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "?"}]
    received: list[ChatCompletionChunk] = []
    cut = await sdk.chat.completions.create(model="fake/stream-cut?after=2", messages=messages, stream=True)
    with pytest.raises(openai.APIConnectionError):
        await collect(cut, received)
    assert [c.choices[0].delta.content for c in received] == ["", "Hello!", " I"]
    with pytest.raises(openai.APIConnectionError):
        await sdk.chat.completions.create(model="fake/stream-cut", messages=messages)
    received.clear()
    failing = await sdk.chat.completions.create(model="fake/stream-error?after=2", messages=messages, stream=True)
    with pytest.raises(openai.APIError, match="mid-stream") as caught:
        await collect(failing, received)
    assert len(received) == 3
    assert caught.value.type == "server_error"


def test_thread_runner_with_the_sync_sdk() -> None:
    with FakeUpstreamThread() as fake, openai.OpenAI(base_url=fake.base_url, api_key="sk-test") as client:
        completion = client.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "Hi"}])
        assert completion.choices[0].message.content == "Hi"
        assert fake.request_count == 1
        assert fake.requests[0].headers["authorization"] == "Bearer sk-test"
        fake.reset()
        assert fake.request_count == 0
    assert fake.requests == []  # still readable after the thread stopped
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeUpstreamThread().base_url


def test_cli_serves_until_sigterm() -> None:
    command = [sys.executable, "-m", "tollway.fake_upstream", "--port", "0"]
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("fake upstream listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0) as client:
            completion = client.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "Yo"}])
        assert completion.choices[0].message.content == "Yo"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert (process.returncode, stderr) == (0, "")


# Every other wire format: Anthropic and Gemini checked with their official SDKs' types and clients, ASI:One's
# new shape with the openai SDK's types and its old shape through Tollway's normaliser.

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
GEMINI_HEADERS = {"x-goog-api-key": "k"}
TOOL_MODEL = 'fake/tool-call?name=get_weather&args={"city":"Paris"}'


async def post_to(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, bytes]:
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.read()


def anthropic_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "system": "Be brief.", "messages": [HELLO[1]], **extra}


def anthropic_events(raw: bytes) -> list[dict[str, Any]]:
    """Each SSE event as ``event:`` name + data; the names must match the data's type."""
    events = []
    for block in raw.strip().split(b"\n\n"):
        name, data = block.split(b"\n", 1)
        event = orjson.loads(data.removeprefix(b"data: "))
        assert name == b"event: " + event["type"].encode()
        if event["type"] == "error":
            anthropic.types.ErrorResponse.model_validate(event)
        elif event["type"] != "ping":
            EVENT_ADAPTER.validate_python(event)
        events.append(event)
    return events


async def test_anthropic_messages(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url = fake.dialect_base_url("anthropic") + "/v1/messages"
    status, raw = await post_to(
        http, url, anthropic_body("fake/usage?in=9&out=4&cached=3&thought=hm"), ANTHROPIC_HEADERS
    )
    message = anthropic.types.Message.model_validate_json(raw)
    assert status == 200 and message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (6, 3, 4)
    assert message.usage.cache_creation_input_tokens == 0
    _, raw = await post_to(http, url, anthropic_body("fake/usage?in=9&out=4&cached=3&cache_write=2"), ANTHROPIC_HEADERS)
    written = anthropic.types.Message.model_validate_json(raw).usage
    assert (written.input_tokens, written.cache_read_input_tokens, written.cache_creation_input_tokens) == (4, 3, 2)
    _, raw = await post_to(http, url, anthropic_body(TOOL_MODEL), ANTHROPIC_HEADERS)
    tool = anthropic.types.Message.model_validate_json(raw)
    assert tool.stop_reason == "tool_use"
    assert tool.content[0].type == "tool_use" and tool.content[0].input == {"city": "Paris"}
    _, raw = await post_to(http, url, anthropic_body("fake/echo", max_tokens=3), ANTHROPIC_HEADERS)
    assert anthropic.types.Message.model_validate_json(raw).stop_reason == "end_turn"
    _, raw = await post_to(http, url, anthropic_body("fake/default", max_tokens=2), ANTHROPIC_HEADERS)
    assert anthropic.types.Message.model_validate_json(raw).stop_reason == "max_tokens"


async def test_anthropic_stream_events(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url = fake.dialect_base_url("anthropic") + "/v1/messages"
    _, raw = await post_to(http, url, anthropic_body("fake/echo?thought=hm", stream=True), ANTHROPIC_HEADERS)
    events = anthropic_events(raw)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"] and "ping" in kinds
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == "hm"
    assert "".join(d.get("text", "") for d in deltas) == "Hi there, fake!"
    _, raw = await post_to(http, url, anthropic_body(TOOL_MODEL, stream=True), ANTHROPIC_HEADERS)
    deltas = [e["delta"] for e in anthropic_events(raw) if e["type"] == "content_block_delta"]
    assert orjson.loads("".join(d["partial_json"] for d in deltas)) == {"city": "Paris"}
    _, raw = await post_to(http, url, anthropic_body("fake/stream-error?after=1", stream=True), ANTHROPIC_HEADERS)
    assert anthropic_events(raw)[-1]["error"]["type"] == "api_error"


async def test_anthropic_errors_and_headers(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url = fake.dialect_base_url("anthropic") + "/v1/messages"
    for status, kind in [(400, "invalid_request_error"), (429, "rate_limit_error"), (529, "overloaded_error")]:
        got, raw = await post_to(http, url, anthropic_body(f"fake/error?status={status}"), ANTHROPIC_HEADERS)
        error = anthropic.types.ErrorResponse.model_validate_json(raw)
        assert (got, error.error.type) == (status, kind)
    assert (await post_to(http, url, anthropic_body("fake/echo"), {"anthropic-version": "2023-06-01"}))[0] == 401
    assert (await post_to(http, url, anthropic_body("fake/echo"), {"x-api-key": "k"}))[0] == 400


async def test_anthropic_sdk_client(fake: FakeUpstream) -> None:
    async with anthropic.AsyncAnthropic(base_url=fake.root_url, api_key="k", max_retries=0) as client:
        message = await client.messages.create(model="fake/echo", max_tokens=50, messages=[HELLO[1]])
        assert message.content[0].type == "text" and message.content[0].text == "Hi there, fake!"
        async with client.messages.stream(model=TOOL_MODEL, max_tokens=50, messages=[HELLO[1]]) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Paris"}
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model="fake/error?status=429", max_tokens=5, messages=[HELLO[1]])


def gemini_body(**config: Any) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": "Hi there, fake!"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": config,
    }


def gemini_url(fake: FakeUpstream, model: str, method: str = "generateContent") -> str:
    return f"{fake.dialect_base_url('gemini')}/v1beta/models/{quote(model, safe='')}:{method}"


async def test_gemini_generate_content(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    model = "fake/usage?in=9&out=4&cached=3&reasoning=1&thought=hm"
    status, raw = await post_to(http, gemini_url(fake, model), gemini_body(candidateCount=2), GEMINI_HEADERS)
    response = types.GenerateContentResponse.model_validate_json(raw)
    assert status == 200 and response.candidates is not None and len(response.candidates) == 2
    parts = response.candidates[0].content.parts if response.candidates[0].content else None
    assert parts is not None and (parts[0].thought, parts[0].text) == (True, "hm")
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count, usage.thoughts_token_count) == (9, 3, 1)
    assert usage.cached_content_token_count == 3
    _, raw = await post_to(http, gemini_url(fake, TOOL_MODEL), gemini_body(), GEMINI_HEADERS)
    call = types.GenerateContentResponse.model_validate_json(raw).function_calls
    assert call is not None and (call[0].name, call[0].args) == ("get_weather", {"city": "Paris"})
    _, raw = await post_to(http, gemini_url(fake, "fake/default"), gemini_body(maxOutputTokens=2), GEMINI_HEADERS)
    limited = types.GenerateContentResponse.model_validate_json(raw)
    assert limited.candidates is not None and limited.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS


async def test_gemini_stream_array_and_errors(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    url = gemini_url(fake, "fake/echo", "streamGenerateContent") + "?alt=sse"
    _, raw = await post_to(http, url, gemini_body(), GEMINI_HEADERS)
    assert b"[DONE]" not in raw
    objects = [types.GenerateContentResponse.model_validate_json(e[6:]) for e in raw.strip().split(b"\r\n\r\n")]
    assert "".join(o.text or "" for o in objects) == "Hi there, fake!"
    final = objects[-1]
    assert final.candidates is not None and final.candidates[0].finish_reason == types.FinishReason.STOP
    assert final.usage_metadata is not None and final.usage_metadata.candidates_token_count == 3
    _, raw = await post_to(http, gemini_url(fake, "fake/echo", "streamGenerateContent"), gemini_body(), GEMINI_HEADERS)
    assert [types.GenerateContentResponse.model_validate(o).text for o in orjson.loads(raw)][:1] == ["Hi"]
    status, raw = await post_to(
        http, gemini_url(fake, "fake/error?status=429&type=insufficient_quota"), gemini_body(), GEMINI_HEADERS
    )
    assert status == 429
    assert orjson.loads(raw)["error"] | {"message": ""} == {"code": 429, "message": "", "status": "RESOURCE_EXHAUSTED"}
    assert "quota" in orjson.loads(raw)["error"]["message"]
    assert (await post_to(http, gemini_url(fake, "fake/echo"), gemini_body(), {}))[0] == 403


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_gemini_sdk_client(fake: FakeUpstream) -> None:
    options = types.HttpOptions(base_url=fake.root_url, api_version="v1beta")
    client = genai.Client(api_key="k", http_options=options).aio
    try:
        response = await client.models.generate_content(model="fake/echo", contents="Hello you")
        assert response.text == "Hello you"
        assert fake.requests[-1].headers["x-goog-api-key"] == "k"
        chunks = [c async for c in await client.models.generate_content_stream(model="fake/tool-call", contents="?")]
        assert chunks[0].function_calls is not None and chunks[0].function_calls[0].name == "fake_tool"
        with pytest.raises(genai_errors.ServerError):
            await client.models.generate_content(model="fake/error", contents="x")
    finally:
        await client.aclose()


async def test_asi1_new_and_old_shapes(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "fake/echo?thought=hm", "messages": HELLO, "max_tokens": 0}
    _, raw = await post_to(http, fake.dialect_base_url("asi1") + "/chat/completions", body, AUTH)
    new = orjson.loads(raw)
    ChatCompletion.model_validate(new)
    assert (new["conversation_id"], new["choices"][0]["matched_stop"]) == ("conv_fake", 151336)
    assert new["choices"][0]["message"]["reasoning_content"] == "hm"
    assert new["choices"][0]["message"]["content"] == "Hi there, fake!"  # max_tokens 0: the provider default
    _, raw = await post_to(http, fake.dialect_base_url("asi1-old") + "/chat/completions", body, AUTH)
    old = orjson.loads(raw)
    assert "object" not in old and old["created"] > 10**11
    choice = old["choices"][0]
    assert "index" not in choice and (choice["role"], choice["stop_reason"], choice["finish_reason"]) == (
        "assistant",
        "stop",
        "tool_calls",
    )
    assert choice["message"]["role"] == "user" and choice["message"]["reasoning"] == "hm"
    assert choice["message"]["tool_calls"] == [EXECUTED_RECORD]
    ChatCompletion.model_validate(asi1_translate.normalise_completion(old))


async def test_asi1_old_stream_events(fake: FakeUpstream, http: aiohttp.ClientSession) -> None:
    body = {"model": "fake/echo?thought=hm", "messages": HELLO, "stream": True}
    _, raw = await post_to(http, fake.dialect_base_url("asi1-old") + "/chat/completions", body, AUTH)
    *data, done = sse_data(raw)
    chunks = [orjson.loads(d) for d in data]
    assert done == b"[DONE]"
    assert chunks[0]["init_thought"] and chunks[1]["thought"] == "hm"
    assert not any("object" in c for c in chunks) and all(c["created"] > 10**11 for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[2:]) == "Hi there, fake!"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    called: set[int] = set()
    for chunk in chunks:
        ChatCompletionChunk.model_validate({"choices": [], **asi1_translate.normalise_chunk(chunk, called)})


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_gemini_sdk_embeds_through_batch_embed_contents(fake: FakeUpstream) -> None:
    """The official google-genai SDK reads the fake's batchEmbedContents answer (the real wire format)."""
    options = types.HttpOptions(base_url=fake.root_url, api_version="v1beta")
    client = genai.Client(api_key="k", http_options=options).aio
    try:
        config = types.EmbedContentConfig(output_dimensionality=4)
        response = await client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"], config=config)
        assert [e.values for e in response.embeddings or []] == [fake_vector("a", 4), fake_vector("b", 4)]
        sent = fake.requests[-1]
        assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
        assert sent.headers["x-goog-api-key"] == "k"
    finally:
        await client.aclose()


async def test_gemini_batch_limits_and_model_check(http: aiohttp.ClientSession, fake: FakeUpstream) -> None:
    url = f"{fake.root_url}/v1beta/models/m:batchEmbedContents"
    one = {"model": "models/m", "content": {"parts": [{"text": "x"}]}}
    async with http.post(url, json={"requests": [one] * 101}, headers={"x-goog-api-key": "k"}) as r:
        assert r.status == 400 and "at most 100 requests" in (await r.json())["error"]["message"]
    other = {**one, "model": "models/other"}
    async with http.post(url, json={"requests": [other]}, headers={"x-goog-api-key": "k"}) as r:
        assert r.status == 400 and (await r.json())["error"]["status"] == "INVALID_ARGUMENT"
    async with http.post(url, json={"requests": [one]}) as r:
        assert r.status == 403


async def test_openai_embeddings_and_moderations(sdk: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    floats = await sdk.embeddings.create(model="m", input=["hi", "there"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [fake_vector("hi"), fake_vector("there")]
    assert floats.usage.prompt_tokens == fake_prompt_tokens("hi") + fake_prompt_tokens("there") == 3
    default = await sdk.embeddings.create(model="fake/default?in=42", input=[[1, 2]], dimensions=3)
    assert [d.embedding for d in default.data] == [fake_vector([1, 2], 3)]  # the SDK's base64, decoded
    assert fake.requests[-1].body["encoding_format"] == "base64" and default.usage.prompt_tokens == 42
    with pytest.raises(openai.InternalServerError):
        await sdk.embeddings.create(model="fake/error?status=500", input="x")
    moderation = await sdk.moderations.create(model="omni-moderation-latest", input=["calm", "violence!"])
    assert [r.flagged for r in moderation.results] == [False, True] and moderation.id.startswith("modr-fake")


def test_the_default_answer_follows_a_requested_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"enum": ["C", "F"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {"type": ["null", "boolean"]},
            "kind": {"anyOf": [{"const": "forecast"}, {"type": "string"}]},
        },
    }
    expected = {"city": "example", "days": 1, "unit": "C", "tags": ["example"], "note": True, "kind": "forecast"}
    messages = [{"role": "user", "content": "Weather?"}]
    chat = {"messages": messages, "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    answer = build_completion(parse_model("fake/default"), chat)
    assert orjson.loads("".join(answer.pieces)) == expected
    responses = {"messages": messages, "text": {"format": {"type": "json_schema", "name": "w", "schema": schema}}}
    assert orjson.loads("".join(build_completion(parse_model("fake/default"), responses).pieces)) == expected
    assert "".join(build_completion(parse_model("fake/default"), {"messages": messages}).pieces) == DEFAULT_CONTENT
    json_object = {"messages": messages, "response_format": {"type": "json_object"}}
    assert orjson.loads("".join(build_completion(parse_model("fake/default"), json_object).pieces)) == {}
    # echo keeps echoing: what the conformance suite checks with response_format
    echoed = build_completion(parse_model("fake/echo"), chat)
    assert "".join(echoed.pieces) == "Weather?"
