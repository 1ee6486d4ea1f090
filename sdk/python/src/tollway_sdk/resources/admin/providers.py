"""``Providers`` and ``AsyncProviders``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.admin.providers import AsyncProviders, ProviderKind
from tollway_sdk._sync.resources.admin.providers import Providers

__all__ = ["AsyncProviders", "ProviderKind", "Providers"]
