"""``RateLimits`` and ``AsyncRateLimits``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.rate_limits import AsyncRateLimits
from tollway_sdk._sync.resources.platform.rate_limits import RateLimits

__all__ = ["AsyncRateLimits", "RateLimits"]
