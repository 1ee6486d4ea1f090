"""A stored row as management reads, changes and renders it: column name to value (SPEC §1.2 lists, §5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Record = Mapping[str, Any]
