"""Rate limits of guest verification, kept in Redis by the ``limits`` library.

Moving windows are exact and each hit is one atomic Lua call (the library's own scripts), so
twenty parallel requests cannot get more than the limit allows. Every refusal carries how long
to wait.

A request is counted against every limit or against none: all its limits are tested first and
hit only when none refuses, so refused requests never use up a shared budget (a location's, a
victim's MAC). The tests go to Redis in one pipeline and the hits in a second one: two round
trips per request whatever the number of limits. Between the two, a parallel request may take
the last slot of a limit; its hit then refuses atomically as before (the earlier hits of the
same pipeline have counted: the rare loser of a race pays for one attempt).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from limits import RateLimitItem, parse_many
from limits.storage import RedisStorage
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class Limiter:
    """Named groups of limits (``"phone"``, ``"client"``...) over one Redis connection."""

    def __init__(self, redis: Redis, groups: dict[str, str], prefix: str = "sms_ext") -> None:
        self._redis = redis
        self._storage = RedisStorage(
            "redis://", connection_pool=redis.connection_pool, key_prefix=prefix
        )
        self._groups = {name: parse_many(spec) for name, spec in groups.items()}

    def hit(self, checks: Iterable[tuple[str, str | None]]) -> int | None:
        """Count one event for each ``(group, identity)``; ``None`` when all allow it, else the
        seconds to wait until every refusing limit lets the next event through (nothing is
        counted then).

        Identities that are ``None`` (a client without a known MAC) are skipped.
        """
        entries = [
            (item, self._storage.prefixed_key(item.key_for(group, identity)))
            for group, identity in checks
            if identity
            for item in self._groups[group]
        ]
        if not entries:
            return None
        now = time.time()
        # The library's MovingWindowRateLimiter.test and .hit, batched (limits is pinned: its
        # scripts and their arguments are those of RedisStorage.get_moving_window and
        # .acquire_entry).
        windows = self._pipelined(
            self._storage.lua_moving_window,
            [(key, (now - item.get_expiry(), item.amount)) for item, key in entries],
        )
        waits = [
            _seconds_until(float(window[0]) + item.get_expiry(), now)
            for (item, _key), window in zip(entries, windows, strict=True)
            if window and int(window[1]) > item.amount - 1
        ]
        if waits:
            return max(waits)
        acquired = self._pipelined(
            self._storage.lua_acquire_moving_window,
            [(key, (now, item.amount, item.get_expiry(), 1)) for item, key in entries],
        )
        for (item, key), ok in zip(entries, acquired, strict=True):
            if not ok:  # taken by a parallel request since the test
                return self._wait(item, key)
        return None

    def _pipelined(self, script: Script, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run ``script`` once per ``(key, args)`` in one round trip, in order.

        ``EVALSHA`` directly: redis-py's ``Script`` in a pipeline asks ``SCRIPT EXISTS`` first,
        an extra round trip on every call. A Redis that lost its scripts (restart, flush)
        answers NOSCRIPT to every call of the pipeline, so none ran: load and run again.
        """
        for attempt in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for key, args in calls:
                pipe.evalsha(script.sha, 1, key, *args)
            try:
                return pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                script.sha = self._redis.script_load(script.script)
        raise AssertionError("unreachable")

    def _wait(self, item: RateLimitItem, key: str) -> int:
        now = time.time()
        window = self._storage.lua_moving_window([key], [now - item.get_expiry(), item.amount])
        if not window:
            return 1
        return _seconds_until(float(window[0]) + item.get_expiry(), now)


def _seconds_until(reset_at: float, now: float) -> int:
    return max(1, math.ceil(reset_at - now))
