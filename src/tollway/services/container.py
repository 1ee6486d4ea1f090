"""The typed set of use cases the HTTP layer may call, built once at startup by the composition root (``app.py``).

Handlers reach it through ``http/state.py``; nothing in it is a store, an engine or a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tollway.observability.metrics import Metrics
from tollway.services.agents.mcp_calls import McpCalls
from tollway.services.agents.mcp_connections import McpConnections
from tollway.services.agents.threads import Threads
from tollway.services.auth import Authenticator
from tollway.services.console import Console
from tollway.services.inference.chat import ChatCompletions
from tollway.services.inference.embeddings import EmbeddingsService
from tollway.services.inference.images import ImagesService
from tollway.services.inference.models import ModelCatalogView
from tollway.services.inference.moderations import ModerationsService
from tollway.services.inference.responses import ResponsesService
from tollway.services.management import Management
from tollway.services.operations import Operations
from tollway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    metrics: Metrics
    authenticator: Authenticator
    chat: ChatCompletions
    responses: ResponsesService
    threads: Threads
    images: ImagesService
    embeddings: EmbeddingsService
    moderations: ModerationsService
    models: ModelCatalogView
    management: Management
    operations: Operations
    mcp_connections: McpConnections  # end users' OAuth connections to MCP apps (SPEC §16.2)
    mcp_calls: McpCalls  # the MCP proxy's relays and billed MCP calls (SPEC §16.3)
    console: Console  # sign-in sessions and spend reports of the browser console (SPEC §17.1)
    # After any write that can change authentication, routing or limits (keys, platforms, catalog, LLM configs).
    invalidate_caches: Callable[[], None]
