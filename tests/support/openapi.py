"""Checks a real response against the OpenAPI document the gateway serves: its status is documented for the
operation, its media type too, and a JSON body validates against the documented schema (JSON Schema 2020-12, the
document's ``$ref``s resolved within it). Used by an httpx event hook, so every call a test makes is checked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_DOC_URI = "urn:tollway:openapi"
_PARAM = re.compile(r"\{([^}]+)\}")


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _regex(template: str) -> re.Pattern[str]:
    parts = _PARAM.split(template)  # literal, name, literal, name, ...
    # Model slugs may hold "/" (SPEC §4.2), served by Starlette's {slug:path}.
    anything = ".+" if template.startswith("/v1/models/") else "[^/]+"
    return re.compile("^" + "".join(re.escape(p) if i % 2 == 0 else anything for i, p in enumerate(parts)) + "$")


class DocumentChecker:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_DOC_URI, resource)
        self._templates = [(template, _regex(template)) for template in document["paths"]]
        self.checked: list[tuple[str, str, int]] = []

    def template(self, method: str, path: str) -> str:
        """The documented template serving ``method path``: the one with the fewest parameters among matches."""
        matches = [
            template
            for template, pattern in self._templates
            if pattern.match(path) and method.lower() in self.document["paths"][template]
        ]
        assert matches, f"{method} {path} is not in the document"
        return min(matches, key=lambda t: t.count("{"))

    def check(self, response: httpx.Response) -> None:
        request = response.request
        template = self.template(request.method, request.url.path)
        operation = self.document["paths"][template][request.method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], (request.method, template, status, response.text[:300])
        answer = operation["responses"][status]
        assert response.headers.get("x-request-id", "").startswith("req_")
        if "content" not in answer:
            assert response.content == b"", (request.method, template, status)
        else:
            media = response.headers.get("content-type", "").split(";")[0].strip()
            assert media in answer["content"], (request.method, template, status, media)
            if media == "application/json":
                where = _pointer("paths", template, request.method.lower(), "responses", status, "content", media)
                validator = jsonschema.Draft202012Validator(
                    {"$ref": f"{_DOC_URI}#/{where}/schema"}, registry=self._registry
                )
                errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.absolute_path))
                assert not errors, (request.method, template, status, [e.message for e in errors[:5]])
        self.checked.append((request.method, template, response.status_code))

    def hook(self) -> Callable[[httpx.Response], None]:
        def on_response(response: httpx.Response) -> None:
            if not response.is_stream_consumed:
                response.read()
            self.check(response)

        return on_response
