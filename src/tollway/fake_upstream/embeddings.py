"""The fake upstream's embeddings and moderations: OpenAI's ``POST /v1/embeddings`` and ``POST /v1/moderations``
(also without ``/v1``) and Gemini's ``POST /v1beta/models/{model}:batchEmbedContents``, in their real wire formats.

Vectors are deterministic: component i of an input's vector is ``(b_i - 128) / 128`` where b is SHA-256 of the
input (its text, or its token ids joined by commas) stretched to the length asked for, so every value is exact in
float32 and float and base64 answers agree bit for bit (``fake_vector``). The default length is 8, or
``dimensions`` / ``outputDimensionality``. OpenAI's ``usage.prompt_tokens`` is ⌈UTF-8 bytes ÷ 4⌉ per text input
(at least 1) and the length of each token array, unless the model string sets ``in=N``; ``no_usage=1`` leaves usage
out. Gemini reports no usage, as the Gemini API does. Moderation flags an input that contains ``violence``.
Model strings choose failures as for chat: ``error?status=500&times=1``, ``garbage``, ``redirect``, ``ms``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct
from collections.abc import Callable
from typing import Any, Final

import orjson

from tollway.fake_upstream.gemini import GeminiDialect
from tollway.fake_upstream.http import Reply
from tollway.fake_upstream.responses import GARBAGE, render_error, render_scenario_error
from tollway.fake_upstream.scenarios import Scenario, ScenarioError

EMBEDDING_PATHS: Final = frozenset({"/v1/embeddings", "/embeddings"})
MODERATION_PATHS: Final = frozenset({"/v1/moderations", "/moderations"})
BATCH_EMBED: Final = "batchEmbedContents"
DEFAULT_DIMENSIONS: Final = 8
MAX_DIMENSIONS: Final = 4096
GEMINI_MAX_BATCH: Final = 100
_JSON: Final = ("content-type", "application/json")
_CATEGORIES: Final = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip

ScenarioOf = Callable[[str], Scenario | ScenarioError]
ShouldFail = Callable[[str, int | None], bool]


def fake_vector(value: str | list[int], dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The fake's deterministic embedding of one input (a text or a token array)."""
    seed = (value if isinstance(value, str) else ",".join(map(str, value))).encode()
    stream = b""
    counter = 0
    while len(stream) < dimensions:
        stream += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return [(byte - 128) / 128 for byte in stream[:dimensions]]


def fake_prompt_tokens(value: str | list[int]) -> int:
    return len(value) if isinstance(value, list) else max(1, -(-len(value.encode()) // 4))


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _json(status: int, body: bytes, delay_s: float = 0.0) -> Reply:
    return Reply(status, (_JSON,), body, delay_s=delay_s)


def _bad_request(message: str, param: str | None) -> Reply:
    return _json(400, render_error(message, "invalid_request_error", "invalid_request", param))


def _inputs(value: object) -> list[str | list[int]] | None:
    """OpenAI's four input shapes as a list of inputs, or None when malformed."""
    if isinstance(value, str) and value:
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(type(v) is int for v in value):
        return [value]
    if all(isinstance(v, str) and v for v in value):
        return list(value)
    if all(isinstance(v, list) and v and all(type(t) is int for t in v) for v in value):
        return list(value)
    return None


class FakeEmbeddings:
    """``openai(path, body)``, ``moderation(body)`` and ``gemini(model, body)``; no I/O of its own."""

    def __init__(self, clock: Callable[[], float], scenario_of: ScenarioOf, should_fail: ShouldFail) -> None:
        self._clock = clock
        self._scenario_of = scenario_of
        self._should_fail = should_fail
        self._serials = itertools.count(1)
        self._gemini = GeminiDialect()

    def _failure(self, model: str, gemini: bool) -> Reply | Scenario:
        """The scenario of ``model``, or the reply it forces (an error, garbage, a redirect)."""
        scenario = self._scenario_of(model)
        if isinstance(scenario, ScenarioError):
            if gemini:
                return _json(400, self._gemini.render_error(400, str(scenario), "invalid_fake_model"))
            return _bad_request(str(scenario), "model")
        delay_s = scenario.delay_ms / 1000
        if scenario.kind == "error" and self._should_fail(model, scenario.times):
            message = f"fake upstream: simulated HTTP {scenario.status}"
            if gemini:
                body = self._gemini.render_error(scenario.status, message, scenario.error_type, scenario.param)
            else:
                body = render_scenario_error(scenario.status, message, scenario.error_type, scenario.param)
            headers = [_JSON]
            if scenario.retry_after is not None:
                headers.append(("retry-after", scenario.retry_after))
            return Reply(scenario.status, tuple(headers), body, delay_s=delay_s)
        if scenario.kind == "garbage":
            return _json(200, GARBAGE, delay_s)
        if scenario.kind == "redirect":
            return Reply(307, (("location", "/v1/embeddings"), _JSON), b"{}", delay_s=delay_s)
        return scenario

    def openai(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _bad_request("We could not parse the JSON body of your request.", None)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _bad_request("you must provide a model parameter", "model")
        inputs = _inputs(body.get("input"))
        if inputs is None:
            return _bad_request("'$.input' is invalid. Please check the API reference.", "input")
        dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
        if type(dimensions) is not int or not 1 <= dimensions <= MAX_DIMENSIONS:
            return _bad_request("dimensions must be a positive integer", "dimensions")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return _bad_request("encoding_format must be float or base64", "encoding_format")
        scenario = self._failure(model, gemini=False)
        if isinstance(scenario, Reply):
            return scenario
        data = []
        for index, value in enumerate(inputs):
            vector = fake_vector(value, dimensions)
            data.append(
                {
                    "object": "embedding",
                    "index": index,
                    "embedding": _base64(vector) if encoding == "base64" else vector,
                }
            )
        answer: dict[str, Any] = {"object": "list", "data": data, "model": model}
        if not scenario.no_usage:
            tokens = scenario.prompt_tokens
            if tokens is None:
                tokens = sum(fake_prompt_tokens(value) for value in inputs)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json(200, orjson.dumps(answer), scenario.delay_ms / 1000)

    def moderation(self, body: Any) -> Reply:
        if not isinstance(body, dict):
            return _bad_request("We could not parse the JSON body of your request.", None)
        value = body.get("input")
        texts: list[str]
        if isinstance(value, str):
            texts = [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            texts = list(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            texts = [" ".join(str(v.get("text", "")) for v in value)]  # multimodal parts: one result
        else:
            return _bad_request("'input' is a required property", "input")
        model = body.get("model") if isinstance(body.get("model"), str) else "omni-moderation-latest"
        assert isinstance(model, str)
        scenario = self._failure(model, gemini=False)
        if isinstance(scenario, Reply):
            return scenario
        results = [self._verdict(text) for text in texts]
        answer = {"id": f"modr-fake{next(self._serials):012d}", "model": model, "results": results}
        return _json(200, orjson.dumps(answer), scenario.delay_ms / 1000)

    @staticmethod
    def _verdict(text: str) -> dict[str, Any]:
        violent = "violence" in text.lower()
        categories = {name: violent and name == "violence" for name in _CATEGORIES}
        scores = {name: (0.91 if categories[name] else 0.0001) for name in _CATEGORIES}
        return {"flagged": violent, "categories": categories, "category_scores": scores}

    def gemini(self, model: str, body: Any) -> Reply:
        dialect = self._gemini
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _json(400, dialect.render_error(400, "* BatchEmbedContentsRequest.requests: required", None))
        if len(requests) > GEMINI_MAX_BATCH:
            message = "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"
            return _json(400, dialect.render_error(400, message, None))
        texts: list[str] = []
        sizes: list[int] = []
        for index, request in enumerate(requests):
            if not isinstance(request, dict) or request.get("model") != f"models/{model}":
                message = f"* BatchEmbedContentsRequest.requests[{index}].model: must be models/{model}"
                return _json(400, dialect.render_error(400, message, None))
            content = request.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
                message = f"* BatchEmbedContentsRequest.requests[{index}].content: parts required"
                return _json(400, dialect.render_error(400, message, None))
            size = request.get("outputDimensionality", DEFAULT_DIMENSIONS)
            if type(size) is not int or not 1 <= size <= MAX_DIMENSIONS:
                message = f"* BatchEmbedContentsRequest.requests[{index}].output_dimensionality: invalid"
                return _json(400, dialect.render_error(400, message, None))
            texts.append("".join(str(p.get("text", "")) for p in parts))
            sizes.append(size)
        scenario = self._failure(model, gemini=True)
        if isinstance(scenario, Reply):
            return scenario
        embeddings = [{"values": fake_vector(text, size)} for text, size in zip(texts, sizes, strict=True)]
        return _json(200, orjson.dumps({"embeddings": embeddings}), scenario.delay_ms / 1000)
