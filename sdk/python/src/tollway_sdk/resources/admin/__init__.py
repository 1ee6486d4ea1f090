"""``Admin`` and ``AsyncAdmin``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.admin import AsyncAdmin
from tollway_sdk._sync.resources.admin import Admin

__all__ = ["Admin", "AsyncAdmin"]
