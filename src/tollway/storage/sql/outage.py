"""The database's absence as our error: repositories read on the request path raise ``ServiceUnavailable`` (503,
SPEC §3) instead of a driver exception, so services never see SQLAlchemy."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import sqlalchemy.exc

from tollway.errors import ServiceUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def database_required(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc

    return guarded
