"""The fake upstream's image generation: OpenAI's ``POST /v1/images/generations`` (and ``/images/generations``) and
ASI:One's ``POST /asi1/v1/image/generate`` (also under ``/asi1-old/v1``).

The behaviour is chosen by the model name as for chat (``fake_scenarios``): ``error?status=500&times=1``,
``garbage``, ``redirect`` and ``ms`` work the same; ``n=K`` makes the fake return exactly K images whatever was
asked (to test billing by images returned). Every other name answers normally: OpenAI with ``b64_json`` images (as
gpt-image-1 does) unless ``response_format: "url"`` is sent, then hosted URLs; ASI:One with one
``data:image/png;base64,`` URL. Each image is the same 1×1 PNG; OpenAI's ``revised_prompt`` echoes the prompt.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Final

import orjson

from tollway.fake_upstream.http import Reply
from tollway.fake_upstream.responses import GARBAGE, render_error, render_scenario_error
from tollway.fake_upstream.scenarios import Scenario, ScenarioError

PNG_B64: Final = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP438DwHwAGgAJ/EEwb4QAAAABJRU5ErkJggg=="
HOSTED_URL: Final = "https://images.fake-upstream.invalid/{serial}-{index}.png"
ASI1_SIZES: Final = ("1024x1024", "1792x1024", "1024x1792")
# path -> wire format
IMAGE_PATHS: Final = {
    "/v1/images/generations": "openai",
    "/images/generations": "openai",
    "/asi1/v1/image/generate": "asi1",
    "/asi1-old/v1/image/generate": "asi1",
}
_JSON: Final = ("content-type", "application/json")

ScenarioOf = Callable[[str], Scenario | ScenarioError]
ShouldFail = Callable[[str, int | None], bool]


def _json(status: int, body: bytes, delay_s: float = 0.0) -> Reply:
    return Reply(status, (_JSON,), body, delay_s=delay_s)


def _bad_request(message: str, param: str | None) -> Reply:
    return _json(400, render_error(message, "invalid_request_error", "invalid_request", param))


class FakeImages:
    """``reply(path, body)`` for the paths of IMAGE_PATHS; no I/O of its own."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._serials = itertools.count(1)

    def reply(self, path: str, body: Any, scenario_of: ScenarioOf, should_fail: ShouldFail) -> Reply:
        if not isinstance(body, dict):
            return _bad_request("We could not parse the JSON body of your request.", None)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return _bad_request("'prompt' is a required property", "prompt")
        openai = IMAGE_PATHS[path] == "openai"
        model = body.get("model")
        if openai and (not isinstance(model, str) or not model):
            return _bad_request("you must provide a model parameter", "model")
        if not openai and body.get("size", ASI1_SIZES[0]) not in ASI1_SIZES:
            return _bad_request(f"size must be one of {', '.join(ASI1_SIZES)}", "size")
        name = model if isinstance(model, str) else "default"
        scenario = scenario_of(name)
        if isinstance(scenario, ScenarioError):
            return _bad_request(str(scenario), "model")
        delay_s = scenario.delay_ms / 1000
        if scenario.kind == "error" and should_fail(name, scenario.times):
            return _error(scenario, delay_s)
        if scenario.kind == "garbage":
            return _json(200, GARBAGE, delay_s)
        if scenario.kind == "redirect":
            return Reply(307, (("location", path), _JSON), b"{}", delay_s=delay_s)
        serial = next(self._serials)
        if openai:
            asked = body.get("n", 1)
            count = scenario.words if scenario.words is not None else asked if isinstance(asked, int) else 1
            return _json(200, self._openai(serial, prompt, count, body.get("response_format")), delay_s)
        count = scenario.words if scenario.words is not None else 1
        return _json(200, self._asi1(count), delay_s)

    def _openai(self, serial: int, prompt: str, count: int, response_format: object) -> bytes:
        data: list[dict[str, Any]] = []
        for index in range(count):
            if response_format == "url":
                data.append({"url": HOSTED_URL.format(serial=serial, index=index), "revised_prompt": prompt})
            else:
                data.append({"b64_json": PNG_B64, "revised_prompt": prompt})
        return orjson.dumps({"created": int(self._clock()), "data": data})

    def _asi1(self, count: int) -> bytes:
        images = [{"url": "data:image/png;base64," + PNG_B64} for _ in range(count)]
        created = int(self._clock() * 1000)
        return orjson.dumps({"status": 1, "message": "Success", "created": created, "images": images})


def _error(scenario: Scenario, delay_s: float) -> Reply:
    headers = [_JSON]
    if scenario.retry_after is not None:
        headers.append(("retry-after", scenario.retry_after))
    if scenario.retry_after_ms is not None:
        headers.append(("retry-after-ms", scenario.retry_after_ms))
    message = f"fake upstream: simulated HTTP {scenario.status}"
    body = render_scenario_error(scenario.status, message, scenario.error_type, scenario.param)
    return Reply(scenario.status, tuple(headers), body, delay_s=delay_s)
