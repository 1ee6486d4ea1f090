"""The fake upstream's refusals in every dialect it serves (SPEC §3, §14.2): a context-length error, an invalid
request naming a parameter, 429 with and without Retry-After and a quota-exhausted 429, each in the provider's own
error shape, checked against the official SDKs' types and read back by the gateway's own ``read_error``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tollway.fake_upstream.server import FakeUpstream, start_fake_upstream
from tollway.providers.anthropic import translate as anthropic_translate
from tollway.providers.base import Fault
from tollway.providers.gemini import translate as gemini_translate
from tollway.providers.openai import translate as openai_translate

USER = [{"role": "user", "content": "Hi there, fake!"}]


@dataclass(frozen=True)
class Wire:
    """One dialect: where it is posted, the body for a model string, its headers and how the gateway reads it."""

    name: str
    path: Callable[[FakeUpstream, str], str]
    body: Callable[[str], dict[str, Any]]
    headers: dict[str, str]
    read_error: Callable[[object], Fault]


def _chat(dialect: str) -> Callable[[FakeUpstream, str], str]:
    return lambda fake, model: fake.dialect_base_url(dialect) + "/chat/completions"


BEARER = {"Authorization": "Bearer sk-test"}
WIRES = [
    *(
        Wire(d, _chat(d), lambda m: {"model": m, "messages": USER}, BEARER, openai_translate.read_error)
        for d in ("openai", "asi1", "asi1-old")
    ),
    Wire(
        "responses",
        lambda fake, m: fake.dialect_base_url("openai") + "/responses",
        lambda m: {"model": m, "input": "Hi there, fake!"},
        BEARER,
        openai_translate.read_error,
    ),
    Wire(
        "anthropic",
        lambda fake, m: fake.root_url + "/v1/messages",
        lambda m: {"model": m, "max_tokens": 100, "messages": USER},
        {"x-api-key": "k", "anthropic-version": "2023-06-01"},
        anthropic_translate.read_error,
    ),
    Wire(
        "gemini",
        lambda fake, m: f"{fake.root_url}/v1beta/models/{quote(m, safe='')}:generateContent",
        lambda m: {"contents": [{"role": "user", "parts": [{"text": "Hi there, fake!"}]}]},
        {"x-goog-api-key": "k"},
        gemini_translate.read_error,
    ),
    Wire(
        "images",
        lambda fake, m: fake.dialect_base_url("openai") + "/images/generations",
        lambda m: {"model": m, "prompt": "a fox"},
        BEARER,
        openai_translate.read_error,
    ),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with await start_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(http: aiohttp.ClientSession, fake: FakeUpstream, wire: Wire, model: str) -> tuple[int, Any, bytes]:
    async with http.post(wire.path(fake, model), json=wire.body(model), headers=wire.headers) as response:
        return response.status, response.headers, await response.read()


@pytest.mark.parametrize("wire", [w for w in WIRES if w.name != "images"], ids=lambda w: w.name)
async def test_context_length_refusal_in_the_dialects_own_shape(
    fake: FakeUpstream, http: aiohttp.ClientSession, wire: Wire
) -> None:
    status, _, raw = await call(http, fake, wire, "fake/error?status=400&type=context_length_exceeded")
    fault = wire.read_error(orjson.loads(raw))
    assert status == 400 and fault.context_length and fault.message
    error = orjson.loads(raw)["error"]
    if wire.name == "anthropic":
        parsed = anthropic.types.ErrorResponse.model_validate_json(raw)
        assert parsed.error.type == "invalid_request_error"
        assert parsed.error.message == "prompt is too long: 208310 tokens > 200000 maximum"
    elif wire.name == "gemini":
        assert error["status"] == "INVALID_ARGUMENT" and error["message"].startswith("The input token count (")
    else:
        assert (error["code"], error["type"]) == ("context_length_exceeded", "invalid_request_error")
        assert error["param"] == ("input" if wire.name == "responses" else "messages")


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
@pytest.mark.parametrize("status", [400, 422])
async def test_invalid_request_names_the_param_the_dialects_way(
    fake: FakeUpstream, http: aiohttp.ClientSession, wire: Wire, status: int
) -> None:
    got, _, raw = await call(http, fake, wire, f"fake/error?status={status}&param=temperature")
    fault = wire.read_error(orjson.loads(raw))
    assert got == status and (fault.param, fault.context_length) == ("temperature", False)
    error = orjson.loads(raw)["error"]
    if wire.name == "anthropic":
        assert error["message"] == f"temperature: fake upstream: simulated HTTP {status}"
    elif wire.name == "gemini":
        (detail,) = error["details"]
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        assert detail["fieldViolations"][0]["field"] == "temperature"
    else:
        assert error["param"] == "temperature"


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
async def test_429_with_and_without_retry_after_and_quota_exhausted(
    fake: FakeUpstream, http: aiohttp.ClientSession, wire: Wire
) -> None:
    status, headers, _ = await call(http, fake, wire, "fake/error?status=429&retry_after=3")
    assert (status, headers["Retry-After"]) == (429, "3")
    status, headers, _ = await call(http, fake, wire, "fake/error?status=429")
    assert status == 429 and "Retry-After" not in headers
    status, _, raw = await call(http, fake, wire, "fake/error?status=429&type=insufficient_quota")
    # The gateway's quota test (providers/transport.py): "insufficient_quota", or "quota" with "exceeded".
    assert status == 429 and (b"insufficient_quota" in raw or (b"quota" in raw and b"exceeded" in raw))


async def test_the_openai_sdk_reads_the_refusals(fake: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model="fake/error?status=400&type=context_length_exceeded", messages=[]
            )
        assert (err.value.code, err.value.param) == ("context_length_exceeded", "messages")
        with pytest.raises(openai.UnprocessableEntityError) as unprocessable:
            await client.chat.completions.create(model="fake/error?status=422&param=top_p", messages=[])
        assert unprocessable.value.param == "top_p"
