"""Builds the management use cases over the process's engine. They hold no state, so one per request costs a few
object allocations; ``app.py`` may take this over when the Services container grows management members."""

from __future__ import annotations

from starlette.requests import Request

from tollway.http.state import services
from tollway.services.accounts import Accounts
from tollway.services.catalog_admin import CatalogAdmin
from tollway.services.credentials import LlmConfigs, PlatformKeys
from tollway.services.platforms import Platforms
from tollway.storage.sql.api_keys import ApiKeyStore
from tollway.storage.sql.catalog_admin import CatalogAdminStore
from tollway.storage.sql.ledger import LedgerStore
from tollway.storage.sql.llm_configs import LlmConfigStore
from tollway.storage.sql.tenants import PlatformStore


def catalog(request: Request) -> CatalogAdmin:
    return CatalogAdmin(CatalogAdminStore(services(request).engine))


def platforms(request: Request) -> Platforms:
    return Platforms(PlatformStore(services(request).engine))


def accounts(request: Request) -> Accounts:
    return Accounts(LedgerStore(services(request).engine))


def platform_keys(request: Request) -> PlatformKeys:
    return PlatformKeys(ApiKeyStore(services(request).engine))


def llm_configs(request: Request) -> LlmConfigs:
    svc = services(request)
    return LlmConfigs(LlmConfigStore(svc.engine), svc.sealer)


def invalidate_caches(request: Request) -> None:
    """After any write that can change authentication or routing (keys, platforms, catalog, LLM configs)."""
    services(request).invalidate_caches()
