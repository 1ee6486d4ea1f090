"""Every exception the SDK raises.

```
TollwayError                         status, code, type, message, param, request_id
├── APIConnectionError               the server could not be reached (no status)
│   └── APITimeoutError
└── APIStatusError                   a non-2xx answer; one subclass per HTTP status Tollway uses ...
    ├── BadRequestError              400  InvalidRequestError, UnsupportedParameterError, ContextLengthExceededError
    ├── AuthenticationError          401  InvalidAPIKeyError
    ├── PaymentRequiredError         402  BudgetSuspendedError, BudgetExhaustedError, WalletInsufficientError
    ├── PermissionDeniedError        403  WrongKeyTypeError, ForbiddenError
    ├── NotFoundError                404  ObjectNotFoundError, ModelNotFoundError
    ├── ConflictError                409  IdempotencyInProgressError, ThreadBusyError, MCPAppNotConnectedError
    ├── PayloadTooLargeError         413  RequestTooLargeError
    ├── UnprocessableEntityError     422  IntegerBelowMinValueError, IdempotencyKeyMismatchError
    ├── RateLimitError               429  RateLimitExceededError, UpstreamRateLimitedError
    ├── InternalServerError          5xx  InternalError, UpstreamError, UpstreamTimeoutError,
    │                                     ServiceUnavailableError, ProviderUnavailableError
    └── UpstreamInvalidRequestError  400, 413 or 422 (the provider's status)
```

... and one subclass per ``code`` of SPEC §3, under its status class, so callers catch as broadly or as
narrowly as they need (``except PaymentRequiredError`` or ``except BudgetExhaustedError``). An unknown code falls back
to its status class, an unknown status to ``APIStatusError``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhaustedError",
    "BudgetSuspendedError",
    "ConflictError",
    "ContextLengthExceededError",
    "ForbiddenError",
    "IdempotencyInProgressError",
    "IdempotencyKeyMismatchError",
    "IntegerBelowMinValueError",
    "InternalError",
    "InternalServerError",
    "InvalidAPIKeyError",
    "InvalidRequestError",
    "MCPAppNotConnectedError",
    "ModelNotFoundError",
    "NotFoundError",
    "ObjectNotFoundError",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "ProviderUnavailableError",
    "RateLimitError",
    "RateLimitExceededError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "ThreadBusyError",
    "TollwayError",
    "UnprocessableEntityError",
    "UnsupportedParameterError",
    "UpstreamError",
    "UpstreamInvalidRequestError",
    "UpstreamRateLimitedError",
    "UpstreamTimeoutError",
    "WalletInsufficientError",
    "WrongKeyTypeError",
    "from_openai_error",
]


class TollwayError(Exception):
    """The root of every SDK exception; also raised alone for a client misconfiguration (no API key...)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.request_id = request_id


class APIConnectionError(TollwayError):
    """The request never got an answer: connection refused or reset, DNS failure, protocol error."""

    def __init__(self, message: str = "Could not connect to Tollway.", *, request: httpx.Request) -> None:
        super().__init__(message)
        self.request = request


class APITimeoutError(APIConnectionError):
    def __init__(self, *, request: httpx.Request) -> None:
        super().__init__("The request to Tollway timed out.", request=request)


class APIStatusError(TollwayError):
    """Tollway answered with a non-2xx status; ``body`` is the decoded answer (the §3 envelope), if any."""

    status_code: ClassVar[int | None] = None
    error_code: ClassVar[str | None] = None
    status: int

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: object,
        code: str | None,
        type: str | None,
        param: str | None,
    ) -> None:
        request_id = response.headers.get("x-request-id")
        super().__init__(message, status=response.status_code, code=code, type=type, param=param, request_id=request_id)
        self.response = response
        self.body = body

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        where = f" (param: {self.param})" if self.param else ""
        return f"Error {self.status}{code}: {self.message}{where}"


# -- per status -------------------------------------------------------------------------------------------------


class BadRequestError(APIStatusError):
    status_code = 400


class AuthenticationError(APIStatusError):
    status_code = 401


class PaymentRequiredError(APIStatusError):
    status_code = 402


class PermissionDeniedError(APIStatusError):
    status_code = 403


class NotFoundError(APIStatusError):
    status_code = 404


class ConflictError(APIStatusError):
    status_code = 409


class PayloadTooLargeError(APIStatusError):
    status_code = 413


class UnprocessableEntityError(APIStatusError):
    status_code = 422


class RateLimitError(APIStatusError):
    status_code = 429


class InternalServerError(APIStatusError):
    """Any 5xx answer."""


# -- per code (SPEC §3) -----------------------------------------------------------------------------------------


class InvalidAPIKeyError(AuthenticationError):
    error_code = "invalid_api_key"


class WrongKeyTypeError(PermissionDeniedError):
    error_code = "wrong_key_type"


class ForbiddenError(PermissionDeniedError):
    error_code = "forbidden"


class ObjectNotFoundError(NotFoundError):
    error_code = "not_found"


class ModelNotFoundError(NotFoundError):
    error_code = "model_not_found"


class InvalidRequestError(BadRequestError):
    error_code = "invalid_request"


class UnsupportedParameterError(BadRequestError):
    error_code = "unsupported_parameter"


class ContextLengthExceededError(BadRequestError):
    error_code = "context_length_exceeded"


class IntegerBelowMinValueError(UnprocessableEntityError):
    error_code = "integer_below_min_value"


class RequestTooLargeError(PayloadTooLargeError):
    error_code = "request_too_large"


class IdempotencyKeyMismatchError(UnprocessableEntityError):
    error_code = "idempotency_key_mismatch"


class IdempotencyInProgressError(ConflictError):
    error_code = "idempotency_in_progress"


class BudgetSuspendedError(PaymentRequiredError):
    error_code = "budget_suspended"


class BudgetExhaustedError(PaymentRequiredError):
    error_code = "budget_exhausted"


class WalletInsufficientError(PaymentRequiredError):
    error_code = "wallet_insufficient"


class RateLimitExceededError(RateLimitError):
    error_code = "rate_limit_exceeded"


class UpstreamRateLimitedError(RateLimitError):
    error_code = "upstream_rate_limited"


class UpstreamInvalidRequestError(APIStatusError):
    """The provider refused the request; the status is the provider's (400, 413 or 422)."""

    error_code = "upstream_invalid_request"


class ThreadBusyError(ConflictError):
    error_code = "thread_busy"


class MCPAppNotConnectedError(ConflictError):
    error_code = "mcp_app_not_connected"


class UpstreamError(InternalServerError):
    error_code = "upstream_error"


class UpstreamTimeoutError(InternalServerError):
    error_code = "upstream_timeout"


class ServiceUnavailableError(InternalServerError):
    error_code = "service_unavailable"


class ProviderUnavailableError(InternalServerError):
    error_code = "provider_unavailable"


class InternalError(InternalServerError):
    error_code = "internal_error"


_BY_STATUS: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PaymentRequiredError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        PayloadTooLargeError,
        UnprocessableEntityError,
        RateLimitError,
    )
    if cls.status_code is not None
}
_BY_CODE: dict[str, type[APIStatusError]] = {
    cls.error_code: cls
    for cls in (
        InvalidAPIKeyError,
        WrongKeyTypeError,
        ForbiddenError,
        ObjectNotFoundError,
        ModelNotFoundError,
        InvalidRequestError,
        UnsupportedParameterError,
        ContextLengthExceededError,
        IntegerBelowMinValueError,
        RequestTooLargeError,
        IdempotencyKeyMismatchError,
        IdempotencyInProgressError,
        BudgetSuspendedError,
        BudgetExhaustedError,
        WalletInsufficientError,
        RateLimitExceededError,
        UpstreamRateLimitedError,
        UpstreamInvalidRequestError,
        ThreadBusyError,
        MCPAppNotConnectedError,
        UpstreamError,
        UpstreamTimeoutError,
        ServiceUnavailableError,
        ProviderUnavailableError,
        InternalError,
    )
    if cls.error_code is not None
}


def error_class(status: int, code: str | None) -> type[APIStatusError]:
    """The most specific class for an answer: its code's class (when its status agrees), else its status's."""
    by_code = _BY_CODE.get(code) if code else None
    if by_code is not None and by_code.status_code in (None, status):
        return by_code
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, APIStatusError)


def error_from_response(response: httpx.Response, body: object) -> APIStatusError:
    """Build the exception for a non-2xx answer from its §3 envelope (or from its status alone)."""
    error: dict[str, Any] = {}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
    code, kind, param = _text(error.get("code")), _text(error.get("type")), _text(error.get("param"))
    message = _text(error.get("message")) or _fallback_message(response)
    cls = error_class(response.status_code, code)
    return cls(message, response=response, body=body, code=code, type=kind, param=param)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _fallback_message(response: httpx.Response) -> str:
    excerpt = response.text[:200].strip() if response.content else ""
    return f"HTTP {response.status_code}" + (f": {excerpt}" if excerpt else "")


def from_openai_error(exc: Any) -> APIStatusError:
    """The SDK's exception for an ``openai.APIStatusError`` raised by the client of ``.openai()``, so that inference
    errors are handled with the same classes (``except BudgetExhaustedError``)::

        try:
            client.openai().chat.completions.create(...)
        except openai.APIStatusError as exc:
            raise tollway_sdk.from_openai_error(exc) from exc
    """
    theirs = getattr(exc, "response", None)
    status, content = getattr(theirs, "status_code", None), getattr(theirs, "content", None)
    if not isinstance(status, int) or not isinstance(content, bytes):
        raise TypeError("from_openai_error takes an openai.APIStatusError")
    # openai's response may come from its own HTTP library: rebuild it as an httpx one (status, headers, body).
    headers = [(str(k), str(v)) for k, v in getattr(theirs, "headers", {}).items()]
    request = getattr(theirs, "request", None)
    method, url = str(getattr(request, "method", "POST")), str(getattr(request, "url", "http://tollway.invalid/"))
    response = httpx.Response(status, headers=headers, content=content, request=httpx.Request(method, url))
    try:
        body: object = response.json()
    except ValueError:
        body = response.text
    return error_from_response(response, body)
