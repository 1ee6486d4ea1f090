"""The Responses API use case (SPEC §7.6): rebuild the context from ``previous_response_id``, run the same
pre-flight, rate limits, holds, fallback and settlement as chat (``InferenceService``), call ``openai`` providers
natively and every other kind through its chat adapter, answer in the Responses shape, and store the result.

Streams settle in the generator's ``finally`` exactly like chat streams; a stored response is written before the
terminal event (or the JSON answer) goes out, so a GET right after a completed create finds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from tollway.domain.catalog import Candidate, ProviderKind
from tollway.domain.chat_request import ChatRequest, parse_chat_request
from tollway.domain.estimation import ceil_quarter, delivered_bytes
from tollway.domain.pricing import Usage
from tollway.domain.responses_chat import CHAT_TO_RESPONSES_PARAMS, chat_body
from tollway.domain.responses_items import check_call_ids, output_as_input, prompt_token_bound
from tollway.domain.responses_output import ResponseEventStream, new_response_id, output_of_choice, usage_json
from tollway.domain.responses_request import ResponsesRequest
from tollway.domain.stored_responses import Owner, ResponseRepository, StoredResponse
from tollway.domain.usage import CallStatus
from tollway.errors import BelowMinValue, InvalidRequest, NotFound, ServiceUnavailable, TollwayError, UpstreamError
from tollway.providers.base import ChatResult, ChatStream, StreamChunk, UpstreamCall
from tollway.providers.openai.responses import NativeResponses, ResponsesCall
from tollway.services.billing import CallContext, Plan
from tollway.services.inference import Completion, InferenceService, StreamedCompletion
from tollway.services.ratelimit import Admission

log = logging.getLogger("tollway.responses")


class ResponsesService:
    def __init__(self, inference: InferenceService, store: ResponseRepository, native: NativeResponses) -> None:
        self._inference = inference
        self._store = store
        self._native = native

    # -- stored responses --------------------------------------------------------------------------------------

    async def get(self, ctx: CallContext, response_id: str) -> dict[str, Any]:
        return (await self._read(_owner(ctx), response_id, None)).body

    async def delete(self, ctx: CallContext, response_id: str) -> dict[str, Any]:
        try:
            deleted = await self._store.delete(_owner(ctx), response_id)
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        if not deleted:
            raise NotFound(f"No response with id '{response_id[:64]}' was found.")
        return {"id": response_id, "object": "response", "deleted": True}

    async def _read(self, owner: Owner, response_id: str, param: str | None) -> StoredResponse:
        try:
            stored = await self._store.get(owner, response_id)
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        if stored is None:
            raise NotFound(f"No response with id '{response_id[:64]}' was found.", param)
        return stored

    # -- create ------------------------------------------------------------------------------------------------

    async def create(self, ctx: CallContext, request: ResponsesRequest) -> Completion | StreamedCompletion:
        owner = _owner(ctx)
        previous: list[dict[str, Any]] = []
        if request.previous_response_id is not None:
            stored = await self._read(owner, request.previous_response_id, "previous_response_id")
            previous = stored.input_items + output_as_input(stored.body["output"])
        check_call_ids(previous, request.input)
        items = previous + request.input
        chat = _as_chat(request, items)
        inference = self._inference
        bound = prompt_token_bound(
            items, request.instructions, request.tools, request.text_format, inference.settings.image_token_allowance
        )
        try:
            plan = await inference.plan(ctx, chat, limit_param="max_output_tokens", prompt_bound=bound)
        except (InvalidRequest, BelowMinValue) as error:
            raise _renamed(error, request) from None
        admission = await inference.admit(ctx, chat, plan)
        await inference.hold(ctx, chat, plan, admission)
        try:
            if request.stream:
                return await self._stream(ctx, request, chat, items, plan, admission, owner)
            candidate, result = await self._complete(ctx, request, chat, items, plan)
            await inference.confirm(plan)
        except BaseException:
            inference.release(plan, admission)
            raise
        body = await self._settle_result(ctx, request, chat, plan, admission, candidate, result)
        if request.store:
            await self._save(owner, items, body)
        return Completion(body, candidate.provider.slug, {**admission.headers, **_clamp_header(plan)})

    async def _complete(
        self, ctx: CallContext, request: ResponsesRequest, chat: ChatRequest, items: list[dict[str, Any]], plan: Plan
    ) -> tuple[Candidate, ChatResult]:
        inference = self._inference
        deadline = inference.deadline()

        async def call_once(candidate: Candidate) -> ChatResult:
            limit = plan.limits[candidate.model.id]
            if candidate.provider.kind is ProviderKind.OPENAI:
                return await self._native.create(ResponsesCall(request, items, candidate, limit, deadline))
            call = UpstreamCall(chat, candidate, limit, ctx.request_id, ctx.session_id, deadline)
            return await inference.adapters.get(candidate.provider.kind).chat(call)

        return await inference.with_fallback(plan, call_once, inference.failure_logger(ctx, chat, plan), deadline)

    async def _settle_result(
        self,
        ctx: CallContext,
        request: ResponsesRequest,
        chat: ChatRequest,
        plan: Plan,
        admission: Admission,
        candidate: Candidate,
        result: ChatResult,
    ) -> dict[str, Any]:
        choice = result.body["choices"][0]
        output, status, incomplete = output_of_choice(choice)
        usage, method = self._inference.final_usage(plan, result.usage, delivered_bytes(choice["message"]))
        body = _skeleton(request)
        body.update(status=status, incomplete_details=incomplete, output=output, usage=usage_json(usage))
        outcome = (await ctx.delivered_status(), choice.get("finish_reason"), None)
        self._inference.settle(ctx, chat, plan, admission, candidate, usage, method, outcome, None)
        return body

    async def _save(self, owner: Owner, items: list[dict[str, Any]], body: dict[str, Any]) -> None:
        """Keep the result; a failure here loses only the stored copy, never the paid answer."""
        try:
            await self._store.save(owner, items, body)
        except Exception:
            log.warning("could not store response %s", body["id"], exc_info=True)

    async def _stream(
        self,
        ctx: CallContext,
        request: ResponsesRequest,
        chat: ChatRequest,
        items: list[dict[str, Any]],
        plan: Plan,
        admission: Admission,
        owner: Owner,
    ) -> StreamedCompletion:
        inference = self._inference
        deadline = inference.deadline()

        async def open_stream(candidate: Candidate) -> tuple[ChatStream, AsyncIterator[StreamChunk], StreamChunk]:
            limit = plan.limits[candidate.model.id]
            stream: ChatStream
            if candidate.provider.kind is ProviderKind.OPENAI:
                stream = await self._native.stream(ResponsesCall(request, items, candidate, limit, deadline))
            else:
                call = UpstreamCall(chat, candidate, limit, ctx.request_id, ctx.session_id, deadline)
                stream = await inference.adapters.get(candidate.provider.kind).chat_stream(call)
            return await inference.first_event(stream, candidate)

        failed = inference.failure_logger(ctx, chat, plan)
        candidate, (stream, iterator, first) = await inference.with_fallback(plan, open_stream, failed, deadline)
        await inference.confirm(plan, stream)
        relay = _Relay(self, ctx, request, chat, items, plan, admission, candidate, owner)
        events = relay.run(stream, iterator, first)
        headers = {**admission.headers, **_clamp_header(plan)}
        return StreamedCompletion(events, candidate.provider.slug, headers, relay.drained)


class _Relay:
    """One streamed response: hub chunks in, ``response.*`` events out; settles exactly once in ``finally``."""

    def __init__(
        self,
        service: ResponsesService,
        ctx: CallContext,
        request: ResponsesRequest,
        chat: ChatRequest,
        items: list[dict[str, Any]],
        plan: Plan,
        admission: Admission,
        candidate: Candidate,
        owner: Owner,
    ) -> None:
        self.service, self.ctx, self.request, self.chat, self.items = service, ctx, request, chat, items
        self.plan, self.admission, self.candidate, self.owner = plan, admission, candidate, owner
        self.writer = ResponseEventStream(_skeleton(request))

    def drained(self, error: TollwayError) -> list[dict[str, Any]]:
        """A graceful shutdown cut the stream (SPEC §14.3): it ends with ``response.failed``, in sequence."""
        return self.writer.fail(error.code, error.message)

    async def run(
        self, stream: ChatStream, iterator: AsyncIterator[StreamChunk], first: StreamChunk
    ) -> AsyncIterator[dict[str, Any] | TollwayError]:
        inference = self.service._inference
        plan, candidate = self.plan, self.candidate
        writer = self.writer
        reported: Usage | None = None
        finish: str | None = None
        status = CallStatus.INTERRUPTED
        error_code: str | None = None
        ttft_ms: int | None = None
        try:
            for event in writer.opening():
                yield event
            chunk: StreamChunk | None = first
            while chunk is not None:
                if chunk.usage is not None:
                    reported = chunk.usage
                for choice in chunk.chunk["choices"]:
                    if choice.get("index", 0) != 0:
                        continue
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                    events = writer.feed(choice["delta"])
                    if events and ttft_ms is None:
                        ttft_ms = int((time.perf_counter() - self.ctx.received_at) * 1000)
                    for event in events:
                        yield event
                inference.checkpoint(plan, candidate, writer.delivered_bytes, reported)
                chunk = await anext(iterator, None)
            usage, _ = inference.final_usage(plan, reported, writer.delivered_bytes)
            terminal = writer.finish(finish, usage)
            status = CallStatus.SUCCESS
            if self.request.store:
                await self.service._save(self.owner, self.items, writer.response)
            for event in terminal:
                yield event
        except UpstreamError as error:
            error_code = error.code
            for event in writer.fail(error.code, error.message):
                yield event
        finally:
            stream.close()
            if status is CallStatus.INTERRUPTED and finish is None:
                finish = "stop"
            delivered = writer.delivered_bytes
            usage, method = inference.final_usage(plan, reported, delivered)
            if status is CallStatus.INTERRUPTED and delivered == 0 and reported is None:
                usage, method = Usage(ceil_quarter(plan.prompt_bound), 0), "estimated"
            outcome = (status, finish, error_code)
            inference.settle(self.ctx, self.chat, plan, self.admission, candidate, usage, method, outcome, ttft_ms)


def _owner(ctx: CallContext) -> Owner:
    principal = ctx.principal
    assert principal.platform_id is not None
    return Owner(principal.platform_id, principal.end_user_id)


def _skeleton(request: ResponsesRequest) -> dict[str, Any]:
    """The result object before its output (SPEC §7.6), echoing the request's settings as OpenAI does."""
    text_format = request.text_format or {"type": "text"}
    return {
        "id": new_response_id(),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "model": request.model,
        "output": [],
        "usage": None,
        "previous_response_id": request.previous_response_id,
        "incomplete_details": None,
        "error": None,
        "metadata": request.metadata,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "parallel_tool_calls": True if request.parallel_tool_calls is None else request.parallel_tool_calls,
        "reasoning": {"effort": request.reasoning_effort},
        "store": request.store,
        "temperature": request.temperature,
        "text": {"format": text_format},
        "tool_choice": request.tool_choice or "auto",
        "tools": request.tools,
        "top_p": request.top_p,
        "user": request.user,
    }


def _as_chat(request: ResponsesRequest, items: list[dict[str, Any]]) -> ChatRequest:
    """The hub request every adapter, the holds and the usage log work from."""
    try:
        return parse_chat_request(chat_body(request, items))
    except InvalidRequest as error:
        raise _renamed(error, request) from None


def _renamed(error: TollwayError, request: ResponsesRequest) -> TollwayError:
    """An error found on the chat form of the request, pointed at the Responses field it came from."""
    param = error.param
    if param is None:
        return error
    head, _, rest = param.partition(".")
    base = head.partition("[")[0]
    if base == "response_format":
        new = request.format_param
    elif base == "tools" and rest.startswith("function."):
        new = f"{head}.{rest.removeprefix('function.')}"
    elif param == "tool_choice.function.name":
        new = "tool_choice.name"
    else:
        new = CHAT_TO_RESPONSES_PARAMS.get(base, param)
    if new != param:
        error.message = error.message.replace(f"'{param}'", f"'{new}'").replace(f"{param} ", f"{new} ")
        error.args = (error.message,)
        error.param = new
    return error


def _clamp_header(plan: Plan) -> dict[str, str]:
    clamped = plan.clamped_limit
    return {} if clamped is None else {"x-tollway-max-tokens-clamped": str(clamped)}
