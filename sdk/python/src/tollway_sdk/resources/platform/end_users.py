"""``EndUsers`` and ``AsyncEndUsers``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.end_users import AsyncEndUsers
from tollway_sdk._sync.resources.platform.end_users import EndUsers

__all__ = ["AsyncEndUsers", "EndUsers"]
