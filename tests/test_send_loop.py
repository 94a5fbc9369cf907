"""The send loop at a real gateway's latency: many requests in flight, codes first, rows
settled as answers arrive, claims that only their holder may settle."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy import select, update

from sms_ext import SMS, Kind, Message, MessageAttempt, Status
from sms_ext.messages.delivery import claim, settle
from sms_ext.messages.engine import deliver
from sms_ext.messages.routing import Round
from sms_ext.messages.sweeper import sweep
from sms_ext.models import utcnow
from tests.conftest import drain, make_app
from tests.helpers import age, custom_gateway, stop_worker, worker_process
from tests.simulator import GatewaySimulator

TO = "+27831234567"


def by_reference(sim: GatewaySimulator, *, accepted_only: bool = True) -> dict[str, int]:
    """How many times each message (by our reference) reached the custom gateway; a request
    cut off before its body arrived (its worker was killed) carried no message."""
    counts = sim.arrivals_by_recipient(
        "custom", recipient=lambda r: [r.json["ref"]] if r.json else [], accepted_only=accepted_only
    )
    return dict(counts)


def set_settings(app: Flask, **changes: object) -> None:
    state = app.extensions["sms"]
    state.settings = replace(state.settings, **changes)


def statuses(app: Flask) -> dict[str, int]:
    session = app.extensions["sms"].session
    session.expire_all()
    rows = session.execute(select(Message.status)).scalars().all()
    return {status: rows.count(status) for status in set(rows)}


def test_a_worker_keeps_many_requests_in_flight(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    set_settings(app_ctx, worker_concurrency=8)
    simulator.latency = 0.4
    custom_gateway(app_ctx, simulator, "gw")
    ids = sms.send_bulk([(TO, f"bulk {i}") for i in range(40)], kind=Kind.CAMPAIGN)
    drain(app_ctx)
    assert statuses(app_ctx) == {Status.SENT: 40}
    assert simulator.max_in_flight_for("custom") == 8
    assert by_reference(simulator) == {str(i): 1 for i in ids}


def test_a_burst_of_codes_costs_one_job(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "gw")
    ids = [sms.send(TO, f"code {i}", kind=Kind.OTP).id for i in range(50)]
    state = app_ctx.extensions["sms"]
    assert (state.urgent_queue.count, state.queue.count) == (1, 0)
    drain(app_ctx)
    assert statuses(app_ctx) == {Status.SENT: 50}
    assert by_reference(simulator) == {str(i): 1 for i in ids}


def test_a_code_overtakes_a_running_batch(
    app_ctx: Flask, service_urls: tuple[str, str], simulator: GatewaySimulator, sms: SMS
) -> None:
    """A worker busy with a campaign picks up a guest's code between two answers."""
    simulator.latency = 0.3
    custom_gateway(app_ctx, simulator, "gw")
    sms.send_bulk([(TO, f"bulk {i}") for i in range(40)], kind=Kind.CAMPAIGN)
    worker = worker_process(*service_urls, SMS_WORKER_CONCURRENCY="2")
    try:
        simulator.wait_for_requests(4, timeout=30)  # the batch is going out: about 6 s
        sent_at = time.time()
        code_id = str(sms.send(TO, "your code 123456", kind=Kind.OTP).id)
        deadline = time.monotonic() + 10
        arrived = None
        while arrived is None and time.monotonic() < deadline:
            arrived = next(
                (r for r in simulator.arrivals if r.json and r.json.get("ref") == code_id), None
            )
            time.sleep(0.02)
    finally:
        stop_worker(worker, signal.SIGKILL)  # the rest of the batch is not this test's
    assert arrived is not None
    assert arrived.received_at - sent_at < 1.0
    earlier = [r for r in simulator.arrivals if r.received_at < arrived.received_at]
    assert len(earlier) < 20


def test_a_bad_header_value_fails_its_message_alone(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    """Text that cannot go into an HTTP header (not Latin-1) is a permanent failure of that
    message; the rest of the batch is sent."""
    custom_gateway(app_ctx, simulator, "gw", headers=[{"name": "X-Text", "value": "{message}"}])
    ids = sms.send_bulk([(TO, "plain"), (TO, "Привет"), (TO, "plain too")], kind=Kind.PERSONAL)
    drain(app_ctx)
    session = app_ctx.extensions["sms"].session
    session.expire_all()
    rows = {m.id: m for m in session.scalars(select(Message))}
    assert [rows[i].status for i in ids] == [Status.SENT, Status.FAILED, Status.SENT]
    poisoned = rows[ids[1]]
    assert poisoned.attempts == 1
    assert "UnicodeEncodeError" in (poisoned.last_error or "")
    (attempt,) = session.scalars(
        select(MessageAttempt).where(MessageAttempt.message_id == poisoned.id)
    )
    assert not attempt.retryable
    assert by_reference(simulator) == {str(ids[0]): 1, str(ids[2]): 1}


def test_only_the_claim_holder_settles(app_ctx: Flask, simulator: GatewaySimulator, sms: SMS):
    """A worker whose rows were taken over must not overwrite what the new holder records."""
    message = sms.send(TO, "contested")
    session = app_ctx.extensions["sms"].session
    first = claim(session, lease_seconds=60, ids=[message.id])
    assert [m.id for m in first.messages] == [message.id]
    session.execute(
        update(Message).where(Message.id == message.id).values(claim_token="someone-else")
    )
    session.commit()
    settle(app_ctx.extensions["sms"], first.token, [Round(first.messages[0])], utcnow())
    session.expire_all()
    row = session.get(Message, message.id)
    assert (row.status, row.claim_token, row.attempts) == (Status.SENDING, "someone-else", 0)


@pytest.mark.faults
def test_a_batch_running_past_its_lease_is_sent_once(
    app: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    """The lease is renewed while the batch runs, so sweeps meanwhile take nothing back."""
    simulator.latency = 0.5
    with app.app_context():
        set_settings(app, worker_concurrency=1, lease_seconds=3)
        custom_gateway(app, simulator, "gw")
        ids = sms.send_bulk([(TO, f"slow {i}") for i in range(16)], kind=Kind.CAMPAIGN)

    def work() -> None:  # the job's function itself: RQ's worker wants the main thread
        with app.app_context():
            deliver(app.extensions["sms"], ids)

    worker = threading.Thread(target=work)
    worker.start()
    taken_back = 0
    with app.app_context():
        while worker.is_alive():  # about 8 s: well past the 3 s lease
            taken_back += sweep(app.extensions["sms"])["recovered"]
            time.sleep(0.5)
        drain(app)  # whatever a sweep re-enqueued must find nothing to send
        assert statuses(app) == {Status.SENT: 16}
    assert taken_back == 0
    assert by_reference(simulator, accepted_only=False) == {str(i): 1 for i in ids}


@pytest.mark.faults
def test_a_worker_killed_mid_batch_resends_nothing_it_recorded(
    app_ctx: Flask, service_urls: tuple[str, str], simulator: GatewaySimulator, sms: SMS
) -> None:
    """Rows are settled as answers arrive (in groups, every 0.2 s): after a SIGKILL only what
    was in flight or answered in the last moment is unknowable, and only that may reach the
    gateway twice."""
    simulator.latency = 0.3
    custom_gateway(app_ctx, simulator, "gw")
    ids = sms.send_bulk([(TO, f"kill {i}") for i in range(60)], kind=Kind.CAMPAIGN)
    worker = worker_process(*service_urls, SMS_WORKER_CONCURRENCY="4")
    try:
        simulator.wait_for_requests(12, timeout=30)
    finally:
        stop_worker(worker, signal.SIGKILL)
    session = app_ctx.extensions["sms"].session
    session.expire_all()
    recorded = set(session.scalars(select(Message.id).where(Message.status == Status.SENT)))
    assert recorded
    simulator.wait_idle(timeout=5)
    age(app_ctx, 600)  # past the lease of the killed worker's rows
    sweep(app_ctx.extensions["sms"])
    drain(app_ctx)
    assert statuses(app_ctx) == {Status.SENT: 60}
    counts = by_reference(simulator, accepted_only=False)
    assert set(counts) == {str(i) for i in ids}
    twice = {ref for ref, n in counts.items() if n > 1}
    assert all(counts[str(i)] == 1 for i in recorded)  # recorded before the kill: once
    # At most what was in flight (SMS_WORKER_CONCURRENCY) plus what had answered within the
    # last 0.2 s (SETTLE_SECONDS) and was not yet recorded: at 0.3 s latency, one more round.
    assert len(twice) <= 2 * 4


@pytest.mark.faults
def test_gateway_limits_hold_across_two_workers(
    app_ctx: Flask, service_urls: tuple[str, str], simulator: GatewaySimulator, sms: SMS
) -> None:
    """max_in_flight and max_per_second are the gateway's, not each worker's."""
    simulator.latency = 0.2
    custom_gateway(app_ctx, simulator, "gw", max_in_flight=3, max_per_second=8)
    ids = sms.send_bulk([(TO, f"limited {i}") for i in range(24)], kind=Kind.CAMPAIGN)
    workers = [worker_process(*service_urls, SMS_BATCH_SIZE="12") for _ in range(2)]
    try:
        deadline = time.monotonic() + 40
        while statuses(app_ctx).get(Status.SENT, 0) < 24 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        for worker in workers:
            stop_worker(worker)
    assert statuses(app_ctx) == {Status.SENT: 24}
    assert simulator.max_in_flight_for("custom") == 3
    assert simulator.max_rate("custom", 1.0) <= 8
    assert by_reference(simulator) == {str(i): 1 for i in ids}


def test_a_429_pauses_the_gateway_for_every_worker(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS, service_urls: tuple[str, str]
) -> None:
    """One 429 with Retry-After: the next messages, in another worker too, go to the backup
    without asking the paused gateway again."""
    custom_gateway(app_ctx, simulator, "primary")
    custom_gateway(app_ctx, simulator, "backup")
    simulator.fail_next("custom", "429", retry_after=30)
    sms.send(TO, "meets the 429")
    drain(app_ctx)
    other_sms = SMS()  # a second worker: its own app, process state and gateway health
    other = make_app(*service_urls, sms=other_sms)
    with other.app_context():
        other_sms.send_bulk([(TO, f"after {i}") for i in range(3)], kind=Kind.PERSONAL)
        drain(other)
        other.extensions["sqlalchemy"].engine.dispose()
    paths = [r.path for r in simulator.requests_for("custom")]
    assert paths.count("/custom/primary") == 1  # the 429, and nothing after it
    assert paths.count("/custom/backup") == 4
    assert statuses(app_ctx) == {Status.SENT: 4}
