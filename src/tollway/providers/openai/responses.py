"""OpenAI's own Responses API for providers of kind ``openai`` (SPEC §7.6): ``POST {base_url}/responses`` with the
full rebuilt input and ``store: false`` (Tollway keeps the state). The answer is read back into the hub's chat
shapes (a chat.completion choice, chat.completion.chunk deltas) so that billing and rendering are shared with
every other provider; the upstream ``output`` itself rides along (``ChatResult.body["output"]``, and stream events
of items Tollway does not model as ``passthrough`` chunks) so that reasoning and hosted-tool items reach the client
unchanged (SPEC §7.6). The translation functions are pure; ``NativeResponses`` is the only network code here.
"""

from __future__ import annotations

from typing import Any, Final

from tollway.domain.pricing import Usage
from tollway.domain.responses_params import NATIVE_FIELDS
from tollway.domain.upstream import ChatResult, ResponsesCall, StreamChunk
from tollway.errors import UpstreamError
from tollway.providers.content import count, usage_of
from tollway.providers.openai.translate import read_error
from tollway.providers.streaming import SSEChatStream, answered, event_json
from tollway.providers.transport import Transport

_FORWARDED: Final = ("temperature", "top_p", "user", "parallel_tool_calls")
_MODELLED: Final = frozenset({"message", "function_call"})  # output items read into the hub's chat shapes
_INCOMPLETE_FINISH: Final = {"max_output_tokens": "length", "content_filter": "content_filter"}


def build_payload(call: ResponsesCall) -> dict[str, Any]:
    request = call.request
    payload: dict[str, Any] = {
        "model": call.candidate.model.upstream_model,
        "input": native_input(call.items),
        "max_output_tokens": call.output_limit,
        "store": False,  # Tollway stores the conversation itself (SPEC §7.6)
    }
    if request.instructions is not None:
        payload["instructions"] = request.instructions
    if request.tools:
        payload["tools"] = request.tools
    if request.tool_choice is not None:
        payload["tool_choice"] = request.tool_choice
    for key in _FORWARDED:
        value = getattr(request, key)
        if value is not None:
            payload[key] = value
    for key in NATIVE_FIELDS:  # the parity fields of SPEC §7.6, as sent
        if request.body.get(key) is not None:
            payload[key] = request.body[key]
    text = {"format": request.text_format, "verbosity": request.verbosity}
    if any(value is not None for value in text.values()):
        payload["text"] = {key: value for key, value in text.items() if value is not None}
    reasoning = request.body.get("reasoning")
    if isinstance(reasoning, dict) and any(value is not None for value in reasoning.values()):
        payload["reasoning"] = {key: value for key, value in reasoning.items() if value is not None}
    if request.stream:
        payload["stream"] = True
    return payload


def native_input(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Canonical items as OpenAI takes them: assistant text as a string, other roles' text as ``input_text``.
    Reasoning items without ``encrypted_content`` are left out: with ``store: false`` OpenAI cannot resolve them
    (ask for ``include: ["reasoning.encrypted_content"]`` to carry reasoning across turns)."""
    out: list[dict[str, Any]] = []
    for item in items:
        if item["type"] == "reasoning" and not item.get("encrypted_content"):
            continue
        if "extra_content" in item:  # Gemini's state on a call made over chat: not an OpenAI field
            item = {k: v for k, v in item.items() if k != "extra_content"}
        content: Any = item.get("content")
        if item["type"] != "message" or isinstance(content, str):
            out.append(item)
        elif item["role"] == "assistant":
            out.append({**item, "content": "".join(part["text"] for part in content)})
        else:
            parts = [_input_part(part) for part in content]
            out.append({**item, "content": parts})
    return out


def _input_part(part: dict[str, Any]) -> dict[str, Any]:
    if part["type"] == "input_image":
        return {"detail": "auto", **part}
    return {"type": "input_text", "text": part["text"]}


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    details = raw.get("input_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else None
    out_details = raw.get("output_tokens_details")
    reasoning = count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else None
    return usage_of(count(raw.get("input_tokens")), count(raw.get("output_tokens")), cached, reasoning)


def _finish(response: dict[str, Any], has_calls: bool) -> str:
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return _INCOMPLETE_FINISH.get(reason or "", "length")
    return "tool_calls" if has_calls else "stop"


def _raise_failed(response: dict[str, Any], slug: str) -> None:
    if response.get("status") == "failed" or response.get("error"):
        error = response.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        raise UpstreamError(f"Upstream provider '{slug}' reported a failed response: {message or 'unknown'}")


def normalise_response(raw: dict[str, Any], slug: str) -> ChatResult:
    """A Responses object as one chat.completion choice (text joined, function calls as ``tool_calls``)."""
    _raise_failed(raw, slug)
    output = raw.get("output")
    if not isinstance(output, list):
        raise UpstreamError(f"Upstream provider '{slug}' returned a response without output.")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        if item.get("type") == "message":
            texts += [part["text"] for part in item.get("content") or () if part.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            function = {"name": str(item["name"]), "arguments": str(item["arguments"])}
            calls.append({"id": str(item["call_id"]), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish(raw, bool(calls))}
    # The output as the provider gave it, reasoning and hosted-tool items included: it is what the client gets.
    return ChatResult({"choices": [choice], "output": output}, parse_usage(raw.get("usage")))


class EventTranslator:
    """Responses stream events -> hub chunks: text deltas, function calls by output index, and the terminal
    ``response.completed`` / ``response.incomplete`` as the finish chunk carrying the usage. Every event of an
    output item Tollway does not model (reasoning, hosted-tool calls, anything unknown) becomes a chunk with no
    choices and the event under ``passthrough``, in sequence."""

    def __init__(self, slug: str) -> None:
        self._slug = slug
        self._calls: dict[int, int] = {}  # output_index -> tool-call index
        self._passthrough: set[int] = set()  # output indexes of items Tollway does not model
        self.finished = False

    def feed(self, data: bytes) -> list[StreamChunk]:
        event = event_json(data, self._slug)
        kind = event.get("type")
        if self._is_passthrough(event):
            return [StreamChunk({"choices": [], "passthrough": event}, None)]
        if kind == "response.output_text.delta":
            return [_chunk({"content": str(event["delta"])})]
        if kind == "response.output_item.added" and event["item"].get("type") == "function_call":
            item = event["item"]
            index = self._calls.setdefault(int(event["output_index"]), len(self._calls))
            function = {"name": str(item["name"]), "arguments": str(item.get("arguments") or "")}
            call = {"index": index, "id": str(item["call_id"]), "type": "function", "function": function}
            return [_chunk({"tool_calls": [call]})]
        if kind == "response.function_call_arguments.delta":
            index = self._calls[int(event["output_index"])]
            return [_chunk({"tool_calls": [{"index": index, "function": {"arguments": str(event["delta"])}}]})]
        if kind in ("response.completed", "response.incomplete"):
            self.finished = True
            response = event["response"]
            finish = _finish(response, bool(self._calls))
            choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
            return [StreamChunk({"choices": [choice]}, parse_usage(response.get("usage")))]
        if kind == "response.failed":
            _raise_failed({**event["response"], "status": "failed"}, self._slug)
        if kind == "error":
            message = event.get("message") or "unknown"
            raise UpstreamError(f"Upstream provider '{self._slug}' reported an error mid-stream: {message}")
        return []

    def _is_passthrough(self, event: dict[str, Any]) -> bool:
        index = event.get("output_index")
        if not isinstance(index, int):
            return False
        item = event.get("item")
        added = event.get("type") == "response.output_item.added" and isinstance(item, dict)
        if added and isinstance(item, dict) and item.get("type") not in _MODELLED:
            self._passthrough.add(index)
        return index in self._passthrough

    def end(self) -> list[StreamChunk]:
        raise UpstreamError(f"Upstream provider '{self._slug}' ended the stream early.")


def _chunk(delta: dict[str, Any]) -> StreamChunk:
    return StreamChunk({"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}, None)


class NativeResponses:
    """The network side: ``POST {base_url}/responses`` with ``Authorization: Bearer``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def _open(self, call: ResponsesCall) -> Any:
        candidate = call.candidate
        headers = {"Authorization": f"Bearer {candidate.api_key}", "Content-Type": "application/json"}
        return await self._transport.open(
            candidate.provider.slug,
            candidate.provider.base_url + "/responses",
            build_payload(call),
            headers,
            candidate.api_key,
            call.deadline,
            read_error=read_error,
        )

    async def create(self, call: ResponsesCall) -> ChatResult:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        with answered(response.status, slug):
            raw = await self._transport.read_json(response, call.deadline, slug, call.candidate.api_key)
            return normalise_response(raw, slug)

    async def stream(self, call: ResponsesCall) -> SSEChatStream:
        response = await self._open(call)
        slug = call.candidate.provider.slug
        return SSEChatStream(self._transport, response, slug, call.candidate.api_key, EventTranslator(slug))
