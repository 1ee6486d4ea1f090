"""``/v1/platforms/{pid}/logs`` (SPEC §12): one usage row per upstream call, with its cost and charge."""

from __future__ import annotations

from datetime import datetime

from tollway_sdk._pagination import AsyncPaginator, ListCall
from tollway_sdk._resource import AsyncAPIResource, Scoped, parser
from tollway_sdk._types import NOT_GIVEN, NotGiven, query
from tollway_sdk.types.usage import UsageLog


class _Calls(Scoped):
    def _list_call(
        self,
        model: str | NotGiven,
        end_user_id: str | NotGiven,
        status: str | NotGiven,
        request_type: str | NotGiven,
        since: datetime | NotGiven,
        until: datetime | NotGiven,
    ) -> ListCall[UsageLog]:
        filters = query(
            model=model, end_user_id=end_user_id, status=status, request_type=request_type, since=since, until=until
        )
        return ListCall(self._platform("logs"), parser(UsageLog), filters)


class AsyncLogs(_Calls, AsyncAPIResource):
    def list(
        self,
        *,
        model: str | NotGiven = NOT_GIVEN,
        end_user_id: str | NotGiven = NOT_GIVEN,
        status: str | NotGiven = NOT_GIVEN,
        request_type: str | NotGiven = NOT_GIVEN,
        since: datetime | NotGiven = NOT_GIVEN,
        until: datetime | NotGiven = NOT_GIVEN,
        limit: int | NotGiven = NOT_GIVEN,
        page: int = 1,
    ) -> AsyncPaginator[UsageLog]:
        """Usage rows, newest first; filter by model slug, end user, status (``success``, ``error``,
        ``interrupted``), request type, and time (``since`` inclusive, ``until`` exclusive)."""
        call = self._list_call(model, end_user_id, status, request_type, since, until)
        return self._list(call, limit, page)
