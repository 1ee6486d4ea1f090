"""The parameter-support table of SPEC §7.4 for every provider kind, and the refusal it implies.

Each parameter is F (forwarded), T (translated), D (dropped silently) or X (refused with 400 unsupported_parameter
naming the parameter and the provider). Adapters translate and drop; only this module refuses, so one table answers
"can a provider of kind K take this request?" for every adapter. A parameter at its neutral value (``n: 1``,
penalties 0, ``logprobs: false``, ``parallel_tool_calls: true``, ``response_format`` text) is never refused.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Final

from tollway.domain.catalog import Candidate, ProviderKind
from tollway.domain.chat_request import ChatRequest
from tollway.errors import UnsupportedParameter
from tollway.providers.base import InvalidForProvider
from tollway.providers.content import arguments_object, data_url


class Support(StrEnum):
    FORWARDED = "F"
    TRANSLATED = "T"
    DROPPED = "D"
    REFUSED = "X"


F, T, D, X = Support.FORWARDED, Support.TRANSLATED, Support.DROPPED, Support.REFUSED
_KINDS: Final = (
    ProviderKind.OPENAI,
    ProviderKind.OPENAI_COMPATIBLE,
    ProviderKind.ANTHROPIC,
    ProviderKind.GEMINI,
    ProviderKind.ASI1,
)


def _row(*support: Support) -> dict[ProviderKind, Support]:
    return dict(zip(_KINDS, support, strict=True))


# Columns: openai, openai_compatible, anthropic, gemini, asi1 (SPEC §7.4).
TABLE: Final[dict[str, dict[ProviderKind, Support]]] = {
    "temperature": _row(F, F, T, T, F),  # anthropic: 0-1 only, above 1 is refused (see _value_refusal)
    "top_p": _row(F, F, T, T, F),
    "stop": _row(F, F, T, T, F),
    "n": _row(F, F, X, T, X),
    "frequency_penalty": _row(F, F, X, T, F),
    "presence_penalty": _row(F, F, X, T, F),
    "seed": _row(F, F, D, T, D),
    "logprobs": _row(F, F, X, X, X),
    "top_logprobs": _row(F, F, X, X, X),
    "logit_bias": _row(F, F, X, X, X),
    "reasoning_effort": _row(F, F, X, X, X),
    "tools": _row(F, F, T, T, F),
    "tool_choice": _row(F, F, T, T, F),
    "parallel_tool_calls": _row(F, F, T, D, D),
    "response_format": _row(F, F, X, T, F),
    "image_url": _row(F, F, T, T, F),  # gemini: data URLs only; an http(s) URL is refused
    "input_audio": _row(F, F, X, X, X),
    "file": _row(F, F, X, X, X),
    "developer": _row(F, T, T, T, T),
    "user": _row(F, F, T, D, D),
    "agent_address": _row(D, D, D, D, F),
    "web_search": _row(D, D, D, D, F),
    "planner_mode": _row(D, D, D, D, F),
    "study_mode": _row(D, D, D, D, F),
    "x-session-id": _row(D, D, D, D, F),
    "store": _row(F, D, D, D, D),
    "service_tier": _row(F, D, D, D, D),
    "verbosity": _row(F, D, D, D, D),
    "prompt_cache_key": _row(F, D, D, D, D),
    "safety_identifier": _row(F, D, D, D, D),
    "modalities": _row(F, X, X, X, X),  # only modalities other than text
    "audio": _row(F, X, X, X, X),
    "prediction": _row(F, X, X, X, X),
    "web_search_options": _row(F, X, X, X, X),
}

# Request-level parameters that can be refused, each with the test for "present at a non-neutral value", in the
# order they are checked (the first refused one is reported).
_ACTIVE: Final[tuple[tuple[str, Callable[[ChatRequest], bool]], ...]] = (
    ("n", lambda r: r.n > 1),
    ("frequency_penalty", lambda r: bool(r.frequency_penalty)),
    ("presence_penalty", lambda r: bool(r.presence_penalty)),
    ("logprobs", lambda r: r.logprobs),
    ("top_logprobs", lambda r: r.top_logprobs is not None),
    ("logit_bias", lambda r: bool(r.logit_bias)),
    ("reasoning_effort", lambda r: r.reasoning_effort is not None),
    ("response_format", lambda r: r.response_format is not None and r.response_format["type"] != "text"),
    ("modalities", lambda r: any(m != "text" for m in r.modalities or ())),
    ("audio", lambda r: r.audio is not None),
    ("prediction", lambda r: r.prediction is not None),
    ("web_search_options", lambda r: r.web_search_options is not None),
)

# Anthropic's base64 image sources accept these media types only.
ANTHROPIC_IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Kinds whose tool calls carry arguments as a JSON object (Anthropic tool_use.input, Gemini functionCall.args).
_OBJECT_ARGUMENTS: Final = frozenset({ProviderKind.ANTHROPIC, ProviderKind.GEMINI})


def support(kind: ProviderKind, parameter: str) -> Support:
    return TABLE[parameter][kind]


def refusal(request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
    """Why a provider of this candidate's kind cannot take the request (SPEC §7.4), or None when it can."""
    kind = candidate.provider.kind
    if kind is ProviderKind.OPENAI:
        return None
    for name, active in _ACTIVE:
        if TABLE[name][kind] is X and active(request):
            return unsupported(name, candidate)
    if kind is ProviderKind.ANTHROPIC and request.temperature is not None and request.temperature > 1:
        return unsupported("temperature", candidate, "The parameter 'temperature' above 1", "it accepts 0 to 1")
    return _content_refusal(request, candidate) or _arguments_refusal(request, candidate)


def unsupported(
    param: str, candidate: Candidate, what: str | None = None, hint: str | None = None
) -> UnsupportedParameter:
    """The ✗ error: the message names the parameter (or the part, at its path) and the provider."""
    provider = candidate.provider
    subject = what or f"The parameter '{param}'"
    where = f" at {param}" if param not in subject else ""
    detail = f"; {hint}" if hint else ""
    return UnsupportedParameter(
        f"{subject}{where} is not supported by provider '{provider.slug}' ({provider.kind}){detail}. "
        "Remove it, or use a model served by another provider.",
        param,
    )


def _content_refusal(request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
    kind = candidate.provider.kind
    for index, message in enumerate(request.messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part_index, part in enumerate(content):
            path = f"messages[{index}].content[{part_index}]"
            part_type = part.get("type")
            if part_type in ("input_audio", "file") and TABLE[part_type][kind] is X:
                return unsupported(f"{path}.type", candidate, f"The {part_type} content part")
            if part_type == "image_url":
                reason = _image_refusal(part["image_url"]["url"], f"{path}.image_url.url", candidate)
                if reason is not None:
                    return reason
    return None


def _image_refusal(url: str, path: str, candidate: Candidate) -> UnsupportedParameter | None:
    kind = candidate.provider.kind
    inline = data_url(url)
    if kind is ProviderKind.GEMINI and inline is None:
        return unsupported(path, candidate, "An image given by http(s) URL", "send the image as a data: URL")
    if kind is ProviderKind.ANTHROPIC and inline is not None and inline[0] not in ANTHROPIC_IMAGE_TYPES:
        return unsupported(path, candidate, f"The image type {inline[0]}", "it accepts jpeg, png, gif and webp")
    return None


def _arguments_refusal(request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
    if candidate.provider.kind not in _OBJECT_ARGUMENTS:
        return None
    for index, message in enumerate(request.messages):
        for call_index, call in enumerate(message.get("tool_calls") or ()):
            if arguments_object(call["function"]["arguments"]) is None:
                path = f"messages[{index}].tool_calls[{call_index}].function.arguments"
                return InvalidForProvider(
                    f"{path} must be a JSON object for provider '{candidate.provider.slug}' "
                    f"({candidate.provider.kind}), which takes tool-call arguments as an object.",
                    path,
                )
    return None
