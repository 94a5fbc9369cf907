"""What every response of the portal carries: no framing, no MIME sniffing, Lax cookies.

Set on the app, not on one blueprint, so the guests' splash pages and the extension's admin
pages get it too. Framing is refused twice: ``X-Frame-Options`` for old browsers, CSP
``frame-ancestors`` for the rest (clickjacking an admin's "Disable gateway" button).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
COOKIE_DEFAULTS: dict[str, Any] = {
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SECURE": False,
}
"""Set ``SESSION_COOKIE_SECURE`` (``FLASK_SESSION_COOKIE_SECURE=true``) when served over
HTTPS: the browser then never sends the admin's cookie over plain HTTP."""


def _add_headers(response: Response) -> Response:
    """A page that sets its own CSP keeps it (and must then say ``frame-ancestors`` itself)."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Headers on every response; :data:`COOKIE_DEFAULTS` go in ``create_app``'s defaults, as
    Flask's own defaults would win over ``setdefault``."""
    app.after_request(_add_headers)
