"""Rendering JSON bodies and the OpenAI error envelope with orjson."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from tollway.domain import json_bytes
from tollway.errors import TollwayError


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes.dumps(content)


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(content, status_code=status_code, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


def error_response(error: TollwayError) -> Response:
    return Response(
        orjson.dumps(error.body()),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )
