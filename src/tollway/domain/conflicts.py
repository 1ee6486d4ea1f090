"""What a management repository reports when a write conflicts with the rows already stored; the use cases turn
each into the client error of the SPEC section they implement."""

from __future__ import annotations


class Duplicate(Exception):
    """A unique constraint rejected the write (slug taken)."""


class StillReferenced(Exception):
    """The row is referenced by others and cannot be deleted."""


class ProviderUnavailable(Exception):
    """The provider is unknown or inactive, so no config may point at it."""


class EndpointInactive(Exception):
    """A replay on an endpoint that is disabled."""


class BalanceOverflow(Exception):
    """The top-up would push the wallet balance past what a BIGINT of n$ holds."""


class BudgetExists(Exception):
    """The end user already has a budget (one per end user)."""
