"""The network boundary shared by adapters: POST with the four timeouts, capped bodies, SSE event reading, and
mapping of every transport or HTTP failure to UpstreamError / UpstreamTimeout with a redacted excerpt (§14.1).
An upstream 400/413/422 becomes ContextLengthExceeded or UpstreamInvalidRequest, as the dialect's ``read_error``
reads its error body (§3, §14.2)."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import re
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from tollway.domain import json_bytes
from tollway.errors import UpstreamError, UpstreamTimeout
from tollway.providers.base import REQUEST_FAULTS, ErrorReader, upstream_failure
from tollway.settings import Settings

_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|whsec_[A-Za-z0-9+/=_\-]+|AIza[0-9A-Za-z_\-]{10,}|Bearer\s+\S+)")
_EXCERPT_CHARS = 512
_PARAM_CHARS = 200


def redact(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait: ``retry-after-ms`` (OpenAI's), else ``Retry-After`` as seconds or as an HTTP date."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_quota(body: bytes) -> bool:
    return b"insufficient_quota" in body or (b"quota" in body.lower() and b"exceeded" in body.lower())


def rejection(slug: str, status: int, body: bytes, secret: str, read_error: ErrorReader) -> UpstreamError:
    """An upstream 400/413/422 as the client's error: the provider's status and parameter, its own message (else the
    body) as the redacted excerpt, and 400 ``context_length_exceeded`` when it refused the input as too long."""
    try:
        parsed: object = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    fault = read_error(parsed)
    excerpt = redact(fault.message or body.decode("utf-8", "replace"), secret)[:_EXCERPT_CHARS]
    param = redact(fault.param, secret)[:_PARAM_CHARS] if fault.param else None
    message = f"Upstream provider '{slug}' rejected the request: {excerpt}"
    return upstream_failure(message, status, dataclasses.replace(fault, param=param))


class Transport:
    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def _remaining(self, deadline: float) -> float:
        return max(0.001, deadline - asyncio.get_running_loop().time())

    async def open(
        self,
        provider_slug: str,
        url: str,
        payload: dict[str, Any],
        headers: dict[str, str],
        secret: str,
        deadline: float,
        *,
        read_error: ErrorReader,
    ) -> aiohttp.ClientResponse:
        """POST and wait for a 2xx response's headers (first-byte timeout); anything else raises. ``read_error``
        reads the dialect's error body when the provider refuses the request (400/413/422)."""
        timeout = min(self.settings.first_byte_timeout_s, self._remaining(deadline))
        try:
            async with asyncio.timeout(timeout):
                response = await self.session.post(url, data=_encode(payload), headers=headers, allow_redirects=False)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"Upstream provider '{provider_slug}' timed out before answering.") from exc
        except aiohttp.ClientError as exc:
            reason = redact(str(exc) or type(exc).__name__, secret)
            raise UpstreamError(f"Upstream provider '{provider_slug}' could not be reached: {reason}") from exc
        if 200 <= response.status < 300:
            return response
        try:
            body = await self._read_capped(response, deadline, limit=64 * 1024, slug=provider_slug, secret=secret)
        except UpstreamError:
            body = b""
        finally:
            response.release()
        if response.status in REQUEST_FAULTS:
            raise rejection(provider_slug, response.status, body, secret, read_error)
        excerpt = redact(body.decode("utf-8", "replace"), secret)[:_EXCERPT_CHARS]
        raise UpstreamError(
            f"Upstream provider '{provider_slug}' returned HTTP {response.status}: {excerpt}"[:700],
            upstream_status=response.status,
            retry_after_s=_retry_after(response.headers),
            quota_exhausted=response.status == 429 and _is_quota(body),
        )

    async def _read_capped(
        self, response: aiohttp.ClientResponse, deadline: float, *, limit: int, slug: str, secret: str
    ) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._remaining(deadline)):
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > limit:
                        raise UpstreamError(f"Upstream provider '{slug}' sent a body over the size limit.")
                    chunks.append(chunk)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"Upstream provider '{slug}' timed out while sending its answer.") from exc
        except aiohttp.ClientError as exc:
            reason = redact(str(exc) or type(exc).__name__, secret)
            raise UpstreamError(f"Upstream provider '{slug}' failed while sending its answer: {reason}") from exc
        return b"".join(chunks)

    async def read_json(
        self, response: aiohttp.ClientResponse, deadline: float, slug: str, secret: str
    ) -> dict[str, Any]:
        try:
            body = await self._read_capped(
                response, deadline, limit=self.settings.upstream_max_body_bytes, slug=slug, secret=secret
            )
        finally:
            response.release()
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"Upstream provider '{slug}' returned a body that is not valid JSON.") from exc
        if not isinstance(parsed, dict):
            raise UpstreamError(f"Upstream provider '{slug}' returned JSON that is not an object.")
        return parsed

    async def sse_data(self, response: aiohttp.ClientResponse, slug: str, secret: str) -> AsyncIterator[bytes]:
        """Yield each SSE event's joined ``data:`` payload; idle timeout between reads, events capped in size."""
        cap = self.settings.upstream_max_body_bytes
        idle = self.settings.idle_timeout_s
        buffer = b""
        content = response.content
        while True:
            try:
                async with asyncio.timeout(idle):
                    chunk = await content.readany()
            except TimeoutError as exc:
                raise UpstreamTimeout(f"Upstream provider '{slug}' stopped sending events.") from exc
            except aiohttp.ClientError as exc:
                reason = redact(str(exc) or type(exc).__name__, secret)
                raise UpstreamError(f"Upstream provider '{slug}' broke the stream: {reason}") from exc
            if not chunk:
                if buffer.strip():
                    data = _event_data(buffer)
                    if data is not None:
                        yield data
                return
            buffer += chunk
            if b"\r" in buffer:
                buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            while True:
                end = buffer.find(b"\n\n")
                if end < 0:
                    break
                event, buffer = buffer[:end], buffer[end + 2 :]
                if len(event) > cap:  # a whole event can arrive in one read: check it too
                    raise UpstreamError(f"Upstream provider '{slug}' sent an event over the size limit.")
                data = _event_data(event)
                if data is not None:
                    yield data
            if len(buffer) > cap:
                raise UpstreamError(f"Upstream provider '{slug}' sent an event over the size limit.")


def _encode(payload: dict[str, Any]) -> bytes:
    """orjson, except for integers beyond 64 bits (valid JSON that strict parsing keeps exact)."""
    return json_bytes.dumps(payload)


def _event_data(event: bytes) -> bytes | None:
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    parts = [line[5:].removeprefix(b" ") for line in lines]
    return parts[0] if len(parts) == 1 else b"\n".join(parts)
