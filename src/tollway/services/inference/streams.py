"""What every streamed paid call shares: waiting for the first upstream event (until then a failure can still fall
back), counting what was delivered, and the one settlement: before the terminal event when the stream ends, else
from the relay's ``finally`` (SPEC §7.3, §9.4), else, for a relay that never started, when the answer is over
(``Unrelayed``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tollway.domain.catalog import Candidate
from tollway.domain.estimation import ceil_quarter, estimate_completion_tokens
from tollway.domain.ports.providers import ChatStream
from tollway.domain.pricing import Usage
from tollway.domain.tariffs import Metered
from tollway.domain.upstream import StreamChunk
from tollway.domain.usage import CallStatus
from tollway.errors import UpstreamError, UpstreamTimeout
from tollway.services.inference.call import Outcome, PaidCall, Plan, Priced

Opened = tuple[ChatStream, AsyncIterator[StreamChunk], StreamChunk]


async def first_event(stream: ChatStream, candidate: Candidate, timeout_s: float) -> Opened:
    """Wait for the stream's first event (first-byte timeout); the stream is closed when none comes."""
    iterator = aiter(stream)
    try:
        async with asyncio.timeout(timeout_s):
            first = await anext(iterator)
    except TimeoutError as exc:
        stream.close()
        raise UpstreamTimeout(f"Upstream provider '{candidate.provider.slug}' sent no event.") from exc
    except StopAsyncIteration as exc:
        stream.close()
        raise UpstreamError(f"Upstream provider '{candidate.provider.slug}' sent an empty stream.") from exc
    except BaseException:
        stream.close()
        raise
    return stream, iterator, first


def metered(plan: Plan, reported: Usage | None, delivered_bytes: int) -> Metered:
    """The usage the provider reported, else an estimate from the prompt bound and the bytes delivered (§9.4)."""
    if reported is not None:
        return Metered(reported, "reported")
    return Metered(Usage(ceil_quarter(plan.prompt_bound), estimate_completion_tokens(delivered_bytes)), "estimated")


@dataclass(slots=True)
class StreamTally:
    """What a relay has seen so far; ``settle`` turns it into the call's one settlement."""

    received_at: float
    delivered: int = 0  # bytes of content delivered to the client
    reported: Usage | None = None
    finish: str | None = None
    status: CallStatus = CallStatus.INTERRUPTED  # until the stream ends normally
    error_code: str | None = None
    ttft_ms: int | None = None

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = int((time.perf_counter() - self.received_at) * 1000)

    def metered(self, plan: Plan) -> Metered:
        """What the stream is billed for so far: the reported usage, else the estimate (§9.4); a stream cut before
        any output is billed for its prompt. The final usage event and the settlement both read it here."""
        if self.status is CallStatus.INTERRUPTED and self.delivered == 0 and self.reported is None:
            return Metered(Usage(ceil_quarter(plan.prompt_bound), 0), "estimated")
        return metered(plan, self.reported, self.delivered)

    def settle(self, call: PaidCall, candidate: Candidate) -> Priced | None:
        """The call's one settlement, returning what it charges (None when it was settled already). A relay calls
        it before yielding its terminal event (the settlement is then in the journal before the client can see the
        answer complete, SPEC §9.4), and again from its ``finally`` for a stream that never got there."""
        if call.resolved:
            return None
        finish = self.finish
        if self.status is CallStatus.INTERRUPTED and finish is None:
            finish = "stop"
        outcome = Outcome(self.status, finish, self.error_code)
        return call.settle(candidate, self.metered(call.plan), outcome, self.ttft_ms)


class Unrelayed:
    """An opened stream until its relay takes it (``take``, the relay's first step). The HTTP layer calls ``ended``
    once the answer is over, however it ended (``StreamedCompletion.ended``): a stream never taken (its client left
    before the first event, so the server never started the body and no relay ``finally`` runs) has its upstream
    closed and its call settled at once as a stream cut before its output, for its prompt (SPEC §7.3), rather than
    left to the hold sweeper. Once taken, the relay settles and ``ended`` does nothing."""

    __slots__ = ("_opened",)

    def __init__(self, call: PaidCall, candidate: Candidate, stream: ChatStream) -> None:
        self._opened: tuple[PaidCall, Candidate, ChatStream] | None = (call, candidate, stream)

    def take(self) -> None:
        self._opened = None

    def ended(self) -> None:
        if self._opened is None:
            return
        call, candidate, stream = self._opened
        self._opened = None
        stream.close()
        StreamTally(call.ctx.received_at).settle(call, candidate)
