"""What every console response carries (SPEC §17.1, §15): a strict Content-Security-Policy (everything from
Tollway itself, no inline script or style), no framing, no sniffing, no referrer beyond the origin, and the cookies'
flags: HttpOnly, SameSite=Strict, Path=/console, Secure whenever the console is reached over https."""

from __future__ import annotations

import hmac
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from tollway.http.state import services

SESSION_COOKIE: Final = "tollway_session"
SIGN_IN_COOKIE: Final = "tollway_sign_in"  # the sign-in form's CSRF token, before any session exists
COOKIE_PATH: Final = "/console"
SIGN_IN_TTL_S: Final = 3600

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secured(response: Response, *, cache: str = "no-store") -> Response:
    for name, value in HEADERS.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = cache
    return response


def is_https(request: Request) -> bool:
    public = services(request).settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, secure=is_https(request), httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """A cross-site form post fails this when the browser sends ``Origin`` (all current ones do on POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    public = services(request).settings.public_url
    allowed = {own} if not public else {own, "/".join(public.split("/", 3)[:3])}
    return origin in allowed


def tokens_match(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
