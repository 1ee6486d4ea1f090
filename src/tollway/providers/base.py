"""What adapters share beyond the contract of ``domain/ports/providers.py``: the error for requests a provider's
format cannot express, and what a provider's error body says about a request it refused (SPEC §3, §14.2)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from tollway.errors import ContextLengthExceeded, UnsupportedParameter, UpstreamError, UpstreamInvalidRequest

# How providers word a context-length refusal when no code says so: OpenAI-compatible servers (vLLM, Groq, xAI),
# Anthropic ("prompt is too long: N tokens > M maximum"), Gemini ("The input token count (N) exceeds the maximum
# number of tokens allowed (M)"), OpenAI's Responses API ("exceeds the context window").
_CONTEXT_WORDING: Final = re.compile(
    r"maximum context length|context[ _]length[ _]exceeded|maximum prompt length|prompt is too long"
    r"|exceeds the context window|input token count.*exceeds the maximum|reduce the length of the messages",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Fault:
    """What a provider's error body says: its own message, the parameter it names, and whether it refused the input
    as longer than the model's context. Read by each dialect's ``translate.read_error``; empty when unreadable."""

    message: str | None = None
    param: str | None = None
    context_length: bool = False


# The parsed JSON of an error body (None when it is not JSON) -> what it says.
ErrorReader = Callable[[object], Fault]

REQUEST_FAULTS: Final = frozenset({400, 413, 422})  # the request was at fault: returned at once (SPEC §14.2)


def upstream_failure(message: str, status: int | None, fault: Fault) -> UpstreamError:
    """The error for a provider's refusal: a request fault (400/413/422) as the client's own error keeping the
    provider's status and param, anything else an UpstreamError carrying the status."""
    if status in REQUEST_FAULTS:
        kind = ContextLengthExceeded if fault.context_length else UpstreamInvalidRequest
        return kind(message, upstream_status=status, param=fault.param)
    return UpstreamError(message, upstream_status=status)


def mentions_context_length(message: str | None) -> bool:
    return message is not None and _CONTEXT_WORDING.search(message) is not None


def text(value: object) -> str | None:
    """A non-empty string field of an error body, else None."""
    return value if isinstance(value, str) and value else None


class InvalidForProvider(UnsupportedParameter):
    """A request this provider's format cannot express, such as tool-call arguments that are not a JSON object for
    Anthropic or Gemini (SPEC §7.4): 400 ``invalid_request`` at the offending path. It subclasses
    UnsupportedParameter so that ``refusal()`` can report it: the row is then dropped like any ✗, and the error
    reaches the client only when no candidate that can take the request remains (SPEC §8 step 3b)."""

    code = "invalid_request"
