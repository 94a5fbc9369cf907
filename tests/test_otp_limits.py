"""The OTP rate limiter on a real Redis: all limits or none, and how long to wait."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from sms_ext.otp.limits import Limiter, Refusal

GROUPS = {"phone": "1 per minute", "client": "10 per minute", "location": "3 per minute"}


def ask(limiter: Limiter, phone: str, client: str | None = "10.0.0.1") -> Refusal | None:
    return limiter.hit([("client", client), ("location", "cafe"), ("phone", phone)])


def test_a_refused_request_uses_up_no_other_budget(redis: Redis) -> None:
    limiter = Limiter(redis, GROUPS, prefix="sms_ext:test")
    assert ask(limiter, "+27831234567") is None
    for _ in range(5):  # the phone's limit refuses: the location's budget must not shrink
        refusal = ask(limiter, "+27831234567")
        assert refusal is not None and 1 <= refusal.wait <= 60
        assert refusal.groups == {"phone"}
    assert ask(limiter, "+27831234568") is None
    assert ask(limiter, "+27831234569") is None
    refusal = ask(limiter, "+27831234570")  # now the location's 3 are used
    assert refusal is not None and refusal.groups == {"location"}


def test_the_wait_is_that_of_the_slowest_refusing_limit(redis: Redis) -> None:
    limiter = Limiter(redis, {"phone": "1 per minute; 1 per hour"}, prefix="sms_ext:test")
    assert limiter.hit([("phone", "+27831234567")]) is None
    refusal = limiter.hit([("phone", "+27831234567")])
    assert refusal is not None and 3540 <= refusal.wait <= 3600


def test_unknown_identities_and_empty_budgets_are_skipped(redis: Redis) -> None:
    limiter = Limiter(redis, {**GROUPS, "country": ""}, prefix="sms_ext:test")
    assert limiter.hit([("client", None), ("country", "27")]) is None
    redis.script_flush()  # a restarted Redis has lost the script
    assert ask(limiter, "+27831234567", client=None) is None
    assert ask(limiter, "+27831234567", client=None) is not None


def test_a_burst_from_one_client_spends_only_what_it_is_let_through(redis: Redis) -> None:
    """The report: one IP sent 62 requests in 0.3 s, got its 10 codes, and used up the whole
    location's budget on the way. Counted all or none, the location sees those 10 only."""
    limiter = Limiter(
        redis, {"client": "10 per hour", "location": "60 per minute"}, prefix="sms_ext:test"
    )
    burst = 62
    barrier = threading.Barrier(burst)

    def request(_: int) -> Refusal | None:
        barrier.wait()
        return limiter.hit([("client", "10.0.0.66"), ("location", "cafe")])

    with ThreadPoolExecutor(burst) as pool:
        outcomes = list(pool.map(request, range(burst)))
    assert sum(outcome is None for outcome in outcomes) == 10
    window = MovingWindowRateLimiter(
        RedisStorage("redis://", connection_pool=redis.connection_pool, key_prefix="sms_ext:test")
    ).get_window_stats(parse("60 per minute"), "location", "cafe")
    assert window.remaining == 50  # the library reads our counts: the other guests' 50 are left
    assert limiter.hit([("client", "10.0.0.77"), ("location", "cafe")]) is None
