"""Rate-limit rules (SPEC §10): which limits apply (override > platform default > none), the admission decision over
the three windows with the TPM clamp, Retry-After, the ``x-ratelimit-*`` header values, and the refusal messages.

Pure. Both backends (in-process and Redis, whose Lua script mirrors ``decide`` line for line) feed it the state of
one end user's windows; the tests run the same scenarios through both and compare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tollway.domain.platform_settings import RateLimits

WINDOW_MS: Final = 60_000  # RPM and TPM: any sliding 60 s window
DAY_MS: Final = 86_400_000  # RPD: requests since 00:00 UTC
MAX_LIMIT: Final = 10**9


class Dimension(StrEnum):
    """In check order (SPEC §8 step 5): the first refusing dimension names the 429."""

    RPM = "rpm"
    RPD = "rpd"
    TPM = "tpm"


class Resolution(StrEnum):
    EXPLICIT = "explicit"  # an override row exists (its null fields still inherit the defaults)
    DEFAULT = "default"  # no override row; the platform sets at least one default
    NONE = "none"


class RateLimitBackendDown(Exception):
    """A shared backend (Redis) could not decide; the caller falls back to local limits (SPEC §10)."""


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    limits: RateLimits
    resolution: Resolution


def resolve_limits(override: RateLimits | None, defaults: RateLimits) -> EffectiveLimits:
    """Per dimension the override's value when non-null, else the platform default, else no limit."""
    if override is None:
        return EffectiveLimits(defaults, Resolution.DEFAULT if defaults.any_set else Resolution.NONE)
    merged = RateLimits(
        rpm=override.rpm if override.rpm is not None else defaults.rpm,
        tpm=override.tpm if override.tpm is not None else defaults.tpm,
        rpd=override.rpd if override.rpd is not None else defaults.rpd,
    )
    return EffectiveLimits(merged, Resolution.EXPLICIT)


def _share(limit: int | None, instances: int) -> int | None:
    return None if limit is None else max(1, limit // instances)


def shared_limits(limits: RateLimits, instances: int) -> RateLimits:
    """Degraded mode: each of ``instances`` enforces ⌊limit ÷ instances⌋, at least 1, on its own."""
    if instances <= 1:
        return limits
    return RateLimits(_share(limits.rpm, instances), _share(limits.tpm, instances), _share(limits.rpd, instances))


@dataclass(frozen=True, slots=True)
class TokenDemand:
    """The hold's token estimate (§9.3): T_p, plus ``n`` choices of up to ``output_limit`` tokens each; a TPM clamp
    may lower the output limit per choice down to ``min_output`` (the largest minimum over the candidates)."""

    prompt_tokens: int
    n: int
    output_limit: int
    min_output: int = 1

    def __post_init__(self) -> None:
        if self.n < 1 or self.prompt_tokens < 0 or self.output_limit < 0 or self.min_output < 1:
            raise ValueError(f"invalid token demand {self!r}")

    @property
    def estimate(self) -> int:
        return self.prompt_tokens + self.n * self.output_limit

    @property
    def minimum(self) -> int:
        return self.prompt_tokens + self.n * min(self.min_output, self.output_limit)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What ``adjust`` needs: the end user's key, the admission's id in its window, and which backend holds it."""

    key: str
    id: str
    origin: str


@dataclass(frozen=True, slots=True)
class OwnAdmissions:
    """One end user's admissions made by this instance that a shared backend must be told about (SPEC §10, the
    write-back before returning to it): ``entries`` are (id, local wall-clock ms, tokens) still in the 60 s window,
    ``requests`` the admissions of ``day`` to add to its day count, ``local_requests`` how many of them this
    instance decided on its own (what a successful write-back settles)."""

    key: str
    entries: tuple[tuple[str, int, int], ...]
    day: int
    requests: int
    local_requests: int


@dataclass(frozen=True, slots=True)
class WriteBack:
    """What to write back, read on the local wall clock at ``as_of_ms``: the shared backend maps each time to its
    own clock through ``as_of_ms`` (never earlier than it was, so an admission never leaves a window too soon)."""

    as_of_ms: int
    users: tuple[OwnAdmissions, ...]


@dataclass(slots=True)
class Decision:
    """A backend's answer for one admission, with the window state after it (for the headers)."""

    limits: RateLimits  # the limits enforced (the local share in degraded mode)
    refused: tuple[Dimension, ...]  # every refusing dimension, in check order; empty when admitted
    retry_after_ms: int  # refused: until every refusing dimension would admit it
    requests_in_window: int
    requests_today: int
    tokens_in_window: int
    window_reset_ms: int  # until the request window is empty again (0 when it is)
    tokens_reset_ms: int  # until the token window is empty again (0 when it is)
    day_reset_ms: int  # until the next 00:00 UTC
    reserved_tokens: int = 0
    clamped_output_limit: int | None = None
    reservation: Reservation | None = None

    @property
    def admitted(self) -> bool:
        return not self.refused


@dataclass(frozen=True, slots=True)
class Verdict:
    """``decide``'s outcome before any window is written."""

    refused: tuple[Dimension, ...]
    reserved_tokens: int
    clamped_output_limit: int | None


def decide(
    limits: RateLimits, demand: TokenDemand, requests_in_window: int, requests_today: int, tokens_in_window: int
) -> Verdict:
    """Admission is all or nothing: refused in any dimension means nothing is counted. TPM admits the estimate, or
    clamps the output limit per choice to ⌊(headroom − T_p) ÷ n⌋ when the headroom covers T_p + n × minimum."""
    refused: list[Dimension] = []
    if limits.rpm is not None and requests_in_window >= limits.rpm:
        refused.append(Dimension.RPM)
    if limits.rpd is not None and requests_today >= limits.rpd:
        refused.append(Dimension.RPD)
    reserved, clamp = demand.estimate, None
    if limits.tpm is not None:
        headroom = limits.tpm - tokens_in_window
        if demand.estimate > headroom:
            if demand.minimum <= headroom:
                clamp = (headroom - demand.prompt_tokens) // demand.n
                reserved = demand.prompt_tokens + demand.n * clamp
            else:
                refused.append(Dimension.TPM)
    if refused:
        return Verdict(tuple(refused), 0, None)
    return Verdict((), reserved, clamp)


# -- waits --------------------------------------------------------------------------------------------------------


def day_of(now_ms: int) -> int:
    return now_ms // DAY_MS


def ms_until_midnight(now_ms: int) -> int:
    return (day_of(now_ms) + 1) * DAY_MS - now_ms


def expiry_wait_ms(stamp_ms: int, now_ms: int) -> int:
    """Until an admission made at ``stamp_ms`` leaves the sliding window."""
    return max(0, stamp_ms + WINDOW_MS - now_ms)


def requests_wait_ms(count: int, limit: int, stamp_at: Callable[[int], int], now_ms: int) -> int:
    """Until enough admissions leave the window for one more: the (count − limit + 1)-th oldest, at index
    ``count − limit``, must expire (``limit`` may have been lowered below ``count``)."""
    index = count - limit
    return 0 if index < 0 else expiry_wait_ms(stamp_at(index), now_ms)


def tokens_wait_ms(
    entries_oldest_first: Iterable[tuple[int, int]], tokens_in_window: int, limit: int, minimum: int, now_ms: int
) -> int:
    """Until the window leaves room for the request's minimum; 60 s when even an empty window could not (§10)."""
    if minimum > limit:
        return WINDOW_MS
    excess = tokens_in_window - (limit - minimum)
    if excess <= 0:
        return 0
    freed = 0
    for stamp, tokens in entries_oldest_first:
        freed += tokens
        if freed >= excess:
            return expiry_wait_ms(stamp, now_ms)
    return WINDOW_MS


def retry_after_s(wait_ms: int) -> int:
    """Whole seconds, rounded up, at least 1 (SPEC §3)."""
    return max(1, -(-wait_ms // 1000))


# -- what the client sees -----------------------------------------------------------------------------------------


def format_reset(ms: int) -> str:
    """A duration in seconds as SPEC §10 writes them: ``0.5s``, ``42s``, ``59.999s``."""
    if ms <= 0:
        return "0s"
    seconds, millis = divmod(ms, 1000)
    if millis == 0:
        return f"{seconds}s"
    return f"{seconds}.{millis:03d}".rstrip("0") + "s"


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers: requests about RPM (RPD when no RPM is set), tokens about TPM; none for a
    dimension without a limit. Resets: until the window is back to its full limit (OpenAI's definition)."""
    limits = decision.limits
    headers: dict[str, str] = {}
    if limits.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limits.rpm - decision.requests_in_window))
        headers["x-ratelimit-reset-requests"] = format_reset(decision.window_reset_ms)
    elif limits.rpd is not None:
        headers["x-ratelimit-limit-requests"] = str(limits.rpd)
        headers["x-ratelimit-remaining-requests"] = str(max(0, limits.rpd - decision.requests_today))
        headers["x-ratelimit-reset-requests"] = format_reset(decision.day_reset_ms)
    if limits.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(limits.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, limits.tpm - decision.tokens_in_window))
        headers["x-ratelimit-reset-tokens"] = format_reset(decision.tokens_reset_ms)
    return headers


def refusal_message(decision: Decision, demand: TokenDemand) -> str:
    """Names the first refusing dimension (check order RPM, RPD, TPM) and what would be allowed."""
    limits = decision.limits
    retry = retry_after_s(decision.retry_after_ms)
    dimension = decision.refused[0]
    if dimension is Dimension.RPM:
        return (
            f"Rate limit exceeded: at most {limits.rpm} requests per minute (RPM) for this end user. "
            f"Retry after {retry} s."
        )
    if dimension is Dimension.RPD:
        return (
            f"Rate limit exceeded: at most {limits.rpd} requests per day (RPD) for this end user; the count resets "
            f"at 00:00 UTC. Retry after {retry} s."
        )
    if limits.tpm is not None and demand.minimum > limits.tpm:
        return (
            f"Rate limit exceeded: this request needs at least {demand.minimum} tokens but this end user may use "
            f"at most {limits.tpm} tokens per minute (TPM); shorten the prompt or lower the output limit."
        )
    return (
        f"Rate limit exceeded: at most {limits.tpm} tokens per minute (TPM) for this end user, and this request "
        f"needs at least {demand.minimum}. Retry after {retry} s."
    )
