"""``PlatformThreads`` and ``AsyncPlatformThreads``, written in ``tollway_sdk._async`` (the sync class is generated from
it)."""

from tollway_sdk._async.resources.platform.threads import AsyncPlatformThreads
from tollway_sdk._sync.resources.platform.threads import PlatformThreads

__all__ = ["AsyncPlatformThreads", "PlatformThreads"]
