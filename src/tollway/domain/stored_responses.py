"""The port the Responses service stores results through (SPEC §7.6), and the values it exchanges; storage
implements it (``storage/sql/responses.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Owner:
    """Who may read a stored response: its platform and end user (None for platform keys, SPEC §15)."""

    platform_id: str
    end_user_id: str | None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    input_items: list[dict[str, Any]]  # the expanded input: the whole context the call was made with
    body: dict[str, Any]  # the result object, output and metadata included


class ResponseRepository(Protocol):
    async def save(self, owner: Owner, input_items: list[dict[str, Any]], body: dict[str, Any]) -> None: ...

    async def get(self, owner: Owner, response_id: str) -> StoredResponse | None:
        """The owner's unexpired response, or None (unknown, expired, or another owner's)."""
        ...

    async def delete(self, owner: Owner, response_id: str) -> bool: ...
