"""Rate limits of guest verification, kept in Redis by the ``limits`` library.

Moving windows are exact and each hit is one atomic Lua call, so twenty parallel requests
cannot get more than the limit allows. Every refusal carries how long to wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis


class Limiter:
    """Named groups of limits (``"phone"``, ``"client"``...) over one Redis connection."""

    def __init__(self, redis: Redis, groups: dict[str, str], prefix: str = "sms_ext") -> None:
        storage = RedisStorage("redis://", connection_pool=redis.connection_pool, key_prefix=prefix)
        self._limiter = MovingWindowRateLimiter(storage)
        self._groups = {name: parse_many(spec) for name, spec in groups.items()}

    def hit(self, checks: Iterable[tuple[str, str | None]]) -> int | None:
        """Count one event for each ``(group, identity)``; ``None`` when all allow it, else the
        seconds to wait before the first refusing limit lets the next event through.

        Identities that are ``None`` (a client without a known MAC) are skipped.
        """
        for group, identity in checks:
            if not identity:
                continue
            for item in self._groups[group]:
                if not self._limiter.hit(item, group, identity):
                    return self._wait(item, group, identity)
        return None

    def _wait(self, item: RateLimitItem, group: str, identity: str) -> int:
        reset_at, _remaining = self._limiter.get_window_stats(item, group, identity)
        return max(1, math.ceil(reset_at - time.time()))
