"""What both clients share: building a request from a ``Call`` and reading its answer with exact decimals
(``_json.py``) or raising the error class of its code (``_errors.py``). The loop that sends a request with retries
(``_retries.py``) is ``_async/api_client.py`` and, generated from it, ``_sync/api_client.py``."""

from __future__ import annotations

import os
import platform
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from tollway_sdk import _json
from tollway_sdk._errors import APIConnectionError, APITimeoutError, TollwayError, error_from_response
from tollway_sdk._retries import RetryPolicy
from tollway_sdk._version import __version__

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API operation: method, path, what to send, and how to read the answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Mapping[str, Any] | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    money: bool = False  # a money call: it carries an Idempotency-Key, generated unless the caller gave one
    idempotency_key: str | None = None
    created_flag: bool = False  # the answer object gets ``created``: whether the status was 201 (or 200)


def new_idempotency_key() -> str:
    return f"tollway-sdk-{uuid.uuid4()}"


class BaseClient:
    """Configuration and request building, shared by the sync and async clients."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | httpx.URL | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        api_key = api_key if api_key is not None else os.environ.get("TOLLWAY_API_KEY")
        if not api_key:
            raise TollwayError("No API key: pass api_key= or set the TOLLWAY_API_KEY environment variable.")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.api_key = api_key
        self.base_url = _deployment_url(base_url if base_url is not None else os.environ.get("TOLLWAY_BASE_URL"))
        self.timeout = timeout
        self.max_retries = max_retries
        self._default_headers = dict(default_headers or {})
        self._retries = RetryPolicy(max_retries=max_retries)

    @property
    def default_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"tollway-sdk/{__version__} python/{platform.python_version()}",
            **self._default_headers,
        }

    def _build_request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        headers = self.default_headers
        content: bytes | None = None
        if call.body is not None:
            content = _json.dumps(call.body)
            headers["Content-Type"] = "application/json"
        if call.money or call.idempotency_key is not None:
            # One key per call, reused by every retry of it: the server then applies the call at most once.
            headers["Idempotency-Key"] = call.idempotency_key or new_idempotency_key()
        url = self.base_url.join(call.path.lstrip("/"))  # relative: a base URL with a path prefix keeps it
        return http.build_request(
            call.method, url, params=dict(call.query), content=content, headers=headers, timeout=self.timeout
        )

    def _answer(self, call: Call[T], response: httpx.Response) -> T:
        body = _decode(response)
        if not response.is_success:
            raise error_from_response(response, body)
        if call.created_flag and isinstance(body, dict):
            body["created"] = response.status_code == 201
        return call.parse(body)


def _deployment_url(value: str | httpx.URL | None) -> httpx.URL:
    """The deployment's root URL; a trailing ``/v1`` (as given to OpenAI clients) is accepted and dropped."""
    text = str(value or DEFAULT_BASE_URL).rstrip("/")
    if text.endswith("/v1"):
        text = text[: -len("/v1")]
    return httpx.URL(text + "/")


def _decode(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return _json.loads(response.content)
    except ValueError:
        return response.text


def connection_error(exc: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request=request)
    return APIConnectionError(f"Could not connect to Tollway: {exc}", request=request)
