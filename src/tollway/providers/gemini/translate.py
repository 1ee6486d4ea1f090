"""Pure translation between the hub (OpenAI chat) format and Gemini's generateContent API (SPEC §7.4).

Out: ``system``/``developer`` -> ``systemInstruction``; ``assistant`` -> role ``model``; tool calls ->
``functionCall`` parts; tool messages -> ``functionResponse`` parts (name from the matching call; content parsed as a
JSON object when it is one, else ``{"content": text}``); tools -> one ``functionDeclarations`` list; ``tool_choice``
-> ``functionCallingConfig``; sampling, output limit and JSON mode -> ``generationConfig``.
Back: candidates -> choices; ``thought`` parts -> ``reasoning_content``; calls get ids ``call_<24 random chars>``.
Thought signatures (``thoughtSignature`` on a ``functionCall`` part) ride on the hub's tool call as
``extra_content.google.thought_signature`` (Google's OpenAI-compatible spelling) and go back on the same part, so
multi-turn function calling keeps the model's reasoning state (SPEC §7.6).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Any, Final, Literal

import orjson

from tollway.domain.chat_request import ChatRequest
from tollway.domain.pricing import Usage
from tollway.domain.upstream import ChatResult
from tollway.errors import UpstreamError
from tollway.providers.base import Fault, InvalidForProvider, mentions_context_length, text, upstream_failure
from tollway.providers.content import (
    arguments_object,
    count,
    data_url,
    message_choice,
    system_text,
    text_of,
    tool_call_names,
    usage_of,
)
from tollway.providers.gemini import wire

IdFactory = Callable[[], str]
_ID_ALPHABET: Final = string.ascii_letters + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def build_payload(request: ChatRequest, output_limit: int) -> dict[str, Any]:
    """The generateContent body for a validated request (the ✗ cases were refused before, see capabilities)."""
    payload: dict[str, Any] = {"contents": contents(request.messages)}
    system = system_text(request.messages)
    if system is not None:
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        payload["tools"] = [{"functionDeclarations": [declaration(t["function"]) for t in request.tools]}]
    if request.tool_choice is not None:
        calling: dict[str, Any] = {"mode": wire.CALLING_MODES[request.tool_choice]}
        if request.tool_choice_name is not None:
            calling["allowedFunctionNames"] = [request.tool_choice_name]
        payload["toolConfig"] = {"functionCallingConfig": calling}
    payload["generationConfig"] = generation_config(request, output_limit)
    return payload


def generation_config(request: ChatRequest, output_limit: int) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": output_limit}
    optional = {
        "temperature": request.temperature,
        "topP": request.top_p,
        "presencePenalty": request.presence_penalty,
        "frequencyPenalty": request.frequency_penalty,
        "seed": request.seed,
        "topK": request.top_k,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    thinking = request.thinking  # /v1/messages: an enabled budget becomes Gemini's thinking budget, thoughts shown
    if thinking is not None and thinking.get("type") == "enabled":
        budget = min(thinking["budget_tokens"], output_limit - 1)
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": True}
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.n > 1:
        config["candidateCount"] = request.n
    response_format = request.response_format
    if response_format is not None and response_format["type"] != "text":
        config["responseMimeType"] = "application/json"
        if response_format["type"] == "json_schema":
            config["responseJsonSchema"] = response_format["json_schema"]["schema"]
    return config


def contents(messages: list[dict[str, Any]]) -> list[wire.Content]:
    """User and model turns of parts; consecutive same-role messages merge into one turn."""
    names = tool_call_names(messages)
    out: list[wire.Content] = []
    for index, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "developer"):
            continue
        if role == "assistant":
            parts = _model_parts(message, index)
        elif role == "tool":
            parts = [function_response(names[message["tool_call_id"]], text_of(message["content"]))]
        else:
            parts = _user_parts(message["content"])
        turn_role: Literal["user", "model"] = "model" if role == "assistant" else "user"
        if out and out[-1]["role"] == turn_role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": turn_role, "parts": parts})
    return out


def _user_parts(content: object) -> list[wire.Part]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[wire.Part] = []
    for part in content if isinstance(content, list) else ():
        if part["type"] == "text":
            parts.append({"text": part["text"]})
        elif part["type"] == "image_url":
            inline = data_url(part["image_url"]["url"])
            if inline is not None:  # http(s) URLs were refused before (capabilities)
                parts.append({"inlineData": {"mimeType": inline[0], "data": inline[1]}})
    return parts


def _model_parts(message: dict[str, Any], index: int) -> list[wire.Part]:
    text = text_of(message.get("content"))
    parts: list[wire.Part] = [{"text": text}] if text else []
    for call_index, call in enumerate(message.get("tool_calls") or ()):
        arguments = arguments_object(call["function"]["arguments"])
        if arguments is None:  # refused before the call (capabilities); kept here so translation is total
            path = f"messages[{index}].tool_calls[{call_index}].function.arguments"
            raise InvalidForProvider(f"{path} must be a JSON object for Gemini.", path)
        part: wire.Part = {"functionCall": {"name": call["function"]["name"], "args": arguments}}
        signature = thought_signature(call)
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def thought_signature(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def function_response(name: str, text: str) -> wire.Part:
    response = arguments_object(text)
    return {"functionResponse": {"name": name, "response": response if response is not None else {"content": text}}}


def declaration(function: dict[str, Any]) -> wire.FunctionDeclaration:
    out: wire.FunctionDeclaration = {"name": function["name"]}
    if function.get("description") is not None:
        out["description"] = function["description"]
    if function.get("parameters") is not None:
        out["parametersJsonSchema"] = function["parameters"]
    return out


def finish_reason(reason: object, called: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in wire.CONTENT_FILTER_REASONS:
        return "content_filter"
    return "tool_calls" if called else "stop"


def parse_usage(raw: object) -> Usage | None:
    """prompt = promptTokenCount; completion = candidatesTokenCount + thoughtsTokenCount; cached =
    cachedContentTokenCount. Absent counts are 0 (proto3 JSON omits zeros); a present invalid one voids usage."""
    if not isinstance(raw, dict) or not raw:
        return None
    values: dict[str, int] = {}
    for key in ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount"):
        value = count(raw.get(key, 0))
        if value is None:
            return None
        values[key] = value
    thoughts = values["thoughtsTokenCount"]
    completion = values["candidatesTokenCount"] + thoughts
    reasoning = thoughts if "thoughtsTokenCount" in raw else None
    return usage_of(values["promptTokenCount"], completion, values["cachedContentTokenCount"], reasoning)


def candidate_delta(candidate: dict[str, Any], new_id: IdFactory, first_call: int) -> dict[str, Any]:
    """The message (or stream delta) of one candidate's parts; tool calls are indexed from ``first_call``."""
    parts = candidate.get("content", {}).get("parts") if isinstance(candidate.get("content"), dict) else None
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        call = part.get("functionCall")
        if isinstance(call, dict) and isinstance(call.get("name"), str):
            arguments = orjson.dumps(call.get("args") or {}).decode()
            function = {"name": call["name"], "arguments": arguments}
            hub = {"index": first_call + len(calls), "id": new_id(), "type": "function", "function": function}
            if isinstance(part.get("thoughtSignature"), str) and part["thoughtSignature"]:
                hub["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
            calls.append(hub)
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else texts).append(part["text"])
    delta: dict[str, Any] = {}
    if texts:
        delta["content"] = "".join(texts)
    if thoughts:
        delta["reasoning_content"] = "".join(thoughts)
    if calls:
        delta["tool_calls"] = calls
    return delta


def completion_result(raw: dict[str, Any], slug: str, new_id: IdFactory = new_call_id) -> ChatResult:
    """A generateContent response as chat.completion choices (a blocked prompt: one empty content_filter choice)."""
    if "error" in raw:
        raise UpstreamError(f"Upstream provider '{slug}' returned an error: {_error_message(raw['error'])}")
    candidates = raw.get("candidates")
    usage = parse_usage(raw.get("usageMetadata"))
    if not candidates and isinstance(raw.get("promptFeedback"), dict) and raw["promptFeedback"].get("blockReason"):
        return ChatResult({"choices": [message_choice(0, {"content": ""}, "content_filter")]}, usage)
    if not isinstance(candidates, list) or not candidates or not all(isinstance(c, dict) for c in candidates):
        raise UpstreamError(f"Upstream provider '{slug}' returned a response without candidates.")
    choices = []
    for position, candidate in enumerate(candidates):
        message = candidate_delta(candidate, new_id, 0)
        calls = message.get("tool_calls")
        for call in calls or ():
            del call["index"]
        message.setdefault("content", None if calls else "")
        index = candidate.get("index", position)
        index = index if isinstance(index, int) else position
        choices.append(message_choice(index, message, finish_reason(candidate.get("finishReason"), bool(calls))))
    choices.sort(key=lambda c: c["index"])
    return ChatResult({"choices": choices}, usage)


def _error_message(error: object) -> str:
    if isinstance(error, dict):
        return f"{error.get('status') or error.get('code') or 'error'}: {error.get('message') or 'unknown'}"
    return str(error)


def error_event(raw: dict[str, Any], slug: str) -> UpstreamError:
    error = raw["error"]
    status = error.get("code") if isinstance(error, dict) else None
    return upstream_failure(
        f"Upstream provider '{slug}' reported an error mid-stream: {_error_message(error)}",
        status if isinstance(status, int) and 400 <= status <= 599 else None,
        read_error(raw),  # a refusal as the first event is the same refusal as an HTTP 400
    )


def read_error(body: object) -> Fault:
    """``{"error": {"code": 400, "message": "The input token count (1048577) exceeds the maximum number of tokens
    allowed (1048576).", "status": "INVALID_ARGUMENT", "details": [...]}}``; the parameter is the first
    ``google.rpc.BadRequest`` field violation's ``field`` when the details carry one."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return Fault()
    message = text(error.get("message"))
    return Fault(message, _violated_field(error.get("details")), mentions_context_length(message))


def _violated_field(details: object) -> str | None:
    for detail in details if isinstance(details, list) else ():
        violations = detail.get("fieldViolations") if isinstance(detail, dict) else None
        for violation in violations if isinstance(violations, list) else ():
            field = text(violation.get("field")) if isinstance(violation, dict) else None
            if field is not None:
                return field
    return None
