"""Typed access to what the composition root built: the use cases and the drain of this process."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from tollway.http.drain import Drain
from tollway.services.container import Services
from tollway.services.management import Management


def services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


def drain(request: Request) -> Drain:
    return cast(Drain, request.app.state.drain)


def management(request: Request) -> Management:
    """The management use cases (SPEC §4–§6)."""
    return services(request).management
