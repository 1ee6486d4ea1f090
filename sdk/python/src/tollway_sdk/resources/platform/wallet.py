"""``WalletResource`` and ``AsyncWalletResource``, written in ``tollway_sdk._async`` (the sync class is generated from
it)."""

from tollway_sdk._async.resources.platform.wallet import AsyncWalletResource
from tollway_sdk._sync.resources.platform.wallet import WalletResource

__all__ = ["AsyncWalletResource", "WalletResource"]
