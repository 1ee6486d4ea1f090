"""Usage log rows (SPEC §12): one per upstream call. End users see theirs without the raw cost and routing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, Field

from tollway_sdk._models import TollwayModel


class EndUserUsage(TollwayModel):
    """A usage row as ``GET /v1/me/usage`` shows it to the end user."""

    id: str
    platform_id: str
    end_user_id: str | None = None
    request_type: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    charged_usd: Decimal | None = None
    status: str  # success, error or interrupted
    finish_reason: str | None = None
    error_code: str | None = None
    token_count_method: str
    request_id: str
    session_id: str | None = None
    response_id: str | None = None
    iteration: int | None = None
    thread_id: str | None = None
    mcp_app: str | None = None
    mcp_tool: str | None = None
    mcp_free: bool | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime


class UsageLog(EndUserUsage):
    """A usage row as the platform sees it (``GET /logs``), with the raw provider cost and the serving provider."""

    provider_id: str | None = None
    provider_model: str | None = None
    cost_usd: Decimal
    uncollected_usd: Decimal
