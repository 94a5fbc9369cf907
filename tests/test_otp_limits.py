"""The OTP rate limiter on a real Redis: all limits or none, and how long to wait."""

from __future__ import annotations

from redis import Redis

from sms_ext.otp.limits import Limiter

GROUPS = {"phone": "1 per minute", "client": "10 per minute", "location": "3 per minute"}


def ask(limiter: Limiter, phone: str, client: str | None = "10.0.0.1") -> int | None:
    return limiter.hit([("location", "cafe"), ("client", client), ("phone", phone)])


def test_a_refused_request_uses_up_no_other_budget(redis: Redis) -> None:
    limiter = Limiter(redis, GROUPS, prefix="sms_ext:test")
    assert ask(limiter, "+27831234567") is None
    for _ in range(5):  # the phone's limit refuses: the location's budget must not shrink
        wait = ask(limiter, "+27831234567")
        assert wait is not None and 1 <= wait <= 60
    assert ask(limiter, "+27831234568") is None
    assert ask(limiter, "+27831234569") is None
    assert ask(limiter, "+27831234570") is not None  # now the location's 3 are used


def test_the_wait_is_that_of_the_slowest_refusing_limit(redis: Redis) -> None:
    limiter = Limiter(redis, {"phone": "1 per minute; 1 per hour"}, prefix="sms_ext:test")
    assert limiter.hit([("phone", "+27831234567")]) is None
    wait = limiter.hit([("phone", "+27831234567")])
    assert wait is not None and 3540 <= wait <= 3600


def test_unknown_identities_are_skipped_and_scripts_reload(redis: Redis) -> None:
    limiter = Limiter(redis, GROUPS, prefix="sms_ext:test")
    assert limiter.hit([("client", None)]) is None
    redis.script_flush()  # a restarted Redis has lost the library's Lua scripts
    assert ask(limiter, "+27831234567", client=None) is None
    assert ask(limiter, "+27831234567", client=None) is not None
