"""The fake upstream's Gemini dialect (``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent``, SSE with ``alt=sse`` else a JSON array): GenerateContentResponse objects with
candidates, functionCall and thought parts, finish reasons and usageMetadata, and Google's error envelope, as the
official ``google-genai`` SDK types define them.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from tollway.fake_upstream.responses import CONTEXT_LENGTH, Completion, Envelope

MODEL_VERSION_SUFFIX: Final = "-fake-001"
THOUGHT_SIGNATURE: Final = "ZmFrZS10aG91Z2h0LXNpZ25hdHVyZQ=="  # on every functionCall part, as Gemini 2.5+ sends it
_FINISH_REASONS: Final = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
# type=context_length_exceeded
CONTEXT_MESSAGE: Final = "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
_BAD_REQUEST: Final = "type.googleapis.com/google.rpc.BadRequest"
_STATUSES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _text(parts: object) -> str:
    if not isinstance(parts, list):
        return ""
    return "".join(
        p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )


def _response_text(answer: dict[str, Any]) -> str:
    response = answer.get("response")
    if isinstance(response, dict) and set(response) == {"content"} and isinstance(response["content"], str):
        return response["content"]
    return orjson.dumps(response).decode()


def usage_metadata(completion: Completion) -> dict[str, Any] | None:
    """Zero counts are left out, as proto3 JSON does."""
    usage = completion.usage
    if usage is None:
        return None
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    counts = {
        "promptTokenCount": usage["prompt_tokens"],
        "candidatesTokenCount": usage["completion_tokens"] - reasoning,
        "totalTokenCount": usage["prompt_tokens"] + usage["completion_tokens"],
        "cachedContentTokenCount": usage["prompt_tokens_details"]["cached_tokens"],
        "thoughtsTokenCount": reasoning,
    }
    return {key: value for key, value in counts.items() if value}


class GeminiDialect:
    def neutral_body(self, body: dict[str, Any]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        system = body.get("systemInstruction")
        if isinstance(system, dict):
            messages.append({"role": "system", "content": _text(system.get("parts"))})
        for content in body.get("contents") or ():
            if isinstance(content, dict):
                role = "assistant" if content.get("role") == "model" else "user"
                parts = content.get("parts")
                answers = (
                    [p["functionResponse"] for p in parts if isinstance(p, dict) and "functionResponse" in p]
                    if (isinstance(parts, list))
                    else []
                )
                # functionResponse parts are tool results (an agent answers them)
                messages += [{"role": "tool", "content": _response_text(a)} for a in answers if isinstance(a, dict)]
                if not answers or _text(parts):
                    messages.append({"role": role, "content": _text(parts)})
        config = body.get("generationConfig")
        config = config if isinstance(config, dict) else {}
        return {"messages": messages, "n": config.get("candidateCount"), "max_tokens": config.get("maxOutputTokens")}

    def _response(
        self, envelope: Envelope, candidates: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        response: dict[str, Any] = {"candidates": candidates}
        if usage is not None:
            response["usageMetadata"] = usage
        response["modelVersion"] = envelope.model + MODEL_VERSION_SUFFIX
        response["responseId"] = f"fake{envelope.serial:012d}"
        return response

    def _candidates(
        self, completion: Completion, parts: list[dict[str, Any]], finish: str | None
    ) -> list[dict[str, Any]]:
        candidates = []
        for index in range(completion.choices):
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if finish is not None:
                candidate["finishReason"] = finish
            candidate["index"] = index
            candidates.append(candidate)
        return candidates

    def _answer_parts(self, completion: Completion) -> list[dict[str, Any]]:
        if completion.tool_name is None:
            return [{"text": completion.text}]
        try:
            args = orjson.loads(completion.text)
        except orjson.JSONDecodeError:
            args = {}
        call = {"name": completion.tool_name, "args": args if isinstance(args, dict) else {}}
        return [{"functionCall": call, "thoughtSignature": THOUGHT_SIGNATURE}]

    def render_completion(self, completion: Completion, envelope: Envelope) -> bytes:
        parts = self._answer_parts(completion)
        if completion.reasoning is not None:
            parts.insert(0, {"text": completion.reasoning, "thought": True})
        finish = _FINISH_REASONS[completion.finish_reason]
        candidates = self._candidates(completion, parts, finish)
        return orjson.dumps(self._response(envelope, candidates, usage_metadata(completion)))

    def stream_objects(
        self, completion: Completion, envelope: Envelope, cut_after: int | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """The response objects of a stream, and whether it is complete (the last one carries the finish)."""
        usage = usage_metadata(completion)
        interim = None if usage is None else {"promptTokenCount": usage.get("promptTokenCount", 0)}
        objects = []
        if completion.reasoning is not None:
            thought = [{"text": completion.reasoning, "thought": True}]
            objects.append(self._response(envelope, self._candidates(completion, thought, None), interim))
        if completion.tool_name is not None:
            pieces = [self._answer_parts(completion)] if cut_after is None else []
        else:
            texts = completion.pieces if cut_after is None else completion.pieces[:cut_after]
            pieces = [[{"text": text}] for text in texts]
        for parts in pieces:
            objects.append(self._response(envelope, self._candidates(completion, parts, None), interim))
        if cut_after is not None:
            return objects, False
        finish = self._candidates(completion, [{"text": ""}], _FINISH_REASONS[completion.finish_reason])
        objects.append(self._response(envelope, finish, usage))
        return objects, True

    def render_stream(
        self, completion: Completion, envelope: Envelope, *, include_usage: bool, cut_after: int | None
    ) -> list[bytes]:
        objects, _ = self.stream_objects(completion, envelope, cut_after)
        return [b"data: " + orjson.dumps(o) + b"\r\n\r\n" for o in objects]

    def render_array(self, completion: Completion, envelope: Envelope) -> bytes:
        """``:streamGenerateContent`` without ``alt=sse``: one JSON array of the response objects."""
        objects, _ = self.stream_objects(completion, envelope, None)
        return b"[" + b",\r\n".join(orjson.dumps(o) for o in objects) + b"]"

    def render_error(self, status: int, message: str, error_type: str | None, param: str | None = None) -> bytes:
        if error_type == "insufficient_quota":
            message = "You exceeded your current quota, please check your plan and billing details."
        elif error_type == CONTEXT_LENGTH:
            message = CONTEXT_MESSAGE
        elif error_type:
            message = f"{message} ({error_type})"
        code = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        error: dict[str, Any] = {"code": status, "message": message, "status": code}
        if param:  # a google.rpc.BadRequest detail names the field
            violation = {"field": param, "description": message}
            error["details"] = [{"@type": _BAD_REQUEST, "fieldViolations": [violation]}]
        return orjson.dumps({"error": error})

    def render_error_event(self, status: int, message: str, error_type: str | None) -> bytes:
        return b"data: " + self.render_error(status, message, error_type) + b"\r\n\r\n"
