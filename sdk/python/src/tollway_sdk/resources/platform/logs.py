"""``Logs`` and ``AsyncLogs``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.logs import AsyncLogs
from tollway_sdk._sync.resources.platform.logs import Logs

__all__ = ["AsyncLogs", "Logs"]
