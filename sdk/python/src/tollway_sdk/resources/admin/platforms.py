"""``Platforms`` and ``AsyncPlatforms``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.admin.platforms import AsyncPlatforms
from tollway_sdk._sync.resources.admin.platforms import Platforms

__all__ = ["AsyncPlatforms", "Platforms"]
