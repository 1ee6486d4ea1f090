"""Rendering console pages: the Jinja2 environment (autoescaped, strict), the navigation of each kind of key, the
notices shown after an action, and how money and times are displayed."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from tollway.domain.keys import KeyKind
from tollway.errors import TollwayError
from tollway.http.console.security import secured
from tollway.http.console.static import static_url
from tollway.http.state import management
from tollway.services.console.sessions import ActiveSession

# The navigation of each kind of key, in order: a page that a new feature adds is one entry here (and one route).
NAV: Final[dict[KeyKind, tuple[tuple[str, str], ...]]] = {
    KeyKind.OPERATOR: (
        ("/console", "Platforms"),
        ("/console/providers", "Providers"),
        ("/console/models", "Models"),
        ("/console/reconcile", "Reconciliation"),
    ),
    KeyKind.PLATFORM: (
        ("/console", "Overview"),
        ("/console/wallet", "Wallet"),
        ("/console/end-users", "End users"),
        ("/console/keys", "API keys"),
        ("/console/llm-configs", "LLM configs"),
        ("/console/models", "Models"),
        ("/console/logs", "Usage logs"),
        ("/console/webhooks", "Webhooks"),
        ("/console/mcp-apps", "MCP apps"),
        ("/console/add-funds", "Add funds"),
    ),
    KeyKind.END_USER: (
        ("/console", "Budget"),
        ("/console/usage", "Usage"),
        ("/console/keys", "Keys"),
        ("/console/mcp", "MCP connections"),
    ),
}


def _card_topups_on(request: Request) -> bool:
    try:
        management(request).card_topups.enabled()
    except TollwayError:
        return False
    return True


# Entries shown only while their feature is configured on this gateway.
OPTIONAL_NAV: Final[dict[str, Callable[[Request], bool]]] = {"/console/add-funds": _card_topups_on}
KIND_NAMES: Final = {KeyKind.OPERATOR: "operator", KeyKind.PLATFORM: "platform", KeyKind.END_USER: "end user"}

# What a page says after a redirect (``?ok=<code>``): fixed sentences, never text from the request.
NOTICES: Final = {
    "saved": "Saved.",
    "revoked": "The key is revoked; it stops working within a second.",
    "deleted": "Deleted.",
    "replayed": "The delivery is queued again.",
    "topped-up": "The wallet is credited.",
    "disconnected": "Disconnected: the app's tokens are deleted.",
}
# The query parameter naming the secret a page shows once (post/redirect/get), and what the page says when that
# secret was already shown (a reload) or is too old.
SHOWN_PARAM: Final = "shown"
SHOWN_ALREADY: Final = "That secret was shown once and is not shown again; create a new one if it was not copied."
# What the wallet page says when Stripe Checkout sends the payer back (``?checkout=``, SPEC §17.2).
CHECKOUT_NOTICES: Final = {
    "paid": "Payment received: the wallet is credited as soon as Stripe confirms it (usually within seconds).",
    "cancelled": "Checkout was cancelled; nothing was charged.",
}


def plain(value: Any) -> str:
    """A value of an API object as text: USD amounts are ``orjson.Fragment`` (exact JSON numbers, §9.1)."""
    if value is None:
        return ""
    if isinstance(value, orjson.Fragment):
        return orjson.dumps(value).decode("ascii")
    return str(value)


def _usd(value: Any) -> str:
    """A USD amount as the API renders it (an exact JSON number), shown with at least two decimals."""
    if value is None:
        return "—"
    amount = Decimal(plain(value))
    text = f"{amount:,.9f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"${whole}.{decimals.ljust(2, '0')}"


def _when(value: str | None) -> str:
    """An RFC 3339 timestamp shortened for tables (UTC, to the second)."""
    if not value:
        return "—"
    return value.replace("T", " ")[:19] + " UTC"


ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["usd"] = _usd
ENV.filters["plain"] = plain
ENV.filters["when"] = _when
ENV.globals["static_url"] = static_url


def render(
    request: Request,
    session: ActiveSession | None,
    template: str,
    *,
    status: int = 200,
    error: TollwayError | None = None,
    **context: Any,
) -> Response:
    kind = session.principal.kind if session is not None else None
    notice = NOTICES.get(request.query_params.get("ok", ""))
    shown_once = getattr(request.state, "shown_once", None)
    if shown_once is None and SHOWN_PARAM in request.query_params and request.method == "GET":
        notice = SHOWN_ALREADY
    nav = [
        (href, label)
        for href, label in (NAV[kind] if kind is not None else ())
        if href not in OPTIONAL_NAV or OPTIONAL_NAV[href](request)
    ]
    html = ENV.get_template(template).render(
        nav=nav,
        kind=kind.value if kind is not None else None,
        kind_name=KIND_NAMES[kind] if kind is not None else None,
        csrf=session.csrf_token if session is not None else None,
        path=request.url.path,
        notice=notice,
        error=error,
        shown_once=shown_once,
        **context,
    )
    return secured(HTMLResponse(html, status_code=error.status if error is not None and status == 200 else status))


def redirect(path: str, notice: str | None = None) -> Response:
    """Post/redirect/get to one of our own paths (relative: never built from the request's Host)."""
    target = path if notice is None else f"{path}?ok={notice}"
    return secured(RedirectResponse(target, status_code=303))
