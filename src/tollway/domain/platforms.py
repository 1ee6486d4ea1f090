"""Platform slugs (SPEC §4.3): their length limit and the free variant of a derived slug that is taken."""

from __future__ import annotations

from typing import Final

SLUG_MAX: Final = 64


def next_free_slug(base: str, taken: set[str]) -> str:
    """``base``, else ``base-2``, ``base-3``…, each cut so that the whole stays within 64 characters."""
    if base not in taken:
        return base
    n = 2
    while True:
        suffix = f"-{n}"
        candidate = base[: SLUG_MAX - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
        n += 1
