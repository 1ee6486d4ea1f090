"""Pure translation for the OpenAI dialect (openai, openai_compatible): the request sent upstream, and the
upstream's completion and chunk objects reduced to the fields SPEC §7.3 lets through. No I/O here."""

from __future__ import annotations

from typing import Any

from tollway.domain.catalog import Candidate, ProviderKind
from tollway.domain.chat_request import ChatRequest
from tollway.domain.pricing import Usage
from tollway.errors import UnsupportedParameter, UpstreamError

_ASI1_FIELDS = ("agent_address", "web_search", "planner_mode", "study_mode")
_NEWER_OPENAI = ("store", "service_tier", "verbosity", "prompt_cache_key", "safety_identifier")
_OPENAI_ONLY = ("audio", "prediction", "web_search_options")
_NEVER_FORWARDED = ("metadata", "max_tokens", "max_completion_tokens", "stream_options", *_ASI1_FIELDS)

_MESSAGE_FIELDS = ("role", "content", "tool_calls", "refusal", "reasoning_content")
_CHOICE_FIELDS = ("index", "finish_reason", "logprobs")


def refusal(request: ChatRequest, candidate: Candidate) -> UnsupportedParameter | None:
    """openai forwards everything; openai_compatible refuses the OpenAI-only shapes (§7.4)."""
    if candidate.provider.kind is ProviderKind.OPENAI:
        return None
    body = request.body
    modalities = body.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        return _unsupported("modalities", candidate)
    for name in _OPENAI_ONLY:
        if name in body:
            return _unsupported(name, candidate)
    for index, message in enumerate(body["messages"]):
        content = message.get("content")
        if isinstance(content, list):
            for part_index, part in enumerate(content):
                if part.get("type") in ("input_audio", "file"):
                    return _unsupported(f"messages[{index}].content[{part_index}].type", candidate, part["type"])
    return None


def _unsupported(param: str, candidate: Candidate, what: str | None = None) -> UnsupportedParameter:
    name = what or param
    return UnsupportedParameter(
        f"The parameter '{name}' is not supported by provider '{candidate.provider.slug}' ({candidate.provider.kind}).",
        param,
    )


def build_payload(request: ChatRequest, candidate: Candidate, output_limit: int) -> dict[str, Any]:
    kind = candidate.provider.kind
    payload = {k: v for k, v in request.body.items() if k not in _NEVER_FORWARDED}
    payload["model"] = candidate.model.upstream_model
    if kind is ProviderKind.OPENAI:
        payload["max_completion_tokens"] = output_limit
    else:
        payload["max_tokens"] = output_limit
        for name in _NEWER_OPENAI:
            payload.pop(name, None)
        if any(m.get("role") == "developer" for m in payload["messages"]):
            payload["messages"] = [
                {**m, "role": "system"} if m.get("role") == "developer" else m for m in payload["messages"]
            ]
        payload.pop("modalities", None)
    if request.stream:
        # Usage is always obtained from the upstream, whatever the client asked (§7.3).
        payload["stream_options"] = {"include_usage": True}
    return payload


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def parse_usage(raw: Any) -> Usage | None:
    """Provider usage, or None when missing or not non-negative integers (then it is estimated, §9.4)."""
    if not isinstance(raw, dict):
        return None
    prompt = _count(raw.get("prompt_tokens"))
    completion = _count(raw.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = raw.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    out_details = raw.get("completion_tokens_details")
    reasoning = _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else None
    return Usage(prompt, completion, min(cached or 0, prompt), reasoning)


def normalise_completion(raw: dict[str, Any], slug: str) -> tuple[list[dict[str, Any]], Usage | None]:
    """The choices of an upstream chat.completion, reduced to the documented fields, plus its usage."""
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UpstreamError(f"Upstream provider '{slug}' returned a completion without choices.")
    out = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise UpstreamError(f"Upstream provider '{slug}' returned a malformed choice.")
        message = {k: choice["message"][k] for k in _MESSAGE_FIELDS if k in choice["message"]}
        message["role"] = "assistant"
        message.setdefault("content", None)
        cleaned: dict[str, Any] = {k: choice[k] for k in _CHOICE_FIELDS if k in choice}
        cleaned.setdefault("index", position)
        cleaned["message"] = message
        cleaned.setdefault("finish_reason", "stop")
        cleaned.setdefault("logprobs", None)
        out.append(cleaned)
    return out, parse_usage(raw.get("usage"))


def normalise_chunk(raw: Any, slug: str) -> tuple[list[dict[str, Any]], Usage | None]:
    """The choices of one upstream chunk (possibly empty: the usage chunk) and the usage it carries."""
    if not isinstance(raw, dict):
        raise UpstreamError(f"Upstream provider '{slug}' sent a stream event that is not a JSON object.")
    if "error" in raw and not raw.get("choices"):
        message = raw["error"].get("message") if isinstance(raw["error"], dict) else None
        raise UpstreamError(f"Upstream provider '{slug}' reported an error mid-stream: {message or 'unknown'}")
    choices = raw.get("choices") or []
    if not isinstance(choices, list):
        raise UpstreamError(f"Upstream provider '{slug}' sent a malformed chunk.")
    out = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise UpstreamError(f"Upstream provider '{slug}' sent a malformed chunk.")
        raw_delta = choice.get("delta")
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        out.append(
            {
                "index": choice.get("index", position),
                "delta": {k: v for k, v in delta.items() if k in _MESSAGE_FIELDS},
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return out, parse_usage(raw.get("usage"))
