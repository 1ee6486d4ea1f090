"""The SDK's tests exercise every management route of the app (SPEC §4–§6, §16, §17.2): each route of the operator,
platform and self-service APIs and of ``/v1/threads`` got at least one answer through an SDK client in this session.
A route added to the app without an SDK method and a test fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.routing import Match, Route
from tollway.http.routes import build_routes

from conftest import EXERCISED

MANAGEMENT = ("/v1/admin/", "/v1/platforms/", "/v1/me/", "/v1/threads")


def _management_routes() -> list[tuple[str, Route]]:
    found: list[tuple[str, Route]] = []
    for route in build_routes():
        if isinstance(route, Route) and route.path.startswith(MANAGEMENT):
            found.extend((method, route) for method in sorted(route.methods or ()) if method != "HEAD")
    return found


def test_every_management_route_is_exercised(request: pytest.FixtureRequest) -> None:
    here = Path(__file__).parent
    collected = {Path(str(item.path)) for item in request.session.items}
    if not set(here.glob("test_sdk_*.py")) <= collected:
        pytest.skip("the route check needs the whole SDK suite in the session")
    missing = []
    for method, route in _management_routes():
        scope = {"type": "http", "method": method}
        hits = [
            status
            for verb, path, status in EXERCISED
            if verb == method and route.matches({**scope, "path": path})[0] == Match.FULL
        ]
        if not hits:
            missing.append(f"{method} {route.path}")
    assert missing == [], f"management routes no SDK test exercised: {missing}"
