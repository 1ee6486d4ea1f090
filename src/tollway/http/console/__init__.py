"""The browser console at /console (SPEC §17.1): server-rendered pages over the same services and checks as the API.

``routes.py`` lists every page; ``session.py`` turns the session cookie into the signed-in principal and checks the
CSRF token of every form; ``security.py`` holds the headers every page carries; templates/ and static/ (with the
vendored chart library and its licence) are served by Tollway itself."""
