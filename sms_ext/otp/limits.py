"""Rate limits and daily budgets of guest verification, kept in Redis.

Limits are parsed by the ``limits`` library and stored in its moving-window layout (a list of
hit times per key, newest first), so its ``MovingWindowRateLimiter`` reads them. The library
counts one key at a time, though: its test-then-hit leaves a gap in which parallel requests
all pass the test, and then each hit counts on every key that still had room, so a burst
from one client spent the whole location's budget while the client's own limit refused it.
One Lua script therefore checks every key of a request and counts on all of them or on none,
atomically, in one round trip: a refused request never uses up a shared budget (a location's,
a country's, a victim's MAC), even under a burst.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from limits import parse_many
from limits.storage import RedisStorage
from redis import Redis

ALL_OR_NONE = """
local now = tonumber(ARGV[1])
local refused = {}
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local expiry = tonumber(ARGV[2 * i + 1])
    local oldest = redis.call('lindex', key, limit - 1)
    if oldest and tonumber(oldest) >= now - expiry then
        refused[#refused + 1] = i
        refused[#refused + 1] = oldest
    end
end
if #refused > 0 then
    return refused
end
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    redis.call('lpush', key, ARGV[1])
    redis.call('ltrim', key, 0, limit - 1)
    redis.call('expire', key, tonumber(ARGV[2 * i + 1]))
end
return refused
"""
"""KEYS: the limits' keys; ARGV: now, then (amount, seconds) per key. Returns nothing when
every key had room (one hit counted on each), else (key number, oldest hit time) pairs of the
refusing keys (nothing counted)."""


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused: the groups whose limit is reached, and the seconds until
    every one of them lets the next request through."""

    wait: int
    groups: frozenset[str]


class Limiter:
    """Named groups of limits (``"phone"``, ``"client"``...) over one Redis connection."""

    def __init__(self, redis: Redis, groups: dict[str, str], prefix: str = "sms_ext") -> None:
        self._storage = RedisStorage(
            "redis://", connection_pool=redis.connection_pool, key_prefix=prefix
        )
        self._groups = {name: parse_many(spec) for name, spec in groups.items() if spec}
        self._script = redis.register_script(ALL_OR_NONE)

    def hit(self, checks: Iterable[tuple[str, str | None]]) -> Refusal | None:
        """Count one event for each ``(group, identity)`` if every limit allows it (``None``),
        else count nothing and return the :class:`Refusal`.

        Identities that are ``None`` (a client without a known MAC) and groups without a
        limit (an empty budget) are skipped.
        """
        entries = [
            (group, item, self._storage.prefixed_key(item.key_for(group, identity)))
            for group, identity in checks
            if identity and group in self._groups
            for item in self._groups[group]
        ]
        if not entries:
            return None
        now = time.time()
        args: list[float] = [now]
        for _group, item, _key in entries:
            args += [item.amount, item.get_expiry()]
        refused = self._script(keys=[key for _g, _i, key in entries], args=args)
        if not refused:
            return None
        waits, groups = [], set()
        for index, oldest in zip(refused[::2], refused[1::2], strict=True):
            group, item, _key = entries[int(index) - 1]
            groups.add(group)
            waits.append(max(1, math.ceil(float(oldest) + item.get_expiry() - now)))
        return Refusal(max(waits), frozenset(groups))
