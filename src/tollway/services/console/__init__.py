"""The console's own use cases (SPEC §17.1): sign-in sessions and the spend reports of its overview. Everything
else a console page does goes through the same management and operations services as the API."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.services.console.sessions import ConsoleSessions
from tollway.services.console.spend import SpendReports


@dataclass(frozen=True, slots=True)
class Console:
    sessions: ConsoleSessions
    spend: SpendReports
