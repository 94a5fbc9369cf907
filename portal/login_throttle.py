"""Throttling of failed admin logins, per client IP and per username, in the app's Redis.

Only failed attempts count, in exact moving windows of the ``limits`` library. Once a limit is
used up every attempt is refused (the right password too) until the window lets one more
through, so guessing costs the attacker time, not just hashing.

If Redis cannot be asked, logins go on unthrottled and a warning is logged: the admin must be
able to log in to look at an outage (the SMS admin pages do not need Redis), the password hash
still costs each guess tens of milliseconds, and Redis going down is not something an attacker
outside can cause. The guest code step, which spends money, fails closed instead.
"""

from __future__ import annotations

import functools
import logging
import math
import time

from flask import Flask, current_app
from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from sms_ext import ConfigError
from sms_ext.state import get_state

LIMIT_IP = "PORTAL_LOGIN_LIMIT_IP"
LIMIT_USER = "PORTAL_LOGIN_LIMIT_USER"
DEFAULTS = {LIMIT_IP: "20 per 15 minutes; 100 per day", LIMIT_USER: "10 per 15 minutes"}

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Check the limits now: a typo fails at start-up, not at the first login."""
    for key, default in DEFAULTS.items():
        value = app.config.setdefault(key, default)
        try:
            _parsed(str(value or ""))
        except ValueError:
            raise ConfigError(
                f"{key} must be rate limits like {default!r}, got {value!r}."
            ) from None


@functools.lru_cache(maxsize=16)
def _parsed(spec: str) -> list[RateLimitItem]:
    return parse_many(spec)


def _checks(ip: str, username: str) -> list[tuple[RateLimitItem, str, str]]:
    config = current_app.config
    return [
        *((item, "ip", ip) for item in _parsed(config[LIMIT_IP])),
        *((item, "user", username) for item in _parsed(config[LIMIT_USER])),
    ]


def _limiter() -> MovingWindowRateLimiter:
    """Built per call: cheap, and Redis (embedded or not) is touched only by a login POST."""
    redis = get_state().redis
    storage = RedisStorage(
        "redis://", connection_pool=redis.connection_pool, key_prefix="portal_login"
    )
    return MovingWindowRateLimiter(storage)


def seconds_to_wait(ip: str, username: str) -> int | None:
    """``None`` when this IP and username may try a password, else the seconds until every
    used-up limit lets one more attempt through."""
    try:
        limiter = _limiter()
        now = time.time()
        waits = [
            limiter.get_window_stats(item, kind, identity).reset_time - now
            for item, kind, identity in _checks(ip, username)
            if not limiter.test(item, kind, identity)
        ]
    except RedisError as exc:
        log.warning("Login throttling is off: Redis cannot be asked (%s).", type(exc).__name__)
        return None
    return max(1, math.ceil(max(waits))) if waits else None


def count_failure(ip: str, username: str) -> None:
    """Count one failed attempt against the IP's and the username's limits."""
    try:
        limiter = _limiter()
        for item, kind, identity in _checks(ip, username):
            limiter.hit(item, kind, identity)
    except RedisError as exc:
        log.warning("A failed login was not counted: no Redis (%s).", type(exc).__name__)
