"""What one upstream call cost and how it ended: the record that settlement turns into ledger and log rows (§12)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tollway.domain.money import nanos_to_json_number
from tollway.domain.pricing import Usage


class CallStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class CallLabels:
    """What ties a usage row to a Responses chain, an agent thread or an MCP tool (SPEC §12); all null otherwise."""

    response_id: str | None = None
    iteration: int | None = None  # the model turn of a Responses tool loop: 0, 1, …
    thread_id: str | None = None
    mcp_app: str | None = None
    mcp_tool: str | None = None
    mcp_free: bool | None = None  # whether the platform's free MCP tier paid for the call (§16.1)

    def columns(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LABEL_COLUMNS}

    @classmethod
    def from_columns(cls, values: object) -> CallLabels:
        """Back from ``columns()`` as kept in hold recovery terms; anything malformed reads as no label."""
        if not isinstance(values, dict):
            return NO_LABELS
        texts = {
            n: v for n in ("response_id", "thread_id", "mcp_app", "mcp_tool") if isinstance(v := values.get(n), str)
        }
        iteration = values.get("iteration")
        free = values.get("mcp_free")
        return cls(
            **texts,
            iteration=iteration if isinstance(iteration, int) and not isinstance(iteration, bool) else None,
            mcp_free=free if isinstance(free, bool) else None,
        )


LABEL_COLUMNS = ("response_id", "iteration", "thread_id", "mcp_app", "mcp_tool", "mcp_free")
NO_LABELS = CallLabels()


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    platform_id: str
    end_user_id: str | None
    request_type: str
    provider_id: str | None
    model: str
    provider_model: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    latency_ms: int
    ttft_ms: int | None
    cost_nanos: int
    charged_nanos: int | None
    status: CallStatus
    finish_reason: str | None
    error_code: str | None
    token_count_method: str
    session_id: str | None
    metadata: dict[str, str] = field(default_factory=dict)
    units: int = 0  # images returned for request_type "image", calls for "moderation"
    response_id: str | None = None
    iteration: int | None = None
    thread_id: str | None = None
    mcp_app: str | None = None
    mcp_tool: str | None = None
    mcp_free: bool | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def ledger_description(self) -> str:
        if self.request_type == "image":
            return f"{self.model}: {self.units} image{'' if self.units == 1 else 's'}"
        if self.request_type == "moderation":
            return f"{self.model}: moderation"
        if self.request_type == "mcp":
            return f"{self.model}: {self.mcp_tool}"
        if self.request_type == "embedding":
            return f"{self.model}: {self.prompt_tokens} in"
        return f"{self.model}: {self.prompt_tokens} in / {self.completion_tokens} out"


def usage_json(usage: Usage) -> dict[str, Any]:
    """The OpenAI ``usage`` object (the hub format) for billed counts."""
    body: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }
    if usage.reasoning_tokens is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body


def with_cost(usage: dict[str, Any], cost_nanos: int) -> dict[str, Any]:
    """``usage`` (any dialect's usage object) with ``cost``: the USD the caller is charged for the call (SPEC §19),
    a §9.1 JSON number (at most 9 decimals, no exponent)."""
    return {**usage, "cost": nanos_to_json_number(cost_nanos)}
