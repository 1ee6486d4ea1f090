"""What creating an end user returns (SPEC §5.4): creation is idempotent by ``external_id``, so it may find one."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.domain.budget_changes import BudgetRow
from tollway.domain.records import Record


@dataclass(frozen=True, slots=True)
class EndUserCreation:
    end_user: Record
    api_key: Record
    budget: BudgetRow | None
    created: bool  # False: the external_id existed; the user is unchanged and only the key is new
