"""``Models`` and ``AsyncModels``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.admin.models import AsyncModels
from tollway_sdk._sync.resources.admin.models import Models

__all__ = ["AsyncModels", "Models"]
