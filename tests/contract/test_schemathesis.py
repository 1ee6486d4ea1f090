"""Schemathesis against the live app (SPEC §18): Tollway served by uvicorn on SQLite with the fake upstream, a
tenant seeded through the API with keys of each kind (operator, platform, end user), then every documented
operation fuzzed from /openapi.json (valid and invalid data) and the create -> get -> update -> delete links followed
statefully. Checks: no 5xx, every status, media type and body as documented. Bounded to stay near a minute on a
2-core machine; the figures print at the end of the run (tests/contract/conftest.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import make_settings
from tests.contract.conftest import DOCUMENTED, FIGURES, SKIPPED_FIGURE
from tests.support.seed import FAKE_PROVIDER_KEY
from tests.support.servers import GatewayServer
from tollway.fake_upstream.server import FakeUpstreamThread
from tollway.http.openapi.document import build_document
from tollway.http.routes import build_routes

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation (half valid, half invalid data) and stateful scenarios; raise them locally for a deeper run,
# with a random seed: TOLLWAY_SCHEMATHESIS_EXAMPLES=200 TOLLWAY_SCHEMATHESIS_RANDOM=1 pytest tests/contract
MAX_EXAMPLES = int(os.environ.get("TOLLWAY_SCHEMATHESIS_EXAMPLES", "12"))
STATEFUL_SCENARIOS = 2 * MAX_EXAMPLES
DERANDOMIZE = os.environ.get("TOLLWAY_SCHEMATHESIS_RANDOM", "") != "1"
# Left out of the fuzzing, each for a reason:
SKIPPED = {
    # Its body may name a URL to fetch a catalogue from: random hosts would make the run wait on DNS and sockets.
    "importModelPrices",
}
# Never aimed at the seeded tenant (they would end the run's tenant or its end user): they get random ids (404).
KEEP_RANDOM_IDS = {"deletePlatform", "deleteEndUser"}


@dataclass(frozen=True)
class Live:
    url: str
    operator_key: str
    platform_key: str
    end_user_key: str
    platform_id: str
    end_user_id: str

    def key_for(self, case: Case) -> str | None:
        path = case.operation.path
        if not case.operation.definition.raw.get("security"):
            return None
        if path.startswith("/v1/admin"):
            return self.operator_key
        if path.startswith("/v1/platforms"):
            return self.platform_key
        return self.end_user_key  # /v1/me and inference: the end user pays through its budget and the wallet

    def aim(self, case: Case) -> None:
        """Point path ids at the seeded tenant, so operations get past the 404 of a foreign platform, and half the
        paid calls at the seeded model, so they reach the fake upstream and are billed."""
        heads = uuid.uuid5(uuid.NAMESPACE_URL, repr(case.body)).int % 2 == 1
        if (
            isinstance(case.body, dict)
            and "model" in case.body
            and heads
            and not case.operation.path.startswith("/v1/admin")
        ):
            case.body["model"] = "chat"
        if case.operation.definition.raw.get("operationId") in KEEP_RANDOM_IDS or not case.path_parameters:
            return
        if "pid" in case.path_parameters:
            case.path_parameters["pid"] = self.platform_id
        if "/end-users/{id}" in case.operation.path and heads:
            case.path_parameters["id"] = self.end_user_id  # half the time: the budget and limits routes run too

    def headers(self, case: Case) -> dict[str, str]:
        key = self.key_for(case)
        return {"Authorization": f"Bearer {key}"} if key else {}


def _ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstreamThread) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    server = GatewayServer(make_settings(tmp, f"sqlite:///{tmp / 'tollway.db'}"))
    server.start()
    operator_key = server.settings.admin_key
    assert operator_key is not None
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {operator_key}"}) as admin:
            provider = _ok(
                admin.post(
                    "/v1/admin/providers",
                    json={
                        "slug": "fake",
                        "name": "Fake",
                        "kind": "openai_compatible",
                        "base_url": fake_upstream.base_url,
                    },
                ),
                201,
            )
            model = {
                "provider_id": provider["id"],
                "input_price_per_mtok": "0.1",
                "output_price_per_mtok": "0.2",
                "price_per_image": "0.01",
            }
            _ok(
                admin.post(
                    "/v1/admin/models",
                    json={**model, "slug": "chat", "upstream_model": "fake/echo", "max_output_tokens": 50},
                ),
                201,
            )
            created = _ok(admin.post("/v1/admin/platforms", json={"name": "Schemathesis"}), 201)
            pid, platform_key = created["platform"]["id"], created["api_key"]["raw_key"]
            _ok(admin.post(f"/v1/admin/platforms/{pid}/wallet/topup", json={"amount_usd": "100"}), 200)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {platform_key}"}) as platform:
            config = {"provider_id": provider["id"], "api_key": FAKE_PROVIDER_KEY}
            _ok(platform.post(f"/v1/platforms/{pid}/llm-configs", json=config), 201)
            user = _ok(platform.post(f"/v1/platforms/{pid}/end-users", json={"external_id": "fuzz"}), 201)
        yield Live(server.url, operator_key, platform_key, user["api_key"]["raw_key"], pid, user["id"])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(live: Live) -> Any:
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    document = httpx.get(live.url + "/openapi.json", timeout=30).json()
    DOCUMENTED[:] = [sum(len(operations) for operations in document["paths"].values())]
    SKIPPED_FIGURE[:] = sorted(SKIPPED)
    return schema.exclude(operation_id=sorted(SKIPPED))


def _cases() -> list[Any]:
    """Every documented operation (from the document the app would serve) with valid data, and with invalid data
    where it has parameters or a body to get wrong."""
    document = build_document(build_routes())
    cases = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation["operationId"] in SKIPPED:
                continue
            label = f"{method.upper()} {path}"
            cases.append(pytest.param(label, GenerationMode.POSITIVE, id=f"valid-{label}"))
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"invalid-{label}"))
    return cases


def _record(case: Case, response: Any) -> None:
    FIGURES.cases[case.operation.label] += 1
    FIGURES.statuses[response.status_code] += 1


@pytest.mark.parametrize(("label", "mode"), _cases())
def test_every_operation_answers_as_documented(api_schema: Any, live: Live, label: str, mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES // 2,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Case) -> None:
        live.aim(case)
        response = case.call(headers=live.headers(case), timeout=30)
        _record(case, response)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as error:
            FIGURES.failed(case.operation.label, error)
            raise

    exercise()


def test_create_get_delete_links_hold(api_schema: Any, live: Live) -> None:
    """Stateful: schemathesis follows the document's links (create -> get, update, delete) with the ids it got."""

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            FIGURES.stateful_scenarios += 1

        def before_call(self, case: Case) -> None:
            live.aim(case)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": live.headers(case), "timeout": 30}

        def after_call(self, response: Any, case: Case) -> None:
            super().after_call(response, case)
            FIGURES.stateful_steps += 1
            FIGURES.statuses[response.status_code] += 1

        def validate_response(self, response: Any, case: Case, additional_checks: Any = None, **kwargs: Any) -> None:
            try:
                case.validate_response(response, checks=CHECKS)
            except Exception as error:
                FIGURES.failed(case.operation.label, error)
                raise

    checked_before = FIGURES.failures
    try:
        Workflow.run(
            settings=settings(
                max_examples=STATEFUL_SCENARIOS,
                stateful_step_count=6,
                deadline=None,
                derandomize=DERANDOMIZE,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
        )
    except FlakyStrategyDefinition:
        # Hypothesis replays choice prefixes; against a live server a replayed create can meet the object the first
        # run made (a taken slug: 400 instead of 201), so the rules enabled next differ and it stops. That is the
        # server being stateful, not a finding: only a failed check (recorded above) fails the phase.
        assert FIGURES.failures == checked_before, FIGURES.first_failures
        FIGURES.stateful_stopped = True
    assert FIGURES.stateful_steps > 20
