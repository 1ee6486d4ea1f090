"""``Threads`` and ``AsyncThreads``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.threads import AsyncThreads
from tollway_sdk._sync.resources.threads import Threads

__all__ = ["AsyncThreads", "Threads"]
