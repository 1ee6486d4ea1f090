"""The base of every answer model: pydantic, tolerant of fields a newer server adds (they are kept, not refused)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class TollwayModel(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    def to_dict(self) -> dict[str, Any]:
        """The object as plain Python values (amounts stay ``Decimal``, times ``datetime``)."""
        return self.model_dump()
