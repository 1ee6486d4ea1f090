"""Access checks of SPEC §2.3 for route handlers: key kind, scope and tenant, in that order."""

from __future__ import annotations

from starlette.requests import Request

from tollway.domain.keys import KeyKind
from tollway.domain.tenancy import Principal
from tollway.errors import Forbidden, NotFound, WrongKeyType
from tollway.http.state import services
from tollway.observability.context import bind_principal
from tollway.services.auth import Authenticator


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def authenticate(request: Request, *, api_key_header: bool = False) -> Principal:
    """The caller's key from ``Authorization: Bearer``; with ``api_key_header`` (Anthropic's Messages API, SPEC §19)
    an ``x-api-key`` header is read first."""
    authenticator: Authenticator = services(request).authenticator
    api_key = request.headers.get("x-api-key") if api_key_header else None
    if api_key is not None:
        principal = await authenticator.authenticate_key(api_key.strip(), _client_ip(request))
    else:
        principal = await authenticator.authenticate(request.headers.get("authorization"), _client_ip(request))
    request.state.principal = principal
    bind_principal(principal.platform_id, principal.end_user_id)  # later log lines of the request name the tenant
    return principal


async def require_operator(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal.kind is not KeyKind.OPERATOR:
        raise WrongKeyType("This route needs the operator key (sk-admin_).")
    return principal


async def require_platform_manage(request: Request, platform_id: str) -> Principal:
    """A platform key with scope ``manage`` on its own platform; any other platform id is 404."""
    principal = await authenticate(request)
    if principal.kind is not KeyKind.PLATFORM:
        raise WrongKeyType("This route needs a platform key (sk-plat_).")
    if not principal.has_scope("manage"):
        raise Forbidden("This key lacks the 'manage' scope.")
    if principal.platform_id != platform_id:
        raise NotFound()
    return principal


async def require_inference(request: Request, *, api_key_header: bool = False) -> Principal:
    principal = await authenticate(request, api_key_header=api_key_header)
    if principal.kind is KeyKind.OPERATOR:
        raise WrongKeyType("Inference needs a platform key (sk-plat_) or an end-user key (sk-eu_).")
    if not principal.has_scope("inference"):
        raise Forbidden("This key lacks the 'inference' scope.")
    if principal.kind is KeyKind.END_USER and not principal.end_user_active:
        raise Forbidden("This end user is deactivated.")
    return principal


async def require_end_user(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal.kind is not KeyKind.END_USER:
        raise WrongKeyType("This route needs an end-user key (sk-eu_).")
    return principal
