"""ASI:One (SPEC §7.5): the request extensions, and old and new response and stream shapes normalised into valid
OpenAI objects, against golden fixtures (tests/unit/fixtures/asi1) and the openai SDK's own types."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.unit.golden import candidate, check, load, request, usage_json
from tests.unit.test_translate_openai import feed_all
from tollway.domain.catalog import ProviderKind
from tollway.providers.asi1 import translate
from tollway.providers.openai import translate as openai_translate


def test_request_forwards_the_extensions_and_drops_what_asi1_does_not_take() -> None:
    chat = request(load("asi1", "request")["input"])
    check("asi1", "request", openai_translate.build_payload(chat, candidate(ProviderKind.ASI1), 1000))


def test_session_header() -> None:
    assert translate.session_headers("s-1") == {"x-session-id": "s-1"}
    assert translate.session_headers(None) == {}


@pytest.mark.parametrize("case", ["response_new", "response_old", "response_old_mixed_calls"])
def test_response(case: str) -> None:
    raw = load("asi1", case)["input"]
    normalised = translate.normalise_completion(raw)
    ChatCompletion.model_validate(normalised)
    result = translate.completion_result(raw, "p")
    check("asi1", case, {"normalised": normalised, "body": result.body, "usage": usage_json(result.usage)})


@pytest.mark.parametrize("case", ["stream_old", "stream_new_tool_call"])
def test_stream(case: str) -> None:
    events = load("asi1", case)["input"]
    called: set[int] = set()
    for event in events:
        if isinstance(event, dict):
            chunk = {"created": 0, "model": "m", "choices": [], **translate.normalise_chunk(event, called)}
            ChatCompletionChunk.model_validate(chunk)
    check("asi1", case, feed_all(translate.ChunkTranslator("p"), events))


def test_millisecond_timestamps_become_seconds() -> None:
    assert translate.normalise_completion({"created": 1768476062123, "choices": []})["created"] == 1768476062
    assert translate.normalise_completion({"created": 1768476062, "choices": []})["created"] == 1768476062
