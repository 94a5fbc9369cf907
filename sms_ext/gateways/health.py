"""Fleet-wide gateway health, shared by every worker through Redis.

Four things are decided here for each gateway, the same way in every worker process:

- **Pause**: a 429 answer pauses the gateway for everyone for as long as its ``Retry-After``
  asked (:data:`DEFAULT_PAUSE` without one), instead of each message finding out by itself.
- **Breaker**: after ``breaker_failures`` transient failures in a row (timeouts, 5xx,
  connection errors, unconfirmed answers) the gateway is skipped fleet-wide for
  ``breaker_cooldown`` seconds; then exactly one message is let through as a probe. Its outcome
  closes the breaker (success) or opens it again (failure). A probe whose worker died frees its
  claim after :func:`claim_seconds`.
- **Concurrency** (``Gateway.max_in_flight``): a counting semaphore of expiring holders (a
  sorted set of holder -> expiry, the "fair semaphore" of *Redis in Action* 6.3): a holder leaves
  when its request is over, and a worker killed while holding one loses it after
  :func:`claim_seconds`.
- **Rate** (``Gateway.max_per_second``): the same kind of semaphore, whose holders stay one
  second *after* their request ended. The provider counts requests as they arrive, which is
  somewhere between the moment we send and the moment its answer is back; a window counted from
  the send (a moving window of the ``limits`` library) lets a request that was delayed on its way
  (a new connection, a busy CPU) land in the next second with the next N. Counting each request
  from its start to one second after its answer keeps every second *at the provider* at N or
  fewer whatever the delays, at the price of ``N / (1 s + latency)`` instead of ``N`` per second.

Both limits are checked and taken in one Lua call, by Redis' clock (``TIME``), so workers with
skewed clocks agree; so do the pause and the breaker.

Redis trouble never stops a message: every method fails *open* (no refusal, a permit at once, no
views) and logs one line when Redis becomes unreachable and one when it is back. While it is
unreachable only one call per :data:`REDIS_RETRY` seconds tries it again, so a frozen Redis costs
one socket timeout per interval, not one per message.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError

from .fields import DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from ..models import Gateway
    from .base import SendResult

log = logging.getLogger("sms_ext")

DEFAULT_PAUSE = 1.0
"""Seconds a 429 without ``Retry-After`` pauses the gateway."""
MAX_PAUSE = 3600.0
"""The longest pause a ``Retry-After`` can ask for; a longer one is cut to this."""
WINDOW_MS = 1000
"""How long a request keeps its ``max_per_second`` slot after its answer came back."""
POLL = 0.05
"""Seconds between looks while ``max_in_flight`` is reached (a release in this process wakes
the waiter at once; one in another process is seen at the next look)."""
REDIS_RETRY = 1.0
"""Seconds between attempts to reach Redis after it failed; meanwhile every call fails open."""
FAILURES_TTL_MS = 3_600_000
"""A failure streak nobody added to for an hour is forgotten (and its breaker with it)."""
ALL_CLEAR_SECONDS = 0.2
"""How long a process trusts an "all clear" (no pause, breaker closed, no failures) without
asking Redis again: two round trips per request are saved on a healthy gateway, and a pause or
an open breaker decided by another worker is seen here at most this late."""
MIN_CLAIM = 1.0
"""The shortest claim (seconds), whatever the gateway's timeout."""

_SERVER_NOW = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: paused, breaker, failures, probe. ARGV: threshold, probe claim (ms), probe token.
# Returns {state, until (ms, or ''), failures}: 0 go, 1 paused, 2 open, 3 being probed, 4 probe.
_CHECK = """
local paused = redis.call('GET', KEYS[1])
if paused then return {1, paused, 0} end
local failures = tonumber(redis.call('GET', KEYS[3]) or '0')
local opened = redis.call('GET', KEYS[2])
if opened then return {2, opened, failures} end
if failures >= tonumber(ARGV[1]) then
  if redis.call('SET', KEYS[4], ARGV[3], 'NX', 'PX', ARGV[2]) then return {4, '', failures} end
  return {3, '', failures}
end
return {0, '', failures}
"""

# KEYS: paused, breaker, failures, probe.
# ARGV: outcome ('ok', 'fail', 'pause'), threshold, cool-down (ms), pause (ms), pause reason,
# how long a failure streak is kept (ms).
# Returns {changed, failures}: 'ok' -> 1 when it closed a breaker; 'fail' -> 1 when it opened
# one; 'pause' -> 1 when it set or lengthened the pause.
_RECORD = (
    _SERVER_NOW
    + """
local outcome = ARGV[1]
local threshold = tonumber(ARGV[2])
if outcome == 'ok' then
  local failures = tonumber(redis.call('GET', KEYS[3]) or '0')
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
  if failures >= threshold then return {1, failures} end
  return {0, failures}
end
if outcome == 'pause' then
  local ms = tonumber(ARGV[4])
  local ends = now + ms
  local current = redis.call('GET', KEYS[1])
  redis.call('DEL', KEYS[4])
  if current and tonumber(string.match(current, '^%d+')) >= ends then return {0, 0} end
  redis.call('SET', KEYS[1], string.format('%.0f', ends) .. ':' .. ARGV[5], 'PX', ms)
  return {1, 0}
end
local failures = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if failures < threshold then return {0, failures} end
redis.call('DEL', KEYS[4])
local cooldown = tonumber(ARGV[3])
if redis.call('SET', KEYS[2], string.format('%.0f', now + cooldown), 'NX', 'PX', cooldown) then
  return {1, failures}
end
return {0, failures}
"""
)

# KEYS: rate holders, in-flight holders (sorted sets: token -> expiry in ms).
# ARGV: max_per_second (0: none), max_in_flight (0: none), claim (ms), token, window (ms).
# Returns 0 when both allow one more (the token then holds a slot in each limited set), else
# the milliseconds until a rate slot can free (the window), or -1 when max_in_flight is full.
_TAKE = (
    _SERVER_NOW
    + """
local stamp = string.format('%.0f', now)
local rate, flight = tonumber(ARGV[1]), tonumber(ARGV[2])
if rate > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stamp)
  if redis.call('ZCARD', KEYS[1]) >= rate then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, math.min(tonumber(first[2]) - now, tonumber(ARGV[5])))
  end
end
if flight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', stamp)
  if redis.call('ZCARD', KEYS[2]) >= flight then return -1 end
end
local claim = tonumber(ARGV[3])
local expiry = string.format('%.0f', now + claim)
for index, limit in ipairs({rate, flight}) do
  if limit > 0 then
    redis.call('ZADD', KEYS[index], expiry, ARGV[4])
    if redis.call('PTTL', KEYS[index]) < claim then redis.call('PEXPIRE', KEYS[index], claim) end
  end
end
return 0
"""
)

# KEYS: rate holders, in-flight holders. ARGV: token, window (ms).
# The request is over: its in-flight slot frees now, its rate slot one window from now.
_GIVE_BACK = (
    _SERVER_NOW
    + """
redis.call('ZREM', KEYS[2], ARGV[1])
local window = tonumber(ARGV[2])
if redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%.0f', now + window), ARGV[1]) == 1 then
  if redis.call('PTTL', KEYS[1]) < window then redis.call('PEXPIRE', KEYS[1], window) end
end
return 0
"""
)


def claim_seconds(gateway: Gateway) -> float:
    """How long a concurrency slot or a probe claim outlives a worker that died holding it:
    twice the gateway's request timeout (its default when it has none)."""
    raw = (gateway.settings or {}).get("timeout")
    try:
        timeout = float(raw) if raw not in (None, "") else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        timeout = DEFAULT_TIMEOUT
    return max(MIN_CLAIM, 2 * timeout)


def _utc(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def clock(moment: datetime) -> str:
    """``12:00:05 UTC``, with the date in front when it is not today (UTC)."""
    moment = moment.astimezone(UTC)
    if moment.date() == datetime.now(UTC).date():
        return moment.strftime("%H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _until(raw: Any) -> datetime:
    """A stored ``<ms>`` or ``<ms>:<reason>`` value as an aware UTC datetime."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return _utc(float(text.partition(":")[0]))


def _in_a_row(failures: int) -> str:
    return f"{failures} failure{'' if failures == 1 else 's'} in a row"


@dataclass(eq=False)
class Permit:
    """Leave to send one request to one gateway; give it back with :meth:`GatewayHealth.release`
    once the request is over (answered, failed or timed out)."""

    gateway_id: int
    token: str | None = None
    """This request's holder in the gateway's limits; ``None`` when it holds no slot (the
    gateway has no limits, or Redis was unreachable)."""
    released: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class HealthView:
    """What the admin list shows about one gateway's health."""

    paused_until: datetime | None = None
    """End of a 429 pause (aware UTC), while one is on."""
    skipped_until: datetime | None = None
    """End of the breaker's cool-down (aware UTC), while the breaker is open."""
    failures: int = 0
    """Transient failures in a row, fleet-wide."""
    probing: bool = False
    """The cool-down is over but the breaker not yet closed: the next message (only one at a
    time) tests the gateway."""


def describe(view: HealthView) -> list[str]:
    """What the admin list says about a gateway's health: nothing when all is well."""
    lines = []
    if view.paused_until is not None:
        lines.append(f"Paused until {clock(view.paused_until)}")
    if view.skipped_until is not None:
        lines.append(f"Skipped until {clock(view.skipped_until)} ({_in_a_row(view.failures)})")
    elif view.probing:
        lines.append(f"Being tested with one message ({_in_a_row(view.failures)})")
    elif view.failures:
        lines.append(_in_a_row(view.failures).capitalize())
    return lines


@dataclass
class _Local:
    """Per gateway, in this process: one thread at a time waits on Redis for a permit (the
    others queue on ``gate``), and a release here wakes it at once."""

    gate: threading.Lock = field(default_factory=threading.Lock)
    freed: threading.Event = field(default_factory=threading.Event)


class GatewayHealth:
    """Pause, breaker, rate and concurrency limits of every gateway, shared through Redis.

    One instance per app and process (``state.gateway_health``), used by any number of
    threads; every key lives under ``<prefix>:gateway:<id>:``.

    :param redis: a client with socket timeouts (its connection pool is shared by every thread).
    :param prefix: the key namespace, ``sms_ext:<SMS_QUEUE>``.
    :param breaker_failures: transient failures in a row that open a gateway's breaker.
    :param breaker_cooldown: seconds an open breaker skips the gateway before one probe.
    """

    def __init__(
        self, redis: Redis, *, prefix: str, breaker_failures: int, breaker_cooldown: float
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.breaker_failures = breaker_failures
        self.breaker_cooldown = breaker_cooldown
        self._check = redis.register_script(_CHECK)
        self._record = redis.register_script(_RECORD)
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._locals: dict[int, _Local] = {}
        self._locals_lock = threading.Lock()
        self._clear_until: dict[int, float] = {}
        self._redis_lock = threading.Lock()
        self._redis_down = False
        self._retry_at = 0.0
        self._probe_token = f"{os.uname().nodename}:{os.getpid()}"

    # -- keys and local state ---------------------------------------------------------------

    def key(self, gateway_id: int, name: str) -> str:
        """The Redis key ``name`` of a gateway (``paused``, ``breaker``, ``in-flight``...)."""
        return f"{self.prefix}:gateway:{gateway_id}:{name}"

    def _breaker_keys(self, gateway_id: int) -> list[str]:
        return [self.key(gateway_id, name) for name in ("paused", "breaker", "failures", "probe")]

    def _local(self, gateway_id: int) -> _Local:
        local = self._locals.get(gateway_id)
        if local is None:
            with self._locals_lock:
                local = self._locals.setdefault(gateway_id, _Local())
        return local

    def _slot_keys(self, gateway_id: int) -> list[str]:
        return [self.key(gateway_id, "rate"), self.key(gateway_id, "in-flight")]

    # -- Redis reachability: fail open, one log line per change -------------------------------

    def _usable(self) -> bool:
        """Whether to ask Redis now: always while it answers; after a failure, one caller per
        :data:`REDIS_RETRY` seconds (the others fail open without waiting on a socket)."""
        if not self._redis_down:
            return True
        with self._redis_lock:
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + REDIS_RETRY
            return True

    def _failed(self, exc: RedisError) -> None:
        with self._redis_lock:
            self._retry_at = time.monotonic() + REDIS_RETRY
            if self._redis_down:
                return
            self._redis_down = True
        log.warning(
            "gateway health: Redis unreachable (%s); sending without pauses, breakers and "
            "gateway limits until it is back",
            exc,
        )

    def _answered(self) -> None:
        if not self._redis_down:
            return
        with self._redis_lock:
            if not self._redis_down:
                return
            self._redis_down = False
        log.info("gateway health: Redis reachable again; pauses, breakers and limits apply")

    # -- refusal ----------------------------------------------------------------------------

    def refusal(self, gateway: Gateway) -> str | None:
        """Why ``gateway`` must not be tried now, as a sentence for the attempt record, or
        ``None`` to go ahead.

        When a breaker's cool-down has ended, exactly one caller fleet-wide gets ``None``: that
        caller's message is the probe. The others keep getting a refusal until the probe's
        outcome is recorded, or its claim expires (:func:`claim_seconds`).
        """
        if time.monotonic() < self._clear_until.get(gateway.id, 0.0):
            return None
        if not self._usable():
            return None
        claim_ms = int(claim_seconds(gateway) * 1000)
        try:
            state, until, failures = self._check(
                keys=self._breaker_keys(gateway.id),
                args=[self.breaker_failures, claim_ms, self._probe_token],
            )
        except RedisError as exc:
            self._failed(exc)
            return None
        self._answered()
        failures = int(failures)
        if state == 0 and failures == 0:
            self._clear_until[gateway.id] = time.monotonic() + ALL_CLEAR_SECONDS
        if state == 1:
            reason = until.decode() if isinstance(until, bytes) else str(until)
            why = (
                "the gateway answered 429 with Retry-After"
                if reason.endswith(":retry-after")
                else "the gateway answered 429 (too many requests)"
            )
            return f"Paused until {clock(_until(until))}: {why}."
        if state == 2:
            return f"Skipped until {clock(_until(until))}: {_in_a_row(failures)}."
        if state == 3:
            return (
                f"Skipped: {_in_a_row(failures)}; another message is testing whether the "
                "gateway works again."
            )
        if state == 4:
            log.info("gateway %s: cool-down over, probing it with one message", gateway.id)
        return None

    # -- outcomes ---------------------------------------------------------------------------

    def record(self, gateway: Gateway, result: SendResult) -> None:
        """Count the outcome of one request to ``gateway``.

        - a 429 pauses the gateway for everyone for ``result.retry_after`` seconds (at most
          :data:`MAX_PAUSE`; :data:`DEFAULT_PAUSE` without one); it neither counts toward the
          breaker nor resets it;
        - a transient failure (``retryable`` and not ``ok``) counts toward the breaker, which
          opens at ``breaker_failures`` in a row;
        - a success, or any other answer from the gateway (a refused number: the gateway is
          up), resets the count and closes the breaker;
        - a failure without an answer that is not transient (the request could not be built)
          says nothing about the gateway and changes nothing.
        """
        pause_ms = 0
        reason = ""
        if result.http_status == 429:
            outcome = "pause"
            seconds = result.retry_after if result.retry_after else DEFAULT_PAUSE
            pause_ms = max(1, int(min(seconds, MAX_PAUSE) * 1000))
            reason = "retry-after" if result.retry_after else "429"
        elif result.ok or (not result.retryable and result.http_status is not None):
            outcome = "ok"
        elif result.retryable:
            outcome = "fail"
        else:
            return
        if outcome == "ok" and time.monotonic() < self._clear_until.get(gateway.id, 0.0):
            return  # nothing to reset: no failures in a row, breaker closed
        self._clear_until.pop(gateway.id, None)
        if not self._usable():
            return
        try:
            changed, failures = self._record(
                keys=self._breaker_keys(gateway.id),
                args=[
                    outcome,
                    self.breaker_failures,
                    int(self.breaker_cooldown * 1000),
                    pause_ms,
                    reason,
                    FAILURES_TTL_MS,
                ],
            )
        except RedisError as exc:
            self._failed(exc)
            return
        self._answered()
        if not changed:
            return
        if outcome == "ok":
            log.info("gateway %s: answered again; breaker closed", gateway.id)
        elif outcome == "fail":
            log.warning(
                "gateway %s: %s; skipped by every worker for %g s",
                gateway.id,
                _in_a_row(int(failures)),
                self.breaker_cooldown,
            )
        else:
            log.info("gateway %s: answered 429; paused for %g s", gateway.id, pause_ms / 1000)

    # -- permits: max_per_second and max_in_flight --------------------------------------------

    def acquire(self, gateway: Gateway, *, timeout: float) -> Permit | None:
        """Wait until ``gateway.max_per_second`` and ``gateway.max_in_flight`` allow one more
        request across every worker: a :class:`Permit` to :meth:`release` once the request is
        over, or ``None`` when ``timeout`` seconds passed (at once when the rate cannot free a
        slot within ``timeout``).

        Without limits on the gateway: a permit at once, no Redis round trip. In one process,
        one thread per gateway asks Redis at a time; the others queue behind it.
        """
        per_second, in_flight = gateway.max_per_second or 0, gateway.max_in_flight or 0
        if not per_second and not in_flight:
            return Permit(gateway.id)
        if not self._usable():
            return Permit(gateway.id)
        deadline = time.monotonic() + max(0.0, timeout)
        local = self._local(gateway.id)
        if not local.gate.acquire(timeout=max(0.0, timeout)):
            return None
        if not self._usable():  # Redis failed for the thread before us: fail open at once
            local.gate.release()
            return Permit(gateway.id)
        token = secrets.token_hex(8)
        args: list[int | str] = [
            per_second,
            in_flight,
            int(claim_seconds(gateway) * 1000),
            token,
            WINDOW_MS,
        ]
        try:
            while True:
                local.freed.clear()
                wait_ms = self._take(keys=self._slot_keys(gateway.id), args=args)
                if wait_ms == 0:
                    break
                wait = POLL if wait_ms < 0 else wait_ms / 1000
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (wait_ms > 0 and wait > remaining):
                    return None
                local.freed.wait(min(wait, remaining))
        except RedisError as exc:
            self._failed(exc)
            return Permit(gateway.id)
        finally:
            local.gate.release()
        self._answered()
        return Permit(gateway.id, token)

    def release(self, permit: Permit) -> None:
        """The request of ``permit`` is over (answered, failed or timed out): its
        ``max_in_flight`` slot frees now, its ``max_per_second`` slot one second from now.
        Idempotent; never raises."""
        if permit.released:
            return
        permit.released = True
        if permit.token is None:
            return
        try:
            self._give_back(keys=self._slot_keys(permit.gateway_id), args=[permit.token, WINDOW_MS])
        except RedisError as exc:
            self._failed(exc)  # the slots expire by themselves
            return
        self._local(permit.gateway_id).freed.set()

    # -- admin --------------------------------------------------------------------------------

    def views(self, gateway_ids: Iterable[int]) -> dict[int, HealthView]:
        """Pause, breaker and failure streak of each gateway, in one round trip; ``{}`` when
        Redis cannot be asked (the admin then shows nothing)."""
        ids = list(gateway_ids)
        if not ids or not self._usable():
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for gateway_id in ids:
            paused, breaker, failures, _probe = self._breaker_keys(gateway_id)
            pipe.get(paused)
            pipe.get(breaker)
            pipe.get(failures)
        try:
            answers = pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            return {}
        self._answered()
        views = {}
        for index, gateway_id in enumerate(ids):
            paused, breaker, failures = answers[3 * index : 3 * index + 3]
            count = int(failures or 0)
            views[gateway_id] = HealthView(
                paused_until=_until(paused) if paused else None,
                skipped_until=_until(breaker) if breaker else None,
                failures=count,
                probing=not breaker and count >= self.breaker_failures,
            )
        return views
