"""The console's static files (SPEC §17.1): one stylesheet, its scripts and the vendored chart library, read once
and served by Tollway itself with a content hash in their URLs, so they can be cached for a year."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from tollway.errors import NotFound
from tollway.http.console.security import secured

ROOT: Final = Path(__file__).parent / "static"
_TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    version: str


@cache
def assets() -> dict[str, Asset]:
    """Every file under static/ by its path there (``vendor/chart.umd.js``); source maps are not served."""
    found: dict[str, Asset] = {}
    for path in sorted(ROOT.rglob("*")):
        media_type = _TYPES.get(path.suffix)
        if path.is_file() and media_type is not None:
            body = path.read_bytes()
            found[path.relative_to(ROOT).as_posix()] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:12])
    return found


def static_url(name: str) -> str:
    return f"/console/static/{name}?v={assets()[name].version}"


async def serve(request: Request) -> Response:
    asset = assets().get(str(request.path_params["path"]))
    if asset is None:
        raise NotFound("No console file at this address.")
    response = Response(asset.body, media_type=asset.media_type, headers={"ETag": f'"{asset.version}"'})
    return secured(response, cache="public, max-age=31536000, immutable")
