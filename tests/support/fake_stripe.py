"""A fake Stripe API for card top-up tests (SPEC §17.2): a real aiohttp server on a free port, in a thread with its
own loop, that the official ``stripe`` library is pointed at (``TOLLWAY_STRIPE_API_BASE``). It implements
``POST /v1/checkout/sessions`` as Stripe does (form-encoded, nested ``a[0][b]`` keys, Bearer secret key,
``Idempotency-Key``: a repeated key gets its first answer, or a 400 ``idempotency_error`` when the parameters
differ), answers a realistic Checkout Session object, and records what it received. ``completed_event`` builds the
signed webhook's body Stripe would send when that session is paid; tests sign it themselves with Stripe's scheme."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from tests.support.servers import free_port


@dataclass(frozen=True)
class StripeCall:
    path: str
    headers: dict[str, str]
    form: dict[str, str]  # the flat form fields exactly as sent: {"line_items[0][quantity]": "1", ...}


class FakeStripe:
    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: list[StripeCall] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self._answers: dict[str, tuple[dict[str, str], int, bytes]] = {}  # Idempotency-Key -> form, status, body
        self.refuse_with: int | None = None  # answer every call with this status and a Stripe error body
        self.answering = threading.Event()  # cleared: sessions are created but their answers wait until it is set
        self.answering.set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-stripe", daemon=True)

    # -- the API ------------------------------------------------------------------------------------------------

    async def _create_session(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw)))
        with self._lock:
            self.calls.append(StripeCall(request.path, dict(request.headers), form))
            refuse = self.refuse_with
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _error(401, "invalid_request_error", f"Invalid API Key provided: {self.secret_key[:8]}****")
        if refuse is not None:
            return _error(refuse, "api_error", "Something went wrong on Stripe's end.")
        # Stripe's idempotency: a key's first answer is replayed for the same parameters (a 400 for others).
        key = request.headers.get("Idempotency-Key")
        with self._lock:
            first = self._answers.get(key) if key else None
        if first is not None:
            first_form, status, body = first
            if first_form != form:
                return _error(400, "idempotency_error", "Keys for idempotent requests can only be used with the same "
                              "parameters they were first used with.")  # fmt: skip
            replayed = {"Idempotent-Replayed": "true"}
            return web.Response(status=status, body=body, headers=replayed, content_type="application/json")
        status, body = self._answer(request.content_type, form)
        if key:
            with self._lock:
                self._answers[key] = (form, status, body)
        await asyncio.get_running_loop().run_in_executor(None, self.answering.wait, 60)
        return web.Response(status=status, body=body, content_type="application/json")

    def _answer(self, content_type: str, form: dict[str, str]) -> tuple[int, bytes]:
        if content_type != "application/x-www-form-urlencoded":
            return _error_body(400, "invalid_request_error", "Form-encoded body expected.")
        if form.get("mode") != "payment" or "success_url" not in form:
            return _error_body(400, "invalid_request_error", "Missing required param: mode or success_url.")
        session = _session(form)
        with self._lock:
            self.sessions[session["id"]] = session
        return 200, orjson.dumps(session)

    # -- for tests ----------------------------------------------------------------------------------------------

    def completed_event(self, session_id: str, **changes: Any) -> dict[str, Any]:
        """The ``checkout.session.completed`` event of a session this server created, paid unless ``changes``
        say otherwise (``payment_status``, ``amount_total``, ``currency``, ``metadata``...)."""
        with self._lock:
            session = dict(self.sessions[session_id])
        session.update(status="complete", payment_status="paid", payment_intent="pi_" + os.urandom(12).hex())
        session.update(changes)
        return event("checkout.session.completed", session)

    def received(self) -> list[StripeCall]:
        with self._lock:
            return list(self.calls)

    # -- the server ---------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> FakeStripe:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def event(event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot event as Stripe POSTs it to a webhook endpoint."""
    return {
        "id": "evt_" + os.urandom(12).hex(),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "data": {"object": dict(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def _session(form: Mapping[str, str]) -> dict[str, Any]:
    session_id = "cs_test_" + os.urandom(24).hex()
    unit = int(form["line_items[0][price_data][unit_amount]"])
    quantity = int(form.get("line_items[0][quantity]", "1"))
    now = int(time.time())
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": unit * quantity,
        "amount_total": unit * quantity,
        "cancel_url": form.get("cancel_url"),
        "client_reference_id": form.get("client_reference_id"),
        "created": now,
        "currency": form.get("line_items[0][price_data][currency]"),
        "customer": None,
        "expires_at": now + 86_400,
        "livemode": False,
        "metadata": {k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")},
        "mode": form["mode"],
        "payment_intent": None,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": form.get("success_url"),
        "url": f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
    }


def _error_body(status: int, error_type: str, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": {"type": error_type, "message": message}})


def _error(status: int, error_type: str, message: str) -> web.Response:
    status, body = _error_body(status, error_type, message)
    return web.Response(status=status, body=body, content_type="application/json")
