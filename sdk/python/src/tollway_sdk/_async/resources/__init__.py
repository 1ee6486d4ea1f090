"""The API's resources, one module per area: ``admin/`` (operator), ``platform/`` (platform), ``me/`` (end user),
``threads`` (the caller's agent threads)."""
