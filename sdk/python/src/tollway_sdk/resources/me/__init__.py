"""``Me`` and ``AsyncMe``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.me import AsyncMe
from tollway_sdk._sync.resources.me import Me

__all__ = ["AsyncMe", "Me"]
