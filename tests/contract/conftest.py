"""Schemathesis against the live app (tests/contract/test_schemathesis.py): its figures are kept here and printed at
the end of the pytest run, so that they show in the CI log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class Figures:
    cases: Counter[str] = field(default_factory=Counter)  # operation label -> cases sent
    statuses: Counter[int] = field(default_factory=Counter)
    stateful_steps: int = 0
    stateful_scenarios: int = 0
    failures: int = 0
    stateful_stopped: bool = False  # hypothesis stopped the stateful phase early (see the test)
    first_failures: list[str] = field(default_factory=list)  # what went wrong, kept when hypothesis hides it

    def failed(self, label: str, error: BaseException) -> None:
        self.failures += 1
        if len(self.first_failures) < 5:
            self.first_failures.append(f"{label}: {str(error).strip()[:1500]}")

    def lines(self, documented: int, skipped: list[str]) -> list[str]:
        sent = sum(self.cases.values())
        return [
            f"operations: {len(self.cases)} exercised of {documented} documented (skipped: {', '.join(skipped)})",
            f"cases: {sent} stateless, {self.stateful_steps} stateful steps in {self.stateful_scenarios} scenarios"
            + (
                " (stopped early: the live server's state differs between hypothesis replays)"
                if self.stateful_stopped
                else ""
            ),
            "statuses: " + ", ".join(f"{status}x{count}" for status, count in sorted(self.statuses.items())),
            f"failures: {self.failures}",
            *self.first_failures,
        ]


FIGURES = Figures()
DOCUMENTED: list[int] = []
SKIPPED_FIGURE: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES.cases and not FIGURES.stateful_steps:
        return
    terminalreporter.section("schemathesis")
    for line in FIGURES.lines(DOCUMENTED[0] if DOCUMENTED else 0, SKIPPED_FIGURE):
        terminalreporter.write_line(line)
