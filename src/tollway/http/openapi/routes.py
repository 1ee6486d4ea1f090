"""``GET /openapi.json`` (no key; the document is built once per app from the routes it serves, then served as
cached bytes) and ``GET /docs``, which renders it with the vendored Swagger UI under a ``'self'``-only CSP."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tollway.http.openapi.document import build_document

ASSETS: Final = Path(__file__).resolve().parent.parent / "static" / "docs"
# data: images are the viewer stylesheet's icons; scripts and styles come only from Tollway.
CSP: Final = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tollway API</title><link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/docs/assets/tollway-docs.js"></script>
</body></html>
"""


def document_bytes(request: Request) -> bytes:
    state = request.app.state
    cached: bytes | None = getattr(state, "openapi_document", None)
    if cached is None:
        cached = orjson.dumps(build_document(request.app.routes))
        state.openapi_document = cached
    return cached


async def openapi_json(request: Request) -> Response:
    return Response(document_bytes(request), media_type="application/json")


async def docs(_request: Request) -> Response:
    return HTMLResponse(_PAGE, headers={"content-security-policy": CSP})


routes: list[BaseRoute] = [
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
    Mount("/docs/assets", StaticFiles(directory=ASSETS), name="docs-assets"),
]
