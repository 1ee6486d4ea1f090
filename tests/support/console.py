"""A browser-less console client for tests: an httpx client with its cookie jar, that signs in with a key and sends
forms with the CSRF token of the page they came from (as a browser would)."""

from __future__ import annotations

import html as html_lib
import re
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
_ERROR = re.compile(
    r'<div class="error" role="alert" id="error">\s*<strong>([a-z_]+)</strong>\s*(.*?)\s*(?:<span|</div>)', re.S
)
_SECRET = re.compile(r'<code class="secret" id="secret-value">([^<]+)</code>')


class ConsoleClient:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def sign_in(self, key: str) -> httpx.Response:
        page = self.http.get("/console/sign-in")
        return self.http.post("/console/sign-in", data={"csrf": csrf_of(page.text), "key": key})

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def submit(self, page_path: str, action: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """Loads ``page_path`` and posts ``data`` to ``action`` with that page's CSRF token and the hidden fields of
        its form for ``action`` (a money form's one-time key), as a browser would."""
        page = self.http.get(page_path)
        assert page.status_code == 200, page.text
        return self.http.post(action, data={**form_fields(page.text, action), **(data or {})})

    def created(self, page_path: str, action: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """Submits a form that creates a secret and follows its redirect (post/redirect/get) to the page showing it."""
        sent = self.submit(page_path, action, data)
        assert sent.status_code == 303, sent.text[:500]
        return self.http.get(sent.headers["location"])

    @property
    def session_cookie(self) -> str | None:
        return self.http.cookies.get("tollway_session")


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


def form_fields(html: str, action: str) -> dict[str, str]:
    """The hidden fields (the CSRF token included) of the page's first form posting to ``action``."""
    start = html.find(f'action="{action}"')
    fields = {"csrf": csrf_of(html)}
    if start >= 0:
        fields |= dict(_HIDDEN.findall(html[start : html.find("</form>", start)]))
    return fields


def error_of(html: str) -> tuple[str, str] | None:
    """The (code, message) of the page's §3 error banner."""
    found = _ERROR.search(html)
    return None if found is None else (found.group(1), html_lib.unescape(found.group(2).strip()))


def secret_of(html: str) -> str:
    found = _SECRET.search(html)
    assert found is not None, html[:500]
    return found.group(1)
