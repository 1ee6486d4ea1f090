"""Pure translation for the OpenAI dialect (kinds openai, openai_compatible, and asi1 on top of it): the request
sent upstream, and the upstream's completion and chunk objects reduced to the fields SPEC §7.3 lets through.
No I/O here.
"""

from __future__ import annotations

from typing import Any, Final

from tollway.domain.catalog import Candidate, ProviderKind
from tollway.domain.chat_request import ChatRequest
from tollway.domain.pricing import Usage
from tollway.domain.upstream import StreamChunk
from tollway.errors import UpstreamError
from tollway.providers.base import Fault, mentions_context_length, text
from tollway.providers.capabilities import TABLE, Support
from tollway.providers.content import count, usage_of
from tollway.providers.streaming import event_json

# Never sent upstream as given: Tollway sets the output limit and stream options itself; metadata is ours.
_NEVER_FORWARDED: Final = frozenset({"metadata", "max_tokens", "max_completion_tokens", "stream_options"})
_SENT: Final = frozenset({Support.FORWARDED, Support.TRANSLATED})

MESSAGE_FIELDS: Final = ("role", "content", "tool_calls", "refusal", "reasoning_content")
_CHOICE_FIELDS: Final = ("index", "finish_reason", "logprobs")


def build_payload(request: ChatRequest, candidate: Candidate, output_limit: int) -> dict[str, Any]:
    """The upstream body: the request as validated, minus what the capability table drops for this kind."""
    kind = candidate.provider.kind
    payload = {
        key: value
        for key, value in request.body.items()
        if key not in _NEVER_FORWARDED and (key not in TABLE or TABLE[key][kind] in _SENT)
    }
    payload["model"] = candidate.model.upstream_model
    if kind is ProviderKind.OPENAI:
        payload["max_completion_tokens"] = output_limit
    else:
        payload["max_tokens"] = output_limit
        if TABLE["developer"][kind] is Support.TRANSLATED and any(m["role"] == "developer" for m in request.messages):
            payload["messages"] = [{**m, "role": "system"} if m["role"] == "developer" else m for m in request.messages]
    if any(_has_extra_content(m) for m in payload.get("messages") or ()):
        payload["messages"] = [_without_extra_content(m) for m in payload["messages"]]
    if request.stream:
        # Usage is always obtained from the upstream, whatever the client asked (§7.3).
        payload["stream_options"] = {"include_usage": True}
    return payload


def _has_extra_content(message: dict[str, Any]) -> bool:
    return any("extra_content" in call for call in message.get("tool_calls") or ())


def _without_extra_content(message: dict[str, Any]) -> dict[str, Any]:
    """Tool calls without the provider state only Gemini reads (its thought signature): OpenAI dialects refuse it."""
    if not _has_extra_content(message):
        return message
    calls = [{k: v for k, v in call.items() if k != "extra_content"} for call in message["tool_calls"]]
    return {**message, "tool_calls": calls}


def parse_usage(raw: Any) -> Usage | None:
    """Provider usage, or None when missing or not non-negative integers (then it is estimated, §9.4)."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else None
    out_details = raw.get("completion_tokens_details")
    reasoning = count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else None
    return usage_of(count(raw.get("prompt_tokens")), count(raw.get("completion_tokens")), cached, reasoning)


def normalise_completion(raw: dict[str, Any], slug: str) -> tuple[list[dict[str, Any]], Usage | None]:
    """The choices of an upstream chat.completion, reduced to the documented fields, plus its usage."""
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UpstreamError(f"Upstream provider '{slug}' returned a completion without choices.")
    out = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise UpstreamError(f"Upstream provider '{slug}' returned a malformed choice.")
        message = {k: choice["message"][k] for k in MESSAGE_FIELDS if k in choice["message"]}
        message["role"] = "assistant"
        message.setdefault("content", None)
        cleaned: dict[str, Any] = {k: choice[k] for k in _CHOICE_FIELDS if k in choice}
        cleaned.setdefault("index", position)
        cleaned["message"] = message
        if not cleaned.get("finish_reason"):
            cleaned["finish_reason"] = "stop"
        cleaned.setdefault("logprobs", None)
        out.append(cleaned)
    return out, parse_usage(raw.get("usage"))


def raise_for_error_event(raw: dict[str, Any], slug: str) -> None:
    """A mid-stream ``{"error": ...}`` event becomes an UpstreamError (SPEC §7.3)."""
    if "error" in raw and not raw.get("choices"):
        error = raw["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise UpstreamError(f"Upstream provider '{slug}' reported an error mid-stream: {message or 'unknown'}")


def normalise_chunk(raw: Any, slug: str) -> tuple[list[dict[str, Any]], Usage | None]:
    """The choices of one upstream chunk (possibly empty: the usage chunk) and the usage it carries."""
    if not isinstance(raw, dict):
        raise UpstreamError(f"Upstream provider '{slug}' sent a stream event that is not a JSON object.")
    raise_for_error_event(raw, slug)
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
                "delta": {k: v for k, v in delta.items() if k in MESSAGE_FIELDS},
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return out, parse_usage(raw.get("usage"))


class ChunkTranslator:
    """The OpenAI stream: one chunk per event, ``[DONE]`` ends it; a connection that ends before is a cut."""

    def __init__(self, slug: str) -> None:
        self._slug = slug
        self.finished = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        if data == b"[DONE]":
            self.finished = True
            return []
        choices, usage = normalise_chunk(event_json(data, self._slug), self._slug)
        return [StreamChunk({"choices": choices}, usage)]

    def end(self) -> list[StreamChunk]:
        raise UpstreamError(f"Upstream provider '{self._slug}' ended the stream early.")


def read_error(body: object) -> Fault:
    """OpenAI's error envelope ``{"error": {"message", "type", "param", "code"}}`` (also openai_compatible, xAI and
    asi1): ``code: "context_length_exceeded"``, or a context-length wording from servers that set no code. Some
    compatible servers put the fields at the top level (older vLLM) or send ``error`` as a string (xAI)."""
    if not isinstance(body, dict):
        return Fault()
    error = body.get("error")
    if isinstance(error, str):
        error = {"message": error}
    elif not isinstance(error, dict):
        error = body
    message = text(error.get("message"))
    context = error.get("code") == "context_length_exceeded" or mentions_context_length(message)
    return Fault(message, text(error.get("param")), context)
