"""The capability table of SPEC §7.4: which parameter each provider kind refuses, at which path, with a message
naming the parameter and the provider; neutral values are never refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.golden import candidate, request
from tollway.domain.catalog import ProviderKind
from tollway.errors import UnsupportedParameter
from tollway.providers import capabilities
from tollway.providers.base import InvalidForProvider
from tollway.providers.capabilities import Support

OPENAI, COMPATIBLE, ANTHROPIC, GEMINI, ASI1 = (
    ProviderKind.OPENAI,
    ProviderKind.OPENAI_COMPATIBLE,
    ProviderKind.ANTHROPIC,
    ProviderKind.GEMINI,
    ProviderKind.ASI1,
)
USER = [{"role": "user", "content": "hi"}]
PNG = "data:image/png;base64,iVBORw0KGgo="


def refusal(kind: ProviderKind, **body: Any) -> UnsupportedParameter | None:
    return capabilities.refusal(request({"model": "m", "messages": USER, **body}), candidate(kind))


def parts(*content: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": "look"}, *content]}]


CASES: list[tuple[dict[str, Any], str, set[ProviderKind]]] = [
    ({"n": 2}, "n", {ANTHROPIC, ASI1}),
    ({"frequency_penalty": 0.5}, "frequency_penalty", {ANTHROPIC}),
    ({"presence_penalty": -1}, "presence_penalty", {ANTHROPIC}),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs", {ANTHROPIC, GEMINI, ASI1}),
    ({"logit_bias": {"50256": -100}}, "logit_bias", {ANTHROPIC, GEMINI, ASI1}),
    ({"reasoning_effort": "low"}, "reasoning_effort", {ANTHROPIC, GEMINI, ASI1}),
    ({"response_format": {"type": "json_object"}}, "response_format", {ANTHROPIC}),
    ({"temperature": 1.2}, "temperature", {ANTHROPIC}),
    ({"modalities": ["text", "audio"]}, "modalities", {COMPATIBLE, ANTHROPIC, GEMINI, ASI1}),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio", {COMPATIBLE, ANTHROPIC, GEMINI, ASI1}),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction", {COMPATIBLE, ANTHROPIC, GEMINI, ASI1}),
    ({"web_search_options": {}}, "web_search_options", {COMPATIBLE, ANTHROPIC, GEMINI, ASI1}),
    (
        {"messages": parts({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}})},
        "messages[0].content[1].type",
        {ANTHROPIC, GEMINI, ASI1},
    ),
    (
        {"messages": parts({"type": "file", "file": {"file_id": "file-1"}})},
        "messages[0].content[1].type",
        {ANTHROPIC, GEMINI, ASI1},
    ),
    (
        {"messages": parts({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})},
        "messages[0].content[1].image_url.url",
        {GEMINI},
    ),
    (
        {"messages": parts({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}})},
        "messages[0].content[1].image_url.url",
        {ANTHROPIC},
    ),
]


@pytest.mark.parametrize(("body", "param", "refused_by"), CASES, ids=[c[1] + "-" + str(i) for i, c in enumerate(CASES)])
@pytest.mark.parametrize("kind", list(ProviderKind))
def test_refusals_follow_the_table(
    kind: ProviderKind, body: dict[str, Any], param: str, refused_by: set[ProviderKind]
) -> None:
    reason = refusal(kind, **body)
    if kind not in refused_by:
        assert reason is None
        return
    assert reason is not None
    assert (reason.code, reason.status, reason.param) == ("unsupported_parameter", 400, param)
    assert f"provider '{kind.value}-main' ({kind.value})" in reason.message
    assert param.split("[")[0].split(".")[0] in reason.message


NEUTRAL: dict[str, Any] = {
    "n": 1,
    "frequency_penalty": 0,
    "presence_penalty": 0.0,
    "logprobs": False,
    "parallel_tool_calls": True,
    "response_format": {"type": "text"},
    "modalities": ["text"],
    "temperature": 1,
    "logit_bias": {},
    "seed": 1,
    "user": "u",
    "store": True,
    "service_tier": "auto",
    "agent_address": "agent1q",
    "web_search": True,
    "messages": parts({"type": "image_url", "image_url": {"url": PNG}}),
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "tool_choice": "auto",
}


@pytest.mark.parametrize("kind", list(ProviderKind))
def test_neutral_values_and_dropped_parameters_are_never_refused(kind: ProviderKind) -> None:
    assert refusal(kind, **NEUTRAL) is None
    assert refusal(kind, parallel_tool_calls=False, tools=NEUTRAL["tools"]) is None


@pytest.mark.parametrize("kind", list(ProviderKind))
def test_tool_arguments_that_are_not_objects(kind: ProviderKind) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '"just a string"'}}
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    reason = refusal(kind, messages=messages)
    if kind in (ANTHROPIC, GEMINI):
        assert isinstance(reason, InvalidForProvider)
        assert (reason.code, reason.status, reason.param) == (
            "invalid_request",
            400,
            "messages[1].tool_calls[0].function.arguments",
        )
    else:
        assert reason is None


def test_the_table_covers_every_kind_and_openai_forwards_all_but_asi1_extensions() -> None:
    asi1_only = {"agent_address", "web_search", "planner_mode", "study_mode", "x-session-id"}
    for parameter, row in capabilities.TABLE.items():
        assert set(row) == set(ProviderKind), parameter
        assert row[OPENAI] is (Support.DROPPED if parameter in asi1_only else Support.FORWARDED), parameter
    assert capabilities.support(ASI1, "agent_address") is Support.FORWARDED
    assert capabilities.support(ANTHROPIC, "seed") is Support.DROPPED
