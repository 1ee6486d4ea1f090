"""The one error tree. Every failure a client can see is a TollwayError that knows its HTTP status,
OpenAI error ``type``, string ``code`` and whether a retry against the upstream could help (SPEC §3).

    TollwayError
    ├── AuthenticationError        401 invalid_api_key
    ├── WrongKeyType               403 wrong_key_type
    ├── Forbidden                  403 forbidden
    ├── NotFound                   404 not_found
    │   └── ModelNotFound          404 model_not_found
    ├── InvalidRequest             400 invalid_request
    │   └── UnsupportedParameter   400 unsupported_parameter
    ├── BelowMinValue              422 integer_below_min_value
    ├── RequestTooLarge            413 request_too_large
    ├── IdempotencyKeyMismatch     422 idempotency_key_mismatch
    ├── IdempotencyInProgress      409 idempotency_in_progress
    ├── ThreadBusy                 409 thread_busy
    ├── McpAppNotConnected         409 mcp_app_not_connected
    ├── BillingError               402 (budget_suspended, budget_exhausted, wallet_insufficient)
    ├── RateLimited                429 rate_limit_exceeded
    ├── UpstreamError              502 upstream_error
    │   ├── UpstreamTimeout        504 upstream_timeout
    │   ├── UpstreamInvalidRequest 400/413/422 upstream_invalid_request (the provider's status)
    │   │   └── ContextLengthExceeded  400 context_length_exceeded
    │   ├── UpstreamRateLimited    429 upstream_rate_limited (Retry-After)
    │   └── ProviderUnavailable    503 provider_unavailable (Retry-After)
    ├── ServiceUnavailable         503 service_unavailable
    └── InternalError              500 internal_error
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class TollwayError(Exception):
    # Not a ClassVar: UpstreamInvalidRequest keeps the provider's status per instance (SPEC §14.2).
    status: int = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, param: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = headers or {}

    def body(self) -> dict[str, Any]:
        """The OpenAI error envelope; ``code`` is always a string."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


class AuthenticationError(TollwayError):
    status, type, code = 401, "authentication_error", "invalid_api_key"

    def __init__(self, message: str = "Invalid or missing API key.") -> None:
        super().__init__(message)


class WrongKeyType(TollwayError):
    status, type, code = 403, "permission_error", "wrong_key_type"


class Forbidden(TollwayError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(TollwayError):
    status, type, code = 404, "not_found_error", "not_found"

    def __init__(self, message: str = "The requested resource was not found.", param: str | None = None) -> None:
        super().__init__(message, param)


class ModelNotFound(NotFound):
    code = "model_not_found"


class InvalidRequest(TollwayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"


class BelowMinValue(TollwayError):
    status, type, code = 422, "invalid_request_error", "integer_below_min_value"


class RequestTooLarge(TollwayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class IdempotencyKeyMismatch(TollwayError):
    status, type, code = 422, "idempotency_error", "idempotency_key_mismatch"


class IdempotencyInProgress(TollwayError):
    status, type, code = 409, "idempotency_error", "idempotency_in_progress"


class ThreadBusy(TollwayError):
    """Another request of the same agent thread is still running (SPEC §16.4)."""

    status, type, code = 409, "invalid_request_error", "thread_busy"


class McpAppNotConnected(TollwayError):
    """An MCP call needs an app the end user has not connected, or whose connection expired (SPEC §16.2)."""

    status, type, code = 409, "invalid_request_error", "mcp_app_not_connected"

    def __init__(self, slug: str) -> None:
        super().__init__(
            f"The MCP app '{slug}' is not connected for this end user; "
            f"see GET /v1/me/mcp-config and connect it with POST /v1/me/mcp/apps/{slug}/connect."
        )


class BillingError(TollwayError):
    status, type = 402, "billing_error"


class BudgetSuspended(BillingError):
    code = "budget_suspended"


class BudgetExhausted(BillingError):
    code = "budget_exhausted"


class WalletInsufficient(BillingError):
    code = "wallet_insufficient"


class RateLimited(TollwayError):
    status, type, code = 429, "rate_limit_error", "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: int, *, headers: dict[str, str] | None = None) -> None:
        merged = dict(headers or {})
        merged["retry-after"] = str(max(1, retry_after_s))
        super().__init__(message, None, headers=merged)


class UpstreamError(TollwayError):
    """The provider failed. ``upstream_status`` is its HTTP status (None for transport failures); ``retry_after_s``
    its Retry-After; ``quota_exhausted`` marks a 429 that retrying cannot fix (SPEC §14.2)."""

    status, type, code, retryable = 502, "upstream_error", "upstream_error", True

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int | None = None,
        retry_after_s: float | None = None,
        quota_exhausted: bool = False,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param, headers=headers)
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s
        self.quota_exhausted = quota_exhausted


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


class UpstreamInvalidRequest(UpstreamError):
    """The provider refused the request itself (its 400, 413 or 422, kept as our status): returned at once, never
    retried (SPEC §14.2). ``param`` is the provider's when its error names one."""

    type, code, retryable = "invalid_request_error", "upstream_invalid_request", False

    def __init__(self, message: str, *, upstream_status: int, param: str | None = None) -> None:
        super().__init__(message, upstream_status=upstream_status, param=param)
        self.status = upstream_status


class ContextLengthExceeded(UpstreamInvalidRequest):
    """The provider refused the input as longer than the model's context: always 400, so that agents trim it."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, upstream_status: int, param: str | None = None) -> None:
        super().__init__(message, upstream_status=upstream_status, param=param)
        self.status = 400


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """``Retry-After`` in whole seconds, at least 1 (SPEC §3); 1 when the wait is unknown."""
    whole = 1 if seconds is None else math.ceil(seconds)
    return {"retry-after": str(max(1, whole))}


class UpstreamRateLimited(UpstreamError):
    """A provider 429 that outlasted the retries and fallbacks; ``Retry-After`` is the provider's, else 1."""

    status, type, code = 429, "rate_limit_error", "upstream_rate_limited"

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(
            message, upstream_status=429, retry_after_s=retry_after_s, headers=retry_after_header(retry_after_s)
        )


class ProviderUnavailable(UpstreamError):
    """Every candidate was skipped by its circuit breaker; ``Retry-After`` is when the first one half-opens."""

    status, type, code = 503, "server_error", "provider_unavailable"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s, headers=retry_after_header(retry_after_s))


class ServiceUnavailable(TollwayError):
    status, type, code, retryable = 503, "server_error", "service_unavailable", True

    def __init__(self, message: str = "The service is temporarily unavailable.", retry_after_s: int = 1) -> None:
        super().__init__(message, None, headers={"retry-after": str(max(1, retry_after_s))})


class InternalError(TollwayError):
    def __init__(self, message: str = "An internal error occurred.") -> None:
        super().__init__(message)
