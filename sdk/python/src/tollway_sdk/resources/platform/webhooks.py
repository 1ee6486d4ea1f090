"""``Webhooks`` and ``AsyncWebhooks``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.webhooks import AsyncWebhooks, DeliveryStatus, EventType
from tollway_sdk._sync.resources.platform.webhooks import Webhooks

__all__ = ["AsyncWebhooks", "DeliveryStatus", "EventType", "Webhooks"]
