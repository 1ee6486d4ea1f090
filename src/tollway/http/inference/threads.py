"""Agent threads (SPEC §16.4): ``GET /v1/threads``, ``GET`` and ``DELETE /v1/threads/{id}``, ``GET
/v1/threads/{id}/items`` for inference keys (the owner is the key's platform and end user), and the platform's
list ``GET /v1/platforms/{pid}/threads?end_user_id=`` (scope ``manage``). Another owner's thread is 404."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.domain.clock import rfc3339
from tollway.domain.stored_responses import Owner
from tollway.domain.threads import THREAD_ID, Thread
from tollway.errors import NotFound
from tollway.http.guards import require_inference, require_platform_manage
from tollway.http.management.params import page_body, paging, path_id, query_id
from tollway.http.responses import json_response, no_content
from tollway.http.state import services


def render_thread(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "object": "thread",
        "created_at": rfc3339(thread.created_at),
        "updated_at": rfc3339(thread.updated_at),
        "response_count": thread.response_count,
        "metadata": thread.metadata,
    }


async def _caller(request: Request) -> Owner:
    principal = await require_inference(request)
    platform_id = principal.platform_id
    assert platform_id is not None, "inference keys always belong to a platform"
    return Owner(platform_id, principal.end_user_id)


def _thread_id(request: Request) -> str:
    """A thread id that cannot exist is an unknown object (SPEC §1.2)."""
    value = str(request.path_params["thread_id"])
    if THREAD_ID.fullmatch(value) is None:
        raise NotFound(f"No thread with id '{value[:64]}' was found.")
    return value


async def list_threads(request: Request) -> Response:
    owner = await _caller(request)
    pages = paging(request)
    threads, total = await services(request).threads.owned(owner, pages.offset, pages.limit)
    return json_response(page_body([render_thread(t) for t in threads], total, pages))


async def get_thread(request: Request) -> Response:
    owner = await _caller(request)
    return json_response(render_thread(await services(request).threads.get(owner, _thread_id(request))))


async def list_items(request: Request) -> Response:
    owner = await _caller(request)
    thread_id, pages = _thread_id(request), paging(request)
    items, total = await services(request).threads.items(owner, thread_id, pages.offset, pages.limit)
    return json_response(page_body(items, total, pages))


async def delete_thread(request: Request) -> Response:
    owner = await _caller(request)
    await services(request).threads.delete(owner, _thread_id(request))
    return no_content()


async def list_platform_threads(request: Request) -> Response:
    """Every owner's threads of the platform (each names its ``end_user_id``), or one end user's."""
    await require_platform_manage(request, str(request.path_params["pid"]))
    platform_id, pages = path_id(request, "pid"), paging(request)
    end_user_id = query_id(request, "end_user_id")
    threads, total = await services(request).threads.of_platform(platform_id, end_user_id, pages.offset, pages.limit)
    data = [{**render_thread(t), "end_user_id": t.end_user_id} for t in threads]
    return json_response(page_body(data, total, pages))


routes: list[BaseRoute] = [
    Route("/v1/threads", list_threads, methods=["GET"]),
    Route("/v1/threads/{thread_id}", get_thread, methods=["GET"]),
    Route("/v1/threads/{thread_id}", delete_thread, methods=["DELETE"]),
    Route("/v1/threads/{thread_id}/items", list_items, methods=["GET"]),
    Route("/v1/platforms/{pid}/threads", list_platform_threads, methods=["GET"]),
]
