"""The fields of OpenAI's Responses API beyond the core of SPEC §7.6, validated (the "parity" bullet of §7.6).

None of them is refused for being unknown. Each is validated for type and range (a bad value is a 400 naming the
field), then kept as ``ResponsesOptions``: providers of kind ``openai`` get them as sent (``NATIVE_FIELDS``);
over chat they are translated, ignored or refused as ``docs/responses.md`` tabulates. Pure; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tollway.domain.chat_messages import check_fields
from tollway.domain.chat_request import MAX_IDENTIFIER_CHARS, _boolean, _choice, _identifier, _integer, _typed
from tollway.errors import InvalidRequest, UnsupportedParameter

# Top-level fields sent to openai providers exactly as the client sent them (``reasoning`` and ``text`` are
# rebuilt from their validated parts; ``stream_options`` only with ``stream: true``).
NATIVE_FIELDS: Final = (
    "include", "truncation", "prompt_cache_key", "safety_identifier", "service_tier", "top_logprobs",
    "max_tool_calls", "prompt", "prompt_cache_retention", "prompt_cache_options", "context_management", "image",
    "moderation", "access_programs", "stream_options",
)  # fmt: skip
# Fields that only tune or annotate how OpenAI serves a request: accepted (type-checked) and forwarded, ignored
# over chat. ``moderation`` is forwarded and refused over chat (ignoring it would drop a promised block).
_OBJECT_FIELDS: Final = (
    "prompt_cache_options", "image", "access_programs", "stream_options", "background_options", "moderation",
)  # fmt: skip
PARAMS: Final = frozenset(
    {
        "include", "truncation", "prompt_cache_key", "safety_identifier", "service_tier", "top_logprobs",
        "max_tool_calls", "prompt", "background", "conversation", "prompt_cache_retention", "context_management",
        *_OBJECT_FIELDS,
    }
)  # fmt: skip
# The ASI:One extensions of SPEC §7.5, forwarded to asi1 providers over chat and dropped for every other kind.
ASI1_FIELDS: Final = ("agent_address", "web_search", "planner_mode", "study_mode")

LOGPROBS_INCLUDE: Final = "message.output_text.logprobs"
ENCRYPTED_REASONING_INCLUDE: Final = "reasoning.encrypted_content"
_TRUNCATIONS: Final = ("disabled", "auto")
_SERVICE_TIERS: Final = ("auto", "default", "flex", "scale", "priority")
_CACHE_RETENTIONS: Final = ("in_memory", "24h")
SUMMARIES: Final = ("auto", "concise", "detailed")
VERBOSITIES: Final = ("low", "medium", "high")
_PROMPT_FIELDS: Final = frozenset({"id", "variables", "version"})
MAX_INCLUDE: Final = 64
MAX_TOOL_CALLS_LIMIT: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class ResponsesOptions:
    include: tuple[str, ...] = ()
    truncation: str = "disabled"
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    prompt: dict[str, Any] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    moderation: dict[str, Any] | None = None

    @property
    def logprobs(self) -> bool:
        """Output-text logprobs asked for: ``include`` names them, or ``top_logprobs`` is set."""
        return LOGPROBS_INCLUDE in self.include or self.top_logprobs is not None


def parse_options(body: dict[str, Any]) -> ResponsesOptions:
    """The parity fields of a Responses body; raise ``InvalidRequest`` (or ``UnsupportedParameter``) naming the
    first bad one."""
    if body.get("background") is not None and _boolean(body, "background"):
        raise UnsupportedParameter(
            "background: true is not supported: Tollway answers every response in the request that creates it; "
            "omit background or set it to false.",
            "background",
        )
    for name in _OBJECT_FIELDS:
        _typed(body, name, dict, "an object")
    if body.get("stream_options") is not None and body.get("stream") is not True:
        raise InvalidRequest("stream_options is only allowed with stream: true.", "stream_options")
    _typed(body, "context_management", list, "an array")
    _choice(body, "prompt_cache_retention", _CACHE_RETENTIONS)
    return ResponsesOptions(
        include=_include(body.get("include")),
        truncation=_choice(body, "truncation", _TRUNCATIONS) or "disabled",
        top_logprobs=_integer(body, "top_logprobs", 0, 20),
        max_tool_calls=_integer(body, "max_tool_calls", 1, MAX_TOOL_CALLS_LIMIT),
        prompt=_prompt(body.get("prompt")),
        service_tier=_choice(body, "service_tier", _SERVICE_TIERS),
        prompt_cache_key=_identifier(body, "prompt_cache_key"),
        safety_identifier=_identifier(body, "safety_identifier"),
        moderation=body.get("moderation"),
    )


def _include(value: object) -> tuple[str, ...]:
    """Any list of strings, ``[]`` included: values Tollway cannot honour over chat are ignored, not refused."""
    if value is None:
        return ()
    if type(value) is not list or len(value) > MAX_INCLUDE:
        raise InvalidRequest(f"include must be an array of at most {MAX_INCLUDE} strings.", "include")
    for index, entry in enumerate(value):
        if type(entry) is not str or not 1 <= len(entry) <= MAX_IDENTIFIER_CHARS:
            raise InvalidRequest(
                f"include[{index}] must be a non-empty string such as {LOGPROBS_INCLUDE!r}.", f"include[{index}]"
            )
    return tuple(value)


def _prompt(value: object) -> dict[str, Any] | None:
    """A stored-prompt reference ``{id, variables?, version?}``; only openai providers can resolve it."""
    if value is None:
        return None
    if type(value) is not dict:
        raise InvalidRequest('prompt must be an object such as {"id": "pmpt_..."}.', "prompt")
    check_fields(value, _PROMPT_FIELDS, "prompt", "prompt")
    if type(value.get("id")) is not str or not value["id"]:
        raise InvalidRequest("prompt.id must be a non-empty string.", "prompt.id")
    if value.get("variables") is not None and type(value["variables"]) is not dict:
        raise InvalidRequest("prompt.variables must be an object.", "prompt.variables")
    if value.get("version") is not None and type(value["version"]) is not str:
        raise InvalidRequest("prompt.version must be a string.", "prompt.version")
    return value
