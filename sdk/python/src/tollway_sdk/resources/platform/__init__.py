"""``PlatformResource`` and ``AsyncPlatformResource``, written in ``tollway_sdk._async`` (the sync class is
generated from it)."""

from tollway_sdk._async.resources.platform import AsyncPlatformResource
from tollway_sdk._sync.resources.platform import PlatformResource

__all__ = ["AsyncPlatformResource", "PlatformResource"]
