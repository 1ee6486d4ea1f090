"""The OpenAPI 3.1 document of SPEC §18 and its viewer: ``operations.py`` (what an operation says), the tables
``ops_*.py`` (one operation per served route), ``schemas.py`` (answers), ``inference_bodies.py``, ``document.py``
(the build) and ``routes.py`` (``/openapi.json``, ``/docs``). See docs/api.md."""
