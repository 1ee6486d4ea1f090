"""Steady mixed load for the fault suite: workers on their own event loop (a thread) send plain calls and streams
for the scenario's end users, alternating between the two instances, and record what each request got: status,
request id, whether the answer was complete (a plain 200 with its usage; a stream's usage chunk and ``[DONE]``),
and when. A scenario may add long streams, and cut them all at once from the client side."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from tests.faults.cluster import EndUser

WORKERS = 10
LIMITED_SHARE = 3
PAUSE_S = 0.1  # between one worker's requests; and after a refused connection (an instance that is down)
USER = [{"role": "user", "content": "hi"}]


@dataclass
class Sent:
    user: EndUser
    instance: int
    model: str
    stream: bool
    started: float  # time.monotonic()
    ended: float = 0.0
    first_event: float = 0.0  # streams: when the first event arrived
    status: int = 0  # 0: no HTTP answer (the connection was refused or dropped before the status line)
    request_id: str = ""
    retry_after: str | None = None
    complete: bool = False
    cut: bool = False  # the client hung up on purpose
    last_event: bytes = b""
    failure: str = ""


@dataclass
class Load:
    urls: list[str]
    users: list[EndUser]
    sent: list[Sent] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _client: httpx.AsyncClient | None = None
    _stopping: asyncio.Event | None = None
    _workers: list[asyncio.Task[None]] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _turns: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-load", daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            self._client = client
            self._workers = [asyncio.create_task(self._worker(w)) for w in range(WORKERS)]
            self._ready.set()
            await self._stopping.wait()
            await asyncio.gather(*self._workers)
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:  # a scenario's long streams end by themselves (cut, drained, or their instance killed)
                await asyncio.wait(others, timeout=30)

    def stop(self) -> list[Sent]:
        """Stop sending; the requests on their way finish first. Returns every record."""
        assert self._loop is not None and self._stopping is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=90)
        assert not self._thread.is_alive(), "the load did not stop"
        return self.sent

    def submit(self, work: Coroutine[Any, Any, Any]) -> Future[Any]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    async def _worker(self, w: int) -> None:
        assert self._stopping is not None
        # End users with an RPM limit get LIMITED_SHARE times the traffic of the others: over their limit in every
        # scenario, so that each fault meets the limiter at work.
        schedule = [u for u in self.users for _ in range(LIMITED_SHARE if u.rpm else 1)]
        i = 0
        while not self._stopping.is_set():
            n = w + i * WORKERS
            user = schedule[n % len(schedule)]
            stream = n % 3 == 0
            turn = self._turns.get(user.id, 0)  # each end user's requests alternate between the instances
            self._turns[user.id] = turn + 1
            sent = await self.send(user, turn % 2, "paced" if stream else "quick", stream)
            i += 1
            await asyncio.sleep(PAUSE_S if sent.status else 2 * PAUSE_S)

    async def send(self, user: EndUser, instance: int, model: str, stream: bool) -> Sent:
        """One request, recorded (also when it is cancelled: the client hanging up)."""
        assert self._client is not None
        sent = Sent(user, instance, model, stream, time.monotonic())
        self.sent.append(sent)
        body: dict[str, Any] = {"model": model, "messages": USER, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        headers = {"Authorization": f"Bearer {user.key}"}
        try:
            async with self._client.stream(
                "POST", self.urls[instance] + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                sent.status = response.status_code
                sent.request_id = response.headers.get("x-request-id", "")
                sent.retry_after = response.headers.get("retry-after")
                if stream and response.status_code == 200:
                    await _read_stream(response, sent)
                else:
                    content = await response.aread()
                    if response.status_code == 200:
                        answer = orjson.loads(content)
                        sent.complete = answer["usage"]["completion_tokens"] > 0 and bool(answer["choices"])
                    else:
                        sent.failure = content.decode(errors="replace")[:300]
        except asyncio.CancelledError:
            sent.cut = True
            raise
        except httpx.HTTPError as exc:
            sent.failure = f"{type(exc).__name__}: {exc}"
        finally:
            sent.ended = time.monotonic()
        return sent


async def _read_stream(response: httpx.Response, sent: Sent) -> None:
    usage = done = False
    async for line in response.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:].encode()
        sent.first_event = sent.first_event or time.monotonic()
        sent.last_event = data
        if data == b"[DONE]":
            done = True
        elif b'"usage"' in data:
            chunk = orjson.loads(data)
            usage = usage or bool(chunk.get("usage") and chunk["usage"].get("completion_tokens"))
    sent.complete = usage and done


class LongStreams:
    """Long streams started by a scenario on the load's loop; ``cut`` hangs up on all of them at once."""

    def __init__(self, load: Load, users: list[EndUser], instances: list[int], count: int) -> None:
        self.load = load
        self.sent: list[Sent] = []
        self._tasks: list[asyncio.Task[Sent]] = []
        load.submit(self._open(users, instances, count)).result(timeout=10)

    async def _open(self, users: list[EndUser], instances: list[int], count: int) -> None:
        for i in range(count):
            task = asyncio.create_task(
                self.load.send(users[i % len(users)], instances[i % len(instances)], "long", True)
            )
            self._tasks.append(task)
        await asyncio.sleep(0)
        self.sent = [s for s in self.load.sent if s.model == "long"][-count:]

    def wait_first_events(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not all(s.first_event for s in self.sent):
            assert time.monotonic() < deadline, [(s.status, s.failure) for s in self.sent if not s.first_event]
            time.sleep(0.05)

    def cut(self) -> float:
        """Every stream's connection closed by the client in the same instant; when that was."""

        async def cancel() -> float:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            return time.monotonic()

        cut_at: float = self.load.submit(cancel()).result(timeout=10)
        return cut_at

    def wait_ended(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(s.ended for s in self.sent):
            assert time.monotonic() < deadline, "long streams still open"
            time.sleep(0.05)
