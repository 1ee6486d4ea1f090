"""Webhook endpoints and their deliveries (SPEC §5.8, §11.4). The signing secret is shown on creation and rotation
only."""

from __future__ import annotations

from pydantic import AwareDatetime

from tollway_sdk._models import TollwayModel


class WebhookEndpoint(TollwayModel):
    id: str
    platform_id: str
    url: str
    events: list[str]
    description: str | None = None
    is_active: bool
    disabled_reason: str | None = None  # null, "gone" after a 410, or "manual"
    created_at: AwareDatetime
    updated_at: AwareDatetime


class CreatedWebhookEndpoint(WebhookEndpoint):
    secret: str  # whsec_...


class SecretRotation(TollwayModel):
    secret: str
    previous_secret_expires_at: AwareDatetime


class DeliveryAttempt(TollwayModel):
    attempt: int
    attempted_at: AwareDatetime
    response_status: int | None = None
    response_body_excerpt: str | None = None
    duration_ms: int | None = None
    error: str | None = None


class WebhookDelivery(TollwayModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    webhook_id: str
    status: str  # pending, succeeded or failed
    attempts: list[DeliveryAttempt]
    next_attempt_at: AwareDatetime | None = None
    created_at: AwareDatetime
