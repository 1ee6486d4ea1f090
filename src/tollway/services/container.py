"""The typed set of use cases the HTTP layer may call, built once at startup by the composition root (``app.py``).

Handlers reach it through ``http/state.py``; nothing in it is a store, an engine or a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.sealing import Sealer
from tollway.observability.metrics import Metrics
from tollway.services.auth import Authenticator
from tollway.services.images import ImagesService
from tollway.services.inference import InferenceService
from tollway.services.models import ModelCatalogView
from tollway.services.operations import Operations
from tollway.services.responses import ResponsesService
from tollway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    metrics: Metrics
    authenticator: Authenticator
    chat: InferenceService
    responses: ResponsesService
    images: ImagesService
    models: ModelCatalogView
    operations: Operations
    # After any write that can change authentication, routing or limits (keys, platforms, catalog, LLM configs).
    invalidate_caches: Callable[[], None]
    # Transitional, removed as management moves behind ports (http/management/wiring.py and the /v1/me handlers
    # still build their stores from them):
    engine: AsyncEngine
    sealer: Sealer
