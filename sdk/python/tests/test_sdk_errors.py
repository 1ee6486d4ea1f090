"""One exception class per error code (SPEC §3), each carrying ``status``, ``code``, ``type``, ``message``, ``param``
and ``request_id``, raised by SDK calls against a live Tollway, and the same classes for inference errors of the
``.openai()`` client through ``from_openai_error``."""

from __future__ import annotations

import threading
import uuid

import openai
import pytest
from tollway import errors as server_errors

import tollway_sdk
from conftest import Tenant, end_user_client
from fault_proxy import FaultProxy
from tollway_sdk import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BudgetExhaustedError,
    BudgetSuspendedError,
    ConflictError,
    ForbiddenError,
    InternalServerError,
    InvalidAPIKeyError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitExceededError,
    ThreadBusyError,
    Tollway,
    TollwayError,
    UpstreamError,
    WrongKeyTypeError,
    from_openai_error,
)
from tollway_sdk._errors import error_class


def test_400_names_the_field(admin: Tollway) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        admin.admin.providers.create(slug="Not A Slug", name="x", kind="openai")
    error = caught.value
    assert isinstance(error, BadRequestError) and isinstance(error, APIStatusError) and isinstance(error, TollwayError)
    assert (error.status, error.code, error.param) == (400, "invalid_request", "slug")
    assert error.type == "invalid_request_error"
    assert error.request_id is not None and error.request_id.startswith("req_") and len(error.request_id) == 36
    assert error.message and "slug" in str(error)
    assert error.body == {"error": {"message": error.message, "type": error.type, "code": error.code, "param": "slug"}}


def test_401_403_404(gateway_url: str, tenant: Tenant) -> None:
    stranger = Tollway(base_url=gateway_url, api_key="sk-plat_" + "x" * 43, platform_id=tenant.platform_id)
    with stranger, pytest.raises(InvalidAPIKeyError) as unknown:
        stranger.platform.retrieve()
    assert isinstance(unknown.value, AuthenticationError) and unknown.value.status == 401
    with pytest.raises(WrongKeyTypeError) as wrong:
        tenant.client.me.budget()  # a platform key on self-service
    assert isinstance(wrong.value, PermissionDeniedError) and wrong.value.code == "wrong_key_type"
    inference_only = tenant.client.platform.keys.create(scopes=["inference"])
    with tenant.client.with_options(api_key=inference_only.raw_key) as limited, pytest.raises(ForbiddenError) as scope:
        limited.platform.retrieve()
    assert scope.value.status == 403 and scope.value.code == "forbidden"
    with pytest.raises(ObjectNotFoundError) as missing:
        tenant.client.platform.end_users.retrieve(str(uuid.uuid4()))
    assert isinstance(missing.value, NotFoundError) and missing.value.code == "not_found"
    with tenant.client.with_options(platform_id=str(uuid.uuid4())) as elsewhere, pytest.raises(ObjectNotFoundError):
        elsewhere.platform.retrieve()  # another platform's id is indistinguishable from a missing one


def test_402_from_inference_through_openai(tenant: Tenant) -> None:
    end_user_id, user = end_user_client(tenant)
    tenant.client.platform.budgets.create(end_user_id, max_usd="0.0005")  # under one output token
    with user.openai(max_retries=0) as inference:
        with pytest.raises(openai.APIStatusError) as raised:
            inference.chat.completions.create(model="cent", messages=[{"role": "user", "content": "hi"}])
        assert raised.value.status_code == 402
        error = from_openai_error(raised.value)
        assert isinstance(error, BudgetExhaustedError) and isinstance(error, PaymentRequiredError)
        assert (error.status, error.code, error.type) == (402, "budget_exhausted", "billing_error")
        assert error.request_id is not None and error.request_id.startswith("req_")
        tenant.client.platform.budgets.update(end_user_id, max_usd="1", is_suspended=True)
        with pytest.raises(openai.APIStatusError) as suspended:
            inference.chat.completions.create(model="cent", messages=[{"role": "user", "content": "hi"}])
        assert isinstance(from_openai_error(suspended.value), BudgetSuspendedError)
        with pytest.raises(openai.NotFoundError) as unknown_model:
            inference.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
        assert isinstance(from_openai_error(unknown_model.value), ModelNotFoundError)
    with pytest.raises(TypeError):
        from_openai_error(ValueError("not an openai error"))


def test_429_of_a_real_rate_limit(tenant: Tenant) -> None:
    end_user_id, user = end_user_client(tenant)
    tenant.client.platform.rate_limits.set(end_user_id, rpm_limit=1)
    with user.openai(max_retries=0) as inference:
        inference.chat.completions.create(model="echo", messages=[{"role": "user", "content": "one"}])
        with pytest.raises(openai.RateLimitError) as raised:
            inference.chat.completions.create(model="echo", messages=[{"role": "user", "content": "two"}])
    error = from_openai_error(raised.value)
    assert isinstance(error, RateLimitExceededError) and error.status == 429
    assert int(error.headers["retry-after"]) >= 1


def test_409_thread_busy(tenant: Tenant) -> None:
    thread_id = f"t-{uuid.uuid4().hex[:12]}"
    done = threading.Event()

    def slow_turn() -> None:
        with tenant.client.openai(max_retries=0, timeout=60) as inference:
            inference.responses.create(model="slow", input="hello", extra_body={"thread_id": thread_id})
        done.set()

    runner = threading.Thread(target=slow_turn)
    runner.start()
    try:
        for _ in range(100):
            try:
                tenant.client.threads.retrieve(thread_id)
                break
            except ObjectNotFoundError:
                done.wait(0.05)
        with pytest.raises(ThreadBusyError) as caught:
            tenant.client.threads.delete(thread_id)
        assert isinstance(caught.value, ConflictError) and caught.value.status == 409
        assert caught.value.code == "thread_busy"
    finally:
        runner.join(60)
    assert done.is_set()
    tenant.client.threads.delete(thread_id)  # once the turn has finished the thread can go


def test_unknown_codes_and_statuses_fall_back_to_their_status_class(proxy: FaultProxy, tenant: Tenant) -> None:
    with Tollway(base_url=proxy.url, api_key=tenant.platform_key, platform_id=tenant.platform_id, max_retries=0) as c:
        proxy.fail("GET", "/wallet", "answer", status=502, code="upstream_error", retry_after=None)
        with pytest.raises(UpstreamError):
            c.platform.wallet.retrieve()
        proxy.fail("GET", "/wallet", "answer", status=502, code="a_future_code", retry_after=None)
        with pytest.raises(InternalServerError) as server:
            c.platform.wallet.retrieve()
        assert type(server.value) is InternalServerError and server.value.code == "a_future_code"
        proxy.fail("GET", "/wallet", "answer", status=418, code="teapot", retry_after=None)
        with pytest.raises(APIStatusError) as other:
            c.platform.wallet.retrieve()
        assert type(other.value) is APIStatusError and other.value.status == 418
        proxy.fail("GET", "/wallet", "answer", status=404, code="model_not_found", retry_after=None)
        with pytest.raises(ModelNotFoundError):
            c.platform.wallet.retrieve()
        proxy.fail("GET", "/wallet", "answer", status=400, code="model_not_found", retry_after=None)
        with pytest.raises(BadRequestError) as mismatched:  # a code whose status disagrees: the status decides
            c.platform.wallet.retrieve()
        assert type(mismatched.value) is BadRequestError


# SPEC §3: every code with its HTTP status, and the class the SDK raises for it.
SPEC_CODES = [
    ("invalid_api_key", 401, InvalidAPIKeyError),
    ("wrong_key_type", 403, WrongKeyTypeError),
    ("forbidden", 403, ForbiddenError),
    ("not_found", 404, ObjectNotFoundError),
    ("model_not_found", 404, ModelNotFoundError),
    ("invalid_request", 400, InvalidRequestError),
    ("unsupported_parameter", 400, tollway_sdk.UnsupportedParameterError),
    ("integer_below_min_value", 422, tollway_sdk.IntegerBelowMinValueError),
    ("request_too_large", 413, tollway_sdk.RequestTooLargeError),
    ("idempotency_key_mismatch", 422, tollway_sdk.IdempotencyKeyMismatchError),
    ("idempotency_in_progress", 409, tollway_sdk.IdempotencyInProgressError),
    ("budget_suspended", 402, BudgetSuspendedError),
    ("budget_exhausted", 402, BudgetExhaustedError),
    ("wallet_insufficient", 402, tollway_sdk.WalletInsufficientError),
    ("rate_limit_exceeded", 429, RateLimitExceededError),
    ("context_length_exceeded", 400, tollway_sdk.ContextLengthExceededError),
    ("upstream_invalid_request", 400, tollway_sdk.UpstreamInvalidRequestError),
    ("upstream_invalid_request", 413, tollway_sdk.UpstreamInvalidRequestError),
    ("upstream_invalid_request", 422, tollway_sdk.UpstreamInvalidRequestError),
    ("upstream_rate_limited", 429, tollway_sdk.UpstreamRateLimitedError),
    ("provider_unavailable", 503, tollway_sdk.ProviderUnavailableError),
    ("thread_busy", 409, ThreadBusyError),
    ("mcp_app_not_connected", 409, tollway_sdk.MCPAppNotConnectedError),
    ("upstream_error", 502, UpstreamError),
    ("upstream_timeout", 504, tollway_sdk.UpstreamTimeoutError),
    ("service_unavailable", 503, tollway_sdk.ServiceUnavailableError),
    ("internal_error", 500, tollway_sdk.InternalError),
]


@pytest.mark.parametrize(("code", "status", "cls"), SPEC_CODES)
def test_one_class_per_code(code: str, status: int, cls: type[APIStatusError]) -> None:
    assert error_class(status, code) is cls
    assert cls.error_code == code and cls.__name__ in tollway_sdk.__all__
    assert issubclass(cls, InternalServerError) == (status >= 500)


def test_every_code_the_server_can_answer_has_its_class() -> None:
    """Each class of the server's error tree (tollway.errors) maps to the SDK class of its own code."""

    def tree(cls: type[server_errors.TollwayError]) -> list[type[server_errors.TollwayError]]:
        return [cls, *(sub for child in cls.__subclasses__() for sub in tree(child))]

    statuses = {cls.code: cls.status for cls in tree(server_errors.TollwayError)}
    assert set(statuses) == {code for code, _, _ in SPEC_CODES}
    per_answer = {"upstream_invalid_request", "context_length_exceeded"}  # the status is set per instance (above)
    for code, status in statuses.items():
        if code not in per_answer:
            assert error_class(status, code).error_code == code, (code, status)
