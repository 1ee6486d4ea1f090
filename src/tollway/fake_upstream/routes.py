"""Routes of the fake upstream: chat in every wire format it speaks (OpenAI, ASI:One, Anthropic, Gemini),
image generation (``fake_images``), embeddings and moderations (``embeddings``), ``/v1/models`` and the
``/_fake/`` control endpoints.

Every request outside ``/_fake/`` is recorded (the last 1000; the count keeps counting).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final
from urllib.parse import unquote

import orjson

from tollway.fake_upstream.anthropic import AnthropicDialect
from tollway.fake_upstream.asi1 import ASI1Dialect
from tollway.fake_upstream.embeddings import BATCH_EMBED, EMBEDDING_PATHS, MODERATION_PATHS, FakeEmbeddings
from tollway.fake_upstream.gemini import GeminiDialect
from tollway.fake_upstream.http import Reply, Request
from tollway.fake_upstream.images import IMAGE_PATHS, FakeImages
from tollway.fake_upstream.openai_responses import ResponsesDialect
from tollway.fake_upstream.responses import (
    DONE_EVENT,
    GARBAGE,
    Dialect,
    Envelope,
    OpenAIDialect,
    build_completion,
    render_error,
    render_models,
)
from tollway.fake_upstream.scenarios import Scenario, ScenarioError, parse_model

MAX_RECORDED = 1000
_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_RESPONSES_PATHS = frozenset({"/v1/responses", "/responses"})
_JSON = ("content-type", "application/json")
_SSE = (("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"))
_SCENARIO_CACHE_SIZE = 4096
_OPENAI: Final = OpenAIDialect()
_ANTHROPIC: Final = AnthropicDialect()
_GEMINI: Final = GeminiDialect()
_RESPONSES: Final = ResponsesDialect()
_ASI1_PATHS: Final[dict[str, Dialect]] = {
    "/asi1/v1/chat/completions": ASI1Dialect(),
    "/asi1-old/v1/chat/completions": ASI1Dialect(old=True),
}
_ANTHROPIC_PATH: Final = "/v1/messages"
_GEMINI_PREFIXES: Final = ("/v1beta/models/", "/v1/models/")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the fake saw it; ``body`` is the parsed JSON, or None when empty or not JSON."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe state shared with test threads: recorded requests and the ``times=K`` failure counters."""

    def __init__(self, max_recorded: int = MAX_RECORDED) -> None:
        self._lock = threading.Lock()
        self._recorded: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._count = 0
        self._failures: dict[str, int] = {}

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._recorded.append(request)
            self._count += 1

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    @property
    def count(self) -> int:
        return self._count

    def reset(self) -> None:
        with self._lock:
            self._recorded.clear()
            self._count = 0
            self._failures.clear()

    def should_fail(self, model: str, times: int | None) -> bool:
        """True while ``model`` has failed fewer than ``times`` times (always True when times is None)."""
        if times is None:
            return True
        with self._lock:
            failed = self._failures.get(model, 0)
            if failed >= times:
                return False
            self._failures[model] = failed + 1
            return True


class FakeRoutes:
    """The request handler: ``Request -> Reply``, no I/O of its own. Paths choose the wire format: OpenAI
    (``/v1/chat/completions``), ASI:One (``/asi1/v1/...``, old shapes at ``/asi1-old/v1/...``), Anthropic
    (``/v1/messages``) and Gemini (``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``)."""

    def __init__(self, log: RequestLog, clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self._clock = clock
        self._ids = itertools.count(1)
        self._scenarios: dict[str, Scenario | ScenarioError] = {}
        self._images = FakeImages(clock)
        self._embeddings = FakeEmbeddings(clock, self._scenario, self._log.should_fail)

    def __call__(self, request: Request) -> Reply:
        path, _, query = request.target.partition("?")
        if path.startswith("/_fake/"):
            return self._control(request.method, path)
        body = _parse_json(request.body)
        self._log.record(RecordedRequest(request.method, path, query, request.headers, body))
        if request.method == "POST":
            if path in IMAGE_PATHS:
                if _missing_key(request):
                    return _unauthorized()
                return self._images.reply(path, body, self._scenario, self._log.should_fail)
            if path in _CHAT_PATHS:
                return _unauthorized() if _missing_key(request) else self._chat(_OPENAI, body, _key(request))
            if path in EMBEDDING_PATHS:
                return _unauthorized() if _missing_key(request) else self._embeddings.openai(body)
            if path in MODERATION_PATHS:
                return _unauthorized() if _missing_key(request) else self._embeddings.moderation(body)
            if path in _ASI1_PATHS:
                dialect = _ASI1_PATHS[path]
                return _unauthorized() if _missing_key(request) else self._chat(dialect, body, _key(request))
            if path == _ANTHROPIC_PATH:
                return self._anthropic(request, body)
            if path in _RESPONSES_PATHS:
                if _missing_key(request):
                    return _unauthorized()
                problem = _RESPONSES.check(body)
                if problem is not None:
                    return _json(400, problem)
                stream = body.get("stream") is True
                return self._answer(_RESPONSES, body["model"], body, _key(request), stream=stream, include_usage=True)
            if path.startswith(_GEMINI_PREFIXES):
                return self._gemini(request, path, query, body)
        if request.method == "GET" and path in _MODELS_PATHS:
            return _unauthorized() if _missing_key(request) else _json(200, render_models(int(self._clock())))
        message = f"Invalid URL ({request.method} {path})"
        return _json(404, render_error(message, "invalid_request_error", "unknown_url"))

    def _control(self, method: str, path: str) -> Reply:
        if method == "GET" and path == "/_fake/requests":
            recorded = [r.to_json() for r in self._log.requests]
            return _json(200, orjson.dumps({"count": self._log.count, "requests": recorded}))
        if method == "POST" and path == "/_fake/reset":
            self._log.reset()
            return _json(200, b'{"reset":true}')
        return _json(404, render_error(f"Invalid URL ({method} {path})", "invalid_request_error", "unknown_url"))

    def _chat(self, dialect: Dialect, body: Any, key: str) -> Reply:
        if not isinstance(body, dict):
            return _bad_request("We could not parse the JSON body of your request.", "invalid_json", None)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            return _bad_request("you must provide a model parameter", "missing_required_parameter", "model")
        if not isinstance(messages, list):
            return _bad_request("'messages' is a required property", "missing_required_parameter", "messages")
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        stream = body.get("stream") is True
        return self._answer(dialect, model, body, key, stream=stream, include_usage=include_usage)

    def _anthropic(self, request: Request, body: Any) -> Reply:
        dialect = _ANTHROPIC
        if not request.headers.get("x-api-key", "").strip() and _missing_key(request):  # newer SDKs send a Bearer
            return _json(401, dialect.render_error(401, "x-api-key header is required", None))
        if "anthropic-version" not in request.headers:
            return _json(400, dialect.render_error(400, "anthropic-version: header is required", None))
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return _json(400, dialect.render_error(400, "model: Field required", None))
        if not isinstance(body.get("messages"), list) or not isinstance(body.get("max_tokens"), int):
            return _json(400, dialect.render_error(400, "messages and max_tokens: Field required", None))
        stream = body.get("stream") is True
        return self._answer(dialect, body["model"], body, _key(request), stream=stream, include_usage=True)

    def _gemini(self, request: Request, path: str, query: str, body: Any) -> Reply:
        dialect = _GEMINI
        name, _, method = path.split("/models/", 1)[1].rpartition(":")
        if method == BATCH_EMBED and name:
            if not request.headers.get("x-goog-api-key", "").strip():
                message = "Method doesn't allow unregistered callers. Please use an API key."
                return _json(403, dialect.render_error(403, message, None))
            return self._embeddings.gemini(unquote(name), body)
        if method not in ("generateContent", "streamGenerateContent") or not name:
            return _json(404, dialect.render_error(404, f"Method not found: {path}", None))
        if not request.headers.get("x-goog-api-key", "").strip():
            message = "Method doesn't allow unregistered callers. Please use an API key."
            return _json(403, dialect.render_error(403, message, None))
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return _json(
                400, dialect.render_error(400, "* GenerateContentRequest.contents: contents is not specified", None)
            )
        stream = method == "streamGenerateContent"
        if stream and "alt=sse" not in query.split("&"):
            return self._answer(
                dialect, unquote(name), body, _key(request), stream=False, include_usage=True, array=True
            )
        return self._answer(dialect, unquote(name), body, _key(request), stream=stream, include_usage=True)

    def _answer(
        self,
        dialect: Dialect,
        model: str,
        body: dict[str, Any],
        key: str,
        *,
        stream: bool,
        include_usage: bool,
        array: bool = False,
    ) -> Reply:
        scenario = self._scenario(model)
        if isinstance(scenario, ScenarioError):
            if dialect is _OPENAI or isinstance(dialect, ASI1Dialect):
                return _bad_request(str(scenario), "invalid_fake_model", "model")
            return _json(400, dialect.render_error(400, str(scenario), "invalid_fake_model"))
        delay_s = scenario.delay_ms / 1000
        if scenario.kind == "error" and self._log.should_fail(model, scenario.times):
            return _error_reply(dialect, scenario, delay_s, key)
        if scenario.kind == "stream-error" and not stream:
            return _error_reply(dialect, scenario, delay_s, key)
        if scenario.kind == "redirect":
            return Reply(307, (("location", "/v1/chat/completions"), _JSON), b"{}", delay_s=delay_s)
        n = next(self._ids)
        # Like the CDN in front of real providers, every answer sets a cookie: a gateway must never send it back.
        headers = (("x-request-id", f"req_fake_{n}"), ("set-cookie", f"__cf_bm=fake{n}; Path=/; HttpOnly"))
        if scenario.kind == "garbage":
            if stream:
                return Reply(200, _SSE + headers, events=(b"data: " + GARBAGE + b"\n\n", DONE_EVENT), delay_s=delay_s)
            return Reply(200, (_JSON, *headers), GARBAGE, delay_s=delay_s)
        if scenario.kind == "stream-cut" and not stream:
            return Reply(None, delay_s=delay_s)
        completion = build_completion(scenario, dialect.neutral_body(body))
        envelope = Envelope(f"chatcmpl-fake{n:012d}", int(self._clock()), model, n)
        if array:
            return Reply(200, (_JSON, *headers), _GEMINI.render_array(completion, envelope), delay_s=delay_s)
        if not stream:
            return Reply(200, (_JSON, *headers), dialect.render_completion(completion, envelope), delay_s=delay_s)
        include_usage = include_usage and not scenario.no_usage
        events = dialect.render_stream(completion, envelope, include_usage=include_usage, cut_after=scenario.cut_after)
        if scenario.kind == "stream-error":
            message = "fake upstream: simulated mid-stream error"
            events.append(dialect.render_error_event(scenario.status, message, scenario.error_type))
        return Reply(
            200,
            _SSE + headers,
            events=tuple(events),
            delay_s=delay_s,
            event_delay_s=scenario.event_delay_ms / 1000,
            cut=scenario.kind == "stream-cut",
        )

    def _scenario(self, model: str) -> Scenario | ScenarioError:
        cached = self._scenarios.get(model)
        if cached is None:
            try:
                cached = parse_model(model)
            except ScenarioError as error:
                cached = error
            if len(self._scenarios) >= _SCENARIO_CACHE_SIZE:
                self._scenarios.clear()
            self._scenarios[model] = cached
        return cached


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _missing_key(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() != "bearer" or not token.strip()


def _json(status: int, body: bytes) -> Reply:
    return Reply(status, (_JSON,), body)


def _unauthorized() -> Reply:
    message = "You didn't provide an API key. You need to provide your API key in an Authorization header."
    return _json(401, render_error(message, "invalid_request_error", "invalid_api_key"))


def _bad_request(message: str, code: str, param: str | None) -> Reply:
    return _json(400, render_error(message, "invalid_request_error", code, param))


def _key(request: Request) -> str:
    """The API key the client presented, in whichever header its wire format uses."""
    headers = request.headers
    bearer = headers.get("authorization", "").partition(" ")[2].strip()
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or bearer


def _error_reply(dialect: Dialect, scenario: Scenario, delay_s: float, key: str) -> Reply:
    headers = [_JSON]
    if scenario.retry_after is not None:
        headers.append(("retry-after", scenario.retry_after))
    if scenario.retry_after_ms is not None:
        headers.append(("retry-after-ms", scenario.retry_after_ms))
    message = f"fake upstream: simulated HTTP {scenario.status}"
    if scenario.status == 401:  # like real providers, echo the key that was refused (gateways must redact it)
        message += f"; incorrect API key provided: {key}"
    body = dialect.render_error(scenario.status, message, scenario.error_type, scenario.param)
    return Reply(scenario.status, tuple(headers), body, delay_s=delay_s)
