"""Faults the outbox must survive: Redis outages, dead workers, duplicated jobs."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from sms_ext import SMS, Message, MessageAttempt, Status
from sms_ext.messages.outbox import enqueue, new_job_id
from sms_ext.messages.sweeper import sweep
from sms_ext.models import utcnow
from tests.conftest import _empty_tables, drain, make_app
from tests.helpers import age, custom_gateway, reload, stop_worker, worker_process
from tests.redis_server import RedisServer
from tests.simulator import GatewaySimulator

TO = "+27831234567"


def test_message_survives_redis_outage(
    backend: str, database_urls: dict[str, str], simulator: GatewaySimulator
) -> None:
    with RedisServer() as redis_server:
        sms = SMS()
        app = make_app(database_urls[backend], redis_server.url, sms=sms)
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            custom_gateway(app, simulator, "gw")
            redis_server.stop()
            message = sms.send(TO, "while Redis is down")
            assert message.status == Status.QUEUED  # committed; the enqueue failed quietly
            redis_server.start()  # a fresh, empty Redis: the job is gone for good
            drain(app)
            assert reload(app, message).status == Status.QUEUED
            age(app)
            outcome = sweep(app.extensions["sms"])
            assert (outcome["lost"], outcome["enqueued"]) == (1, 1)
            drain(app)
            assert reload(app, message).status == Status.SENT
            assert len(simulator.requests_for("custom")) == 1
            app.extensions["sqlalchemy"].engine.dispose()


def test_sweeper_leaves_live_jobs_alone(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "gw")
    sms.send(TO, "waiting in the queue")
    age(app_ctx)
    outcome = sweep(app_ctx.extensions["sms"])
    assert (outcome["lost"], outcome["enqueued"]) == (0, 0)
    assert app_ctx.extensions["sms"].queue.count == 1


def test_stale_send_is_taken_back(app_ctx: Flask, simulator: GatewaySimulator, sms: SMS) -> None:
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    message = sms.send(TO, "worker died")
    state.queue.empty()
    # A worker claimed it, then died: its lease ran out.
    state.session.execute(
        update(Message).values(
            status=Status.SENDING, claim_token="dead", claimed_until=utcnow() - timedelta(seconds=1)
        )
    )
    state.session.commit()
    age(app_ctx)
    outcome = sweep(state)
    assert (outcome["recovered"], outcome["enqueued"]) == (1, 1)
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert message.status == Status.SENT
    assert message.claim_token is None


def test_duplicate_jobs_in_two_workers_send_once(
    app_ctx: Flask, simulator: GatewaySimulator, service_urls: tuple[str, str], sms: SMS
) -> None:
    simulator.latency = 0.02
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    ids = sms.send_bulk([(TO, f"dup {i}") for i in range(20)], kind="personal")
    # The same ids enqueued five more times, as a confused sweeper or a client retry might.
    for _ in range(5):
        assert enqueue(state.queue, new_job_id(), ids)
    workers = [worker_process(*service_urls, "--burst") for _ in range(2)]
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output.decode()[-2000:]
    references = Counter(r.json["ref"] for r in simulator.requests_for("custom"))
    assert references == Counter({str(i): 1 for i in ids})
    per_message = Counter(state.session.scalars(select(MessageAttempt.message_id)).all())
    assert per_message == Counter({i: 1 for i in ids})
    statuses = set(state.session.scalars(select(Message.status)))
    assert statuses == {Status.SENT}


def test_worker_process_sweeps_on_start(
    app_ctx: Flask, simulator: GatewaySimulator, service_urls: tuple[str, str], sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    message = sms.send(TO, "lost job")
    state.queue.empty()
    age(app_ctx)
    worker = worker_process(*service_urls, "--burst")
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output.decode()[-2000:]
    # The sweep ran before the burst, so its job was done when the worker exited.
    assert reload(app_ctx, message).status == Status.SENT


def test_worker_killed_mid_send_is_recovered(
    app_ctx: Flask, simulator: GatewaySimulator, service_urls: tuple[str, str], sms: SMS
) -> None:
    simulator.latency = 2.0
    custom_gateway(app_ctx, simulator, "slow", timeout=10)
    state = app_ctx.extensions["sms"]
    message = sms.send(TO, "the worker will die")
    worker = worker_process(*service_urls)
    try:
        deadline = time.monotonic() + 20
        while reload(app_ctx, message).status != Status.SENDING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reload(app_ctx, message).status == Status.SENDING
    finally:
        stop_worker(worker, signal.SIGKILL)  # mid-request: no chance to record anything
    assert reload(app_ctx, message).status == Status.SENDING
    # Let the lease run out (SMS_LEASE_SECONDS) without waiting for it.
    state.session.execute(update(Message).values(claimed_until=utcnow() - timedelta(seconds=1)))
    state.session.commit()
    simulator.latency = 0
    age(app_ctx)
    restarted = worker_process(*service_urls, "--burst")
    output, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, output.decode()[-2000:]
    message = reload(app_ctx, message)
    assert message.status == Status.SENT
    assert message.last_error is None
    # The killed try left no attempt row; the provider may have seen it (at-least-once).
    assert len(message.attempt_log) == 1
    assert len(simulator.requests_for("custom")) in (1, 2)
