"""``/v1/platforms/{pid}/webhooks`` (SPEC §5.8, §11): signed event deliveries to the platform's endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

from tollway_sdk._base_client import Call
from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, no_content, parser, seg
from tollway_sdk._types import NOT_GIVEN, NotGiven, given, query
from tollway_sdk.types.webhooks import CreatedWebhookEndpoint, SecretRotation, WebhookDelivery, WebhookEndpoint

EventType: TypeAlias = Literal[
    "budget.topped_up",
    "budget.low_balance",
    "budget.suspended",
    "budget.unsuspended",
    "budget.debited",
    "wallet.low_balance",
    "wallet.topped_up",
]
DeliveryStatus: TypeAlias = Literal["pending", "succeeded", "failed"]


class _Calls(Scoped):
    def _path(self, *parts: str) -> str:
        return self._platform("webhooks", *parts)

    def _create(self, fields: dict[str, Any]) -> Call[CreatedWebhookEndpoint]:
        return Call("POST", self._path(), parser(CreatedWebhookEndpoint), body=fields)

    def _one(self, method: str, endpoint_id: str, fields: dict[str, Any] | None = None) -> Call[WebhookEndpoint]:
        return Call(method, self._path(seg(endpoint_id)), parser(WebhookEndpoint), body=fields)

    def _delete(self, endpoint_id: str) -> Call[None]:
        return Call("DELETE", self._path(seg(endpoint_id)), no_content)

    def _rotate(self, endpoint_id: str) -> Call[SecretRotation]:
        return Call("POST", self._path(seg(endpoint_id), "rotate-secret"), parser(SecretRotation))

    def _deliveries(self, endpoint_id: str, status: str | NotGiven) -> ListCall[WebhookDelivery]:
        path = self._path(seg(endpoint_id), "deliveries")
        return ListCall(path, parser(WebhookDelivery), query(status=status))

    def _replay(self, endpoint_id: str, delivery_id: str) -> Call[WebhookDelivery]:
        path = self._path(seg(endpoint_id), "deliveries", seg(delivery_id), "replay")
        return Call("POST", path, parser(WebhookDelivery))


class AsyncWebhooks(_Calls, AsyncAPIResource):
    async def create(
        self,
        *,
        url: str,
        events: Sequence[EventType] | NotGiven = NOT_GIVEN,
        description: str | NotGiven | None = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> CreatedWebhookEndpoint:
        """Add an endpoint (by default subscribed to every event but ``budget.debited``); its signing ``secret``
        is in this answer only."""
        return await self._request(self._create(given(locals())))

    def list(self, *, limit: int | NotGiven = NOT_GIVEN, page: int = 1) -> AsyncPaginator[WebhookEndpoint]:
        return self._list(ListCall(self._path(), parser(WebhookEndpoint)), limit, page)

    async def retrieve(self, endpoint_id: str) -> WebhookEndpoint:
        return await self._request(self._one("GET", endpoint_id))

    async def update(
        self,
        endpoint_id: str,
        *,
        url: str | NotGiven = NOT_GIVEN,
        events: Sequence[EventType] | NotGiven = NOT_GIVEN,
        description: str | NotGiven | None = NOT_GIVEN,
        is_active: bool | NotGiven = NOT_GIVEN,
    ) -> WebhookEndpoint:
        return await self._request(self._one("PATCH", endpoint_id, given(locals(), "endpoint_id")))

    async def delete(self, endpoint_id: str) -> None:
        await self._request(self._delete(endpoint_id))

    async def rotate_secret(self, endpoint_id: str) -> SecretRotation:
        """A new secret; for 24 hours deliveries are signed with both."""
        return await self._request(self._rotate(endpoint_id))

    def list_deliveries(
        self,
        endpoint_id: str,
        *,
        status: DeliveryStatus | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[WebhookDelivery]:
        return self._list(self._deliveries(endpoint_id, status), limit, page)

    async def replay_delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """Deliver the event again (same ``webhook-id`` and body) as a new delivery."""
        return await self._request(self._replay(endpoint_id, delivery_id))
