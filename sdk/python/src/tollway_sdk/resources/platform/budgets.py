"""``Budgets`` and ``AsyncBudgets``, written in ``tollway_sdk._async`` (the sync class is generated from it)."""

from tollway_sdk._async.resources.platform.budgets import AsyncBudgets
from tollway_sdk._sync.resources.platform.budgets import Budgets

__all__ = ["AsyncBudgets", "Budgets"]
