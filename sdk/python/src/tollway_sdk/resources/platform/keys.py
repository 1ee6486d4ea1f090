"""``Keys`` and ``AsyncKeys``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.keys import AsyncKeys
from tollway_sdk._sync.resources.platform.keys import Keys

__all__ = ["AsyncKeys", "Keys"]
