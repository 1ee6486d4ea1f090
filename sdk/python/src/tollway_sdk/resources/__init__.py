"""The API's resources, one module per area: ``admin/`` (operator), ``platform/`` (platform), ``me/`` (end user),
``threads`` (the caller's agent threads). Each module here names both classes of its area; the async ones are
written in ``tollway_sdk._async.resources`` and the sync ones generated from them into ``tollway_sdk._sync.resources``
(``scripts/gen_sync.py``)."""
