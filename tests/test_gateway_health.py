"""Fleet-wide gateway health: pauses, breakers and per-gateway limits, shared through Redis.

Two :class:`GatewayHealth` instances with their own connections stand for two workers; real
threads race for probes and permits, and limits are measured where the provider would see them:
at the gateway simulator.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from redis import Redis

from sms_ext import ConfigError
from sms_ext.gateways.base import SendResult
from sms_ext.gateways.health import (
    ALL_CLEAR_SECONDS,
    MIN_CLAIM,
    REDIS_RETRY,
    GatewayHealth,
    HealthView,
    claim_seconds,
    describe,
)
from sms_ext.models import Gateway
from tests.conftest import make_app
from tests.redis_server import RedisServer
from tests.simulator import GatewaySimulator

OK = SendResult(ok=True, http_status=200)
TIMEOUT = SendResult(ok=False, retryable=True, error="Timed out")
SERVER_ERROR = SendResult(ok=False, retryable=True, http_status=503)
REFUSED = SendResult(ok=False, retryable=False, http_status=400, error="Invalid number")


def too_many(retry_after: float | None) -> SendResult:
    return SendResult(ok=False, retryable=True, http_status=429, retry_after=retry_after)


def gateway(gateway_id: int = 1, **limits: int | None) -> Gateway:
    """A gateway as delivery holds it; health only reads its id, limits and timeout."""
    return Gateway(
        id=gateway_id,
        name=f"gw{gateway_id}",
        type="custom",
        settings={"timeout": 0.5},
        max_per_second=limits.get("max_per_second"),
        max_in_flight=limits.get("max_in_flight"),
    )


@pytest.fixture
def workers(redis: Redis, redis_url: str) -> Iterator[Callable[..., GatewayHealth]]:
    """Builds "workers": each its own GatewayHealth over its own connection pool."""
    clients: list[Redis] = []

    def build(*, failures: int = 3, cooldown: float = 1.0, url: str = redis_url) -> GatewayHealth:
        client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        clients.append(client)
        return GatewayHealth(
            client, prefix="sms_ext:test", breaker_failures=failures, breaker_cooldown=cooldown
        )

    yield build
    for client in clients:
        client.close()


def race(count: int, call: Callable[[int], object]) -> list[object]:
    """Run ``call(i)`` on ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def start(index: int) -> object:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(start, range(count)))


# -- pause --------------------------------------------------------------------------------------


def test_429_pauses_the_gateway_for_every_worker_until_retry_after(workers) -> None:
    first, second = workers(), workers()
    gw, other = gateway(1), gateway(2)
    assert second.refusal(gw) is None
    first.record(gw, too_many(1))
    time.sleep(ALL_CLEAR_SECONDS)  # how long the second worker may trust its "all clear"
    refusal = second.refusal(gw)
    assert refusal is not None
    assert refusal.startswith("Paused until ") and refusal.endswith(
        " UTC: the gateway answered 429 with Retry-After."
    )
    assert second.refusal(other) is None  # per gateway
    view = second.views([1, 2])
    assert view[2].paused_until is None
    until = view[1].paused_until
    assert until is not None and until.tzinfo is not None
    assert timedelta(0) < until - datetime.now(UTC) <= timedelta(seconds=1.1)
    assert describe(view[1]) == [f"Paused until {until:%H:%M:%S} UTC"]
    # A shorter pause does not cut the longer one short.
    first.record(gw, too_many(0.2))
    assert second.views([1])[1].paused_until == until
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert second.refusal(gw) is None and first.refusal(gw) is None
    assert second.views([1])[1].paused_until is None


def test_429_without_retry_after_pauses_briefly_and_does_not_count_as_failure(workers) -> None:
    health = workers(failures=1)
    gw = gateway()
    health.record(gw, too_many(None))
    refusal = health.refusal(gw)
    assert refusal is not None and "429 (too many requests)" in refusal
    view = health.views([1])[1]
    assert view.failures == 0 and view.skipped_until is None
    time.sleep(1.05)
    assert health.refusal(gw) is None


# -- breaker ------------------------------------------------------------------------------------


def test_breaker_opens_for_everyone_then_lets_exactly_one_probe_through(workers) -> None:
    first, second = workers(failures=3, cooldown=1.0), workers(failures=3, cooldown=1.0)
    gw = gateway()
    first.record(gw, TIMEOUT)
    second.record(gw, SERVER_ERROR)
    assert first.refusal(gw) is None and second.refusal(gw) is None
    assert first.views([1])[1].failures == 2
    first.record(gw, TIMEOUT)
    refusals = [first.refusal(gw), second.refusal(gw)]
    for refusal in refusals:
        assert refusal is not None and refusal.startswith("Skipped until ")
        assert refusal.endswith(" UTC: 3 failures in a row.")
    view = second.views([1])[1]
    assert view.failures == 3 and not view.probing
    assert view.skipped_until is not None
    assert timedelta(0) < view.skipped_until - datetime.now(UTC) <= timedelta(seconds=1.1)
    assert describe(view) == [
        f"Skipped until {view.skipped_until:%H:%M:%S} UTC (3 failures in a row)"
    ]

    time.sleep(1.05)  # cool-down over: 40 threads of two workers race; one gets the probe
    answers = race(40, lambda i: (first if i % 2 else second).refusal(gw))
    assert answers.count(None) == 1
    waiting = {answer for answer in answers if answer is not None}
    assert waiting == {
        "Skipped: 3 failures in a row; another message is testing whether the gateway works again."
    }
    assert second.views([1])[1].probing

    # The probe fails: open again, for everyone, for another cool-down.
    first.record(gw, TIMEOUT)
    assert (first.refusal(gw) or "").startswith("Skipped until ")
    assert (second.refusal(gw) or "").endswith("4 failures in a row.")
    time.sleep(1.05)
    answers = race(20, lambda i: (first if i % 2 else second).refusal(gw))
    assert answers.count(None) == 1
    # The probe succeeds: closed for everyone.
    second.record(gw, OK)
    assert race(20, lambda i: (first if i % 2 else second).refusal(gw)) == [None] * 20
    assert first.views([1])[1] == HealthView()


def test_a_success_or_a_refused_number_resets_the_streak(workers) -> None:
    health = workers(failures=3)
    gw = gateway()
    for result in (OK, REFUSED):
        health.record(gw, TIMEOUT)
        health.record(gw, TIMEOUT)
        health.record(gw, result)
        health.record(gw, TIMEOUT)
        assert health.refusal(gw) is None
        assert health.views([1])[1].failures == 1
        health.record(gw, OK)
    # A failure that never reached the gateway says nothing about it.
    health.record(gw, TIMEOUT)
    health.record(gw, SendResult(ok=False, retryable=False, error="Lua error"))
    assert health.views([1])[1].failures == 1


def test_a_probe_whose_worker_died_is_replaced_after_its_claim(workers) -> None:
    first, second = workers(failures=1, cooldown=1.0), workers(failures=1, cooldown=1.0)
    gw = gateway()  # timeout 0.5 s: a probe claim lasts 1 s
    assert claim_seconds(gw) == MIN_CLAIM == 1.0
    first.record(gw, TIMEOUT)
    time.sleep(1.05)
    assert first.refusal(gw) is None  # the probe; its worker then dies without recording
    assert second.refusal(gw) is not None
    time.sleep(1.05)
    assert second.refusal(gw) is None  # the claim expired: a new probe
    assert first.refusal(gw) is not None


# -- max_in_flight --------------------------------------------------------------------------------


def send(session: requests.Session, sim: GatewaySimulator, number: int) -> None:
    answer = session.post(f"{sim.url}/custom/limited", json={"to": f"+2783{number:07d}"}, timeout=5)
    assert answer.status_code == 200


def test_max_in_flight_holds_across_two_workers(workers, simulator: GatewaySimulator) -> None:
    simulator.set_latency("custom", 0.1)
    health = [workers(), workers()]
    gw = gateway(max_in_flight=3)
    held, most, lock = 0, 0, threading.Lock()

    def client(index: int) -> int:
        nonlocal held, most
        mine = health[index % 2]
        sent = 0
        with requests.Session() as session:
            for round_ in range(4):
                permit = mine.acquire(gw, timeout=10)
                assert permit is not None and permit.token is not None
                with lock:
                    held += 1
                    most = max(most, held)
                try:
                    send(session, simulator, index * 10 + round_)
                    sent += 1
                finally:
                    with lock:
                        held -= 1
                    mine.release(permit)
        return sent

    started = time.monotonic()
    assert sum(race(20, client)) == 80
    elapsed = time.monotonic() - started
    assert simulator.max_in_flight_for("custom") == 3
    assert most <= 3
    # 80 requests of 0.1 s, 3 at a time: about 2.7 s if slots are handed on promptly.
    assert elapsed < 80 * 0.1 / 3 * 2.5, elapsed
    assert health[0].redis.zcard("sms_ext:test:gateway:1:in-flight") == 0


def test_a_dead_workers_slot_frees_itself(workers, redis_url: str) -> None:
    gw = gateway(max_in_flight=1)  # timeout 0.5 s: a slot outlives its holder by 1 s
    survivor = workers()
    # A real worker process takes the only slot and is SIGKILLed holding it.
    script = (
        "import os, sys, time\n"
        "from redis import Redis\n"
        "from sms_ext.gateways.health import GatewayHealth\n"
        "from sms_ext.models import Gateway\n"
        "h = GatewayHealth(Redis.from_url(sys.argv[1]), prefix='sms_ext:test',"
        " breaker_failures=3, breaker_cooldown=1)\n"
        "g = Gateway(id=1, settings={'timeout': 0.5}, max_in_flight=1)\n"
        "assert h.acquire(g, timeout=5).token\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, redis_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "held"
        killed_at = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(5)
        assert survivor.acquire(gw, timeout=0.2) is None
        permit = survivor.acquire(gw, timeout=5)
        waited = time.monotonic() - killed_at
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(5)
    assert permit is not None and permit.token is not None
    assert 0.5 < waited < 2.5, waited
    survivor.release(permit)
    survivor.release(permit)  # idempotent
    assert survivor.acquire(gw, timeout=0) is not None


def test_a_release_in_the_same_worker_hands_the_slot_on_at_once(workers) -> None:
    health = workers()
    gw = gateway(max_in_flight=1)
    permit = health.acquire(gw, timeout=1)
    assert permit is not None
    timer = threading.Timer(0.2, health.release, [permit])
    started = time.monotonic()
    timer.start()
    second = health.acquire(gw, timeout=2)
    waited = time.monotonic() - started
    assert second is not None and 0.15 < waited < 0.5, waited


# -- max_per_second -------------------------------------------------------------------------------


def test_max_per_second_holds_across_two_workers(workers, simulator: GatewaySimulator) -> None:
    health = [workers(), workers()]
    gw = gateway(max_per_second=5)
    stop_at = time.monotonic() + 2.2

    def client(index: int) -> int:
        mine = health[index % 2]
        sent = 0
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                permit = mine.acquire(gw, timeout=max(0.0, stop_at - time.monotonic()))
                if permit is None:
                    break
                try:
                    send(session, simulator, index * 100 + sent)
                    sent += 1
                finally:
                    mine.release(permit)
        return sent

    total = sum(race(10, client))
    assert simulator.max_rate("custom", 1.0) <= 5
    # 2.2 s: the first 5 at once, then 5 more after 1 s (+ margin), then 5 after 2 s.
    assert total >= 10, total
    assert len(simulator.requests_for("custom")) == total


def test_a_request_delayed_on_its_way_does_not_crowd_the_next_second(
    workers, simulator: GatewaySimulator
) -> None:
    """A permit counts from the send to one second after the answer: a request that reaches the
    provider late (a cold connection, a starved thread) still has its second to itself."""
    health = [workers(), workers()]
    gw = gateway(max_per_second=3)
    slow_started = threading.Event()

    def client(index: int) -> int:
        mine = health[index % 2]
        sent = 0
        with requests.Session() as session:
            for _ in range(2):
                if index:
                    slow_started.wait(2)
                permit = mine.acquire(gw, timeout=5)
                assert permit is not None
                if index == 0 and sent == 0:
                    slow_started.set()
                    time.sleep(0.5)  # the permit's request leaves half a second late
                try:
                    send(session, simulator, index * 10 + sent)
                    sent += 1
                finally:
                    mine.release(permit)
        return sent

    assert sum(race(6, client)) == 12
    assert simulator.max_rate("custom", 1.0) <= 3


def test_the_rate_wait_gives_up_early_when_it_cannot_make_it(workers) -> None:
    health = workers()
    gw = gateway(max_per_second=2)
    permits = [health.acquire(gw, timeout=0) for _ in range(2)]
    for permit in permits:
        assert permit is not None and permit.token is not None
        health.release(permit)
    released = time.monotonic()
    assert health.acquire(gw, timeout=0.5) is None  # no slot frees before 1 s after the answers
    assert time.monotonic() - released < 0.3
    permit = health.acquire(gw, timeout=2)
    assert permit is not None
    assert 0.9 < time.monotonic() - released < 1.5


def test_both_limits_together(workers) -> None:
    health = workers()
    gw = gateway(max_per_second=100, max_in_flight=2)
    permits = [health.acquire(gw, timeout=1) for _ in range(2)]
    assert all(p is not None and p.token for p in permits)
    assert health.acquire(gw, timeout=0.1) is None
    health.release(permits[0])  # type: ignore[arg-type]
    assert health.acquire(gw, timeout=0.1) is not None


# -- Redis trouble ------------------------------------------------------------------------------


def test_a_healthy_gateway_costs_a_round_trip_per_fifth_of_a_second(workers, redis: Redis) -> None:
    """The "all clear" is trusted for ALL_CLEAR_SECONDS: 200 requests to a healthy gateway in
    a moment ask Redis once, not twice each; a failure is always counted at once."""
    health = workers()
    gw = gateway(1)

    def scripts_run() -> int:
        return int(redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    before = scripts_run()
    for _ in range(200):
        assert health.refusal(gw) is None
        health.record(gw, OK)
    assert scripts_run() - before <= 2  # one check (maybe two across a 0.2 s boundary)
    health.record(gw, TIMEOUT)
    assert health.views([1])[1].failures == 1


def test_no_limits_means_no_redis_round_trip(workers) -> None:
    dead = workers(url="redis://127.0.0.1:1/0")  # nothing listens there
    started = time.monotonic()
    for _ in range(1000):
        permit = dead.acquire(gateway(), timeout=5)
        assert permit is not None and permit.token is None
        dead.release(permit)
    assert not dead._redis_down  # never asked
    assert time.monotonic() - started < 1.0


def test_redis_down_fails_open_quickly_and_logs_once_per_change(
    workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sms_ext")
    with RedisServer() as server:
        health = workers(url=server.url, failures=1)
        limited = gateway(max_per_second=1, max_in_flight=1)
        health.record(limited, too_many(30))
        assert health.refusal(limited) is not None
        server.stop()
        started = time.monotonic()
        for _ in range(50):
            assert health.refusal(limited) is None
            permit = health.acquire(limited, timeout=5)
            assert permit is not None
            health.record(limited, TIMEOUT)
            health.release(permit)
            assert health.views([1]) == {}
        assert time.monotonic() - started < 1.0
        down = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
        assert len(down) == 1
        server.start()  # same port; empty: the pause is gone with the old server
        time.sleep(REDIS_RETRY + 0.05)
        health.record(limited, too_many(30))
        assert health.refusal(limited) is not None
        back = [r for r in caplog.records if "Redis reachable again" in r.getMessage()]
        assert len(back) == 1


def test_a_frozen_redis_costs_one_socket_timeout_not_one_per_message(workers) -> None:
    with RedisServer() as server:
        health = workers(url=server.url)
        limited = gateway(max_in_flight=5)
        assert health.refusal(limited) is None
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            answers = race(
                20, lambda i: (health.refusal(limited), health.acquire(limited, timeout=5))
            )
            first_wave = time.monotonic() - started
            started = time.monotonic()
            for _ in range(100):
                assert health.refusal(limited) is None
                assert health.acquire(limited, timeout=5) is not None
            later = time.monotonic() - started
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    assert all(refusal is None and permit is not None for refusal, permit in answers)
    assert first_wave < 1.5, first_wave  # one 0.5 s socket timeout (maybe two), not 20
    assert later < 0.5, later


# -- configuration and the per-app instance -----------------------------------------------------


def test_per_app_instance_follows_the_config(database_urls: dict[str, str], redis_url: str) -> None:
    app = make_app(
        database_urls["sqlite"], redis_url, SMS_BREAKER_FAILURES=5, SMS_BREAKER_COOLDOWN="12.5"
    )
    state = app.extensions["sms"]
    health = state.gateway_health
    assert health is state.gateway_health
    assert (health.breaker_failures, health.breaker_cooldown) == (5, 12.5)
    assert health.key(7, "paused") == "sms_ext:sms:gateway:7:paused"
    defaults = make_app(database_urls["sqlite"], redis_url).extensions["sms"].settings
    assert (defaults.breaker_failures, defaults.breaker_cooldown) == (3, 30)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("SMS_BREAKER_FAILURES", 0, "SMS_BREAKER_FAILURES must be between 1 and 100"),
        ("SMS_BREAKER_FAILURES", "many", "SMS_BREAKER_FAILURES must be a number"),
        ("SMS_BREAKER_COOLDOWN", 0.5, "SMS_BREAKER_COOLDOWN must be between 1 and 3600"),
    ],
)
def test_bad_breaker_config_is_refused(
    database_urls: dict[str, str], redis_url: str, key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(database_urls["sqlite"], redis_url, **{key: value})
