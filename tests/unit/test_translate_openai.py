"""The OpenAI dialect (openai, openai_compatible): request payloads per kind and the reduction of completions and
chunks to the documented fields, against golden fixtures (tests/unit/fixtures/openai); and, for every dialect, that
any JSON a provider sends is translated or becomes an upstream error, never a 500."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.golden import candidate, check, load, request, usage_json
from tollway.domain.catalog import ProviderKind
from tollway.domain.upstream import StreamChunk
from tollway.errors import ContextLengthExceeded, UpstreamError, UpstreamInvalidRequest, UpstreamTimeout
from tollway.providers import transport
from tollway.providers.anthropic import translate as anthropic_translate
from tollway.providers.anthropic.events import EventTranslator as AnthropicEvents
from tollway.providers.asi1 import translate as asi1_translate
from tollway.providers.gemini import translate as gemini_translate
from tollway.providers.gemini.events import EventTranslator as GeminiEvents
from tollway.providers.openai import translate
from tollway.providers.streaming import answered

# Keys the translators look at, so that random objects reach their deeper branches.
KEYS = [
    "choices", "message", "delta", "content", "tool_calls", "function", "index", "finish_reason", "usage", "type",
    "text", "candidates", "parts", "functionCall", "usageMetadata", "content_block", "error", "id", "name", "role",
    "prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "promptTokenCount", "thought",
]  # fmt: skip


def feed_all(translator: Any, events: list[Any]) -> list[dict[str, Any]]:
    """Run a stream translator over fixture events (JSON objects, or raw strings such as [DONE])."""
    out: list[StreamChunk] = []
    for event in events:
        data = event.encode() if isinstance(event, str) else orjson.dumps(event)
        out += translator.feed(data)
        if translator.finished:
            break
    else:
        out += translator.end()
    return [_plain(c) for c in out]


def _plain(chunk: StreamChunk) -> dict[str, Any]:
    plain = {"chunk": chunk.chunk, "usage": usage_json(chunk.usage)}
    for key in ("signature", "redacted_thinking", "stop_sequence"):  # provider state beside the hub chunk
        if getattr(chunk, key) is not None:
            plain[key] = getattr(chunk, key)
    return plain


@pytest.mark.parametrize(
    ("case", "kind"),
    [("request_openai", ProviderKind.OPENAI), ("request_compatible", ProviderKind.OPENAI_COMPATIBLE)],
)
def test_request_payload(case: str, kind: ProviderKind) -> None:
    chat = request(load("openai", case)["input"])
    check("openai", case, translate.build_payload(chat, candidate(kind), 300))


def test_openai_gets_max_completion_tokens_and_the_rest_max_tokens() -> None:
    chat = request({"model": "m", "messages": [{"role": "developer", "content": "x"}], "max_tokens": 5})
    sent = translate.build_payload(chat, candidate(ProviderKind.OPENAI), 7)
    assert (sent["max_completion_tokens"], "max_tokens" in sent, sent["messages"][0]["role"]) == (7, False, "developer")
    sent = translate.build_payload(chat, candidate(ProviderKind.OPENAI_COMPATIBLE), 7)
    assert (sent["max_tokens"], sent["messages"][0]["role"]) == (7, "system")


def test_completion_is_reduced_to_documented_fields() -> None:
    choices, usage = translate.normalise_completion(load("openai", "response")["input"], "p")
    check("openai", "response", {"choices": choices, "usage": usage_json(usage)})


def test_stream_chunks() -> None:
    check("openai", "stream", feed_all(translate.ChunkTranslator("p"), load("openai", "stream")["input"]))


@pytest.mark.parametrize(
    "raw",
    [{"choices": []}, {"choices": [{"message": "x"}]}, {"choices": "x"}],
)
def test_malformed_completions_are_upstream_errors(raw: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        translate.normalise_completion(raw, "p")


def test_stream_errors_and_cut() -> None:
    translator = translate.ChunkTranslator("p")
    with pytest.raises(UpstreamError, match="mid-stream: overloaded"):
        translator.feed(b'{"error": {"message": "overloaded"}}')
    with pytest.raises(UpstreamError, match="not JSON"):
        translator.feed(b"<html>")
    with pytest.raises(UpstreamError, match="ended the stream early"):
        translator.end()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 0}, (3, 0, 0, None)),
        ({"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 9}}, (3, 2, 3, None)),
        ({"prompt_tokens": -1, "completion_tokens": 2}, None),
        ({"prompt_tokens": True, "completion_tokens": 2}, None),
        ({"prompt_tokens": 1.0, "completion_tokens": 2}, None),
        (None, None),
    ],
)
def test_usage_validation(raw: Any, expected: tuple[int, int, int, int | None] | None) -> None:
    usage = translate.parse_usage(raw)
    got = (
        None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens)
    )
    assert got == expected


def test_failures_inside_an_answer_carry_its_status() -> None:
    with pytest.raises(UpstreamError) as err, answered(200, "p"):
        raise UpstreamError("not JSON")
    assert err.value.upstream_status == 200  # the provider answered: fall back, do not retry
    with pytest.raises(UpstreamError, match="malformed answer") as err, answered(200, "p"):
        _ = {}["missing"]
    assert err.value.upstream_status == 200
    with pytest.raises(UpstreamTimeout), answered(200, "p"):
        raise UpstreamTimeout("slow")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(raw=st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5))
def test_any_json_shape_is_translated_or_an_upstream_error(raw: dict[str, Any]) -> None:
    """Never a 500: whatever JSON object a provider sends, every translator answers or raises UpstreamError."""
    translators: list[Any] = [
        lambda: translate.normalise_completion(raw, "p"),
        lambda: anthropic_translate.completion_result(raw, "p"),
        lambda: gemini_translate.completion_result(raw, "p"),
        lambda: asi1_translate.completion_result(raw, "p"),
        lambda: translate.ChunkTranslator("p").feed(orjson.dumps(raw)),
        lambda: AnthropicEvents("p").feed(orjson.dumps(raw)),
        lambda: GeminiEvents("p").feed(orjson.dumps(raw)),
        lambda: asi1_translate.ChunkTranslator("p").feed(orjson.dumps(raw)),
    ]
    for run in translators:
        try:
            with answered(200, "p"):
                run()
        except UpstreamError:
            pass


def test_read_error_shapes() -> None:
    """Context-length refusals and named parameters in the OpenAI shape, older vLLM's and xAI's (SPEC §3)."""
    check("openai", "errors", [asdict(translate.read_error(body)) for body in load("openai", "errors")["input"]])


def test_rejection_keeps_status_and_param_with_a_redacted_capped_excerpt() -> None:
    secret = "sk-provider-secret-123456"
    body = orjson.dumps({"error": {"message": f"Bad key {secret} " + "x" * 900, "param": "temperature", "code": "x"}})
    error = transport.rejection("acme", 422, body, secret, translate.read_error)
    assert type(error) is UpstreamInvalidRequest
    assert (error.status, error.code, error.param, error.upstream_status) == (
        422,
        "upstream_invalid_request",
        "temperature",
        422,
    )
    assert error.message.startswith("Upstream provider 'acme' rejected the request: Bad key [redacted] xxx")
    assert (
        secret not in error.message
        and len(error.message) == len("Upstream provider 'acme' rejected the request: ") + 512
    )
    too_long = orjson.dumps(load("openai", "errors")["input"][0])
    error = transport.rejection("acme", 400, too_long, secret, translate.read_error)
    assert (type(error), error.status, error.param) == (ContextLengthExceeded, 400, "messages")
    error = transport.rejection("acme", 413, b"<html>Request Entity Too Large</html>", secret, translate.read_error)
    assert (type(error), error.status, error.param) == (UpstreamInvalidRequest, 413, None)
    assert error.message == "Upstream provider 'acme' rejected the request: <html>Request Entity Too Large</html>"
