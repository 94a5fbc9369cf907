"""The send pipeline end to end: sms.send -> Redis -> real RQ worker -> simulator -> database."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select

from sms_ext import SMS, Kind, Message, MessageAttempt, MessageError, PhoneNumberError, Status
from sms_ext.models import utcnow
from tests.conftest import drain, make_app
from tests.helpers import add_gateway, age, custom_gateway, reload, retry_now
from tests.simulator import GatewaySimulator

TO = "+27831234567"


def attempts(app: Flask, message: Message) -> list[MessageAttempt]:
    session = app.extensions["sms"].session
    query = select(MessageAttempt).where(MessageAttempt.message_id == message.id)
    return list(session.scalars(query.order_by(MessageAttempt.id)))


def test_send_goes_through_primary(app_ctx: Flask, simulator: GatewaySimulator, sms: SMS) -> None:
    primary = custom_gateway(app_ctx, simulator, "primary")
    custom_gateway(app_ctx, simulator, "backup")
    message = sms.send(TO, "Hello & welcome", kind=Kind.PERSONAL, customer="guest-7")
    assert message.status == Status.QUEUED
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.gateway_id, message.attempts) == (Status.SENT, primary.id, 1)
    assert message.provider_message_id and message.sent_at is not None
    (request,) = simulator.requests_for("custom")
    assert request.path == "/custom/primary"
    assert request.json == {"to": TO, "text": "Hello & welcome", "ref": str(message.id)}
    (attempt,) = attempts(app_ctx, message)
    assert (attempt.ok, attempt.http_status, attempt.gateway_name) == (True, 200, "primary")
    assert attempt.request_summary.startswith("POST http://127.0.0.1:")
    assert '"status": "ok"' in attempt.response_excerpt


@pytest.mark.parametrize("fault", ["500", "timeout", "429", "garbage", "reset"])
def test_fallback_to_second_gateway(
    app_ctx: Flask, simulator: GatewaySimulator, fault: str, sms: SMS
) -> None:
    simulator.timeout_seconds = 1.0
    custom_gateway(app_ctx, simulator, "primary", timeout=0.3)
    backup = custom_gateway(app_ctx, simulator, "backup")
    simulator.fail_next("custom", fault, retry_after=30 if fault == "429" else None)
    message = sms.send(TO, "code 123456")
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.gateway_id) == (Status.SENT, backup.id)
    first, second = attempts(app_ctx, message)
    assert (first.gateway_name, first.ok, first.retryable) == ("primary", False, True)
    assert first.error
    assert (second.gateway_name, second.ok) == ("backup", True)
    assert [r.path for r in simulator.requests_for("custom")] == [
        "/custom/primary",
        "/custom/backup",
    ]


def test_a_failing_gateway_is_skipped_by_every_worker_after_three_failures(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    """The breaker lives in Redis, not in one batch: after three failures in a row the
    gateway costs nobody a request until its cool-down ends."""
    custom_gateway(app_ctx, simulator, "flaky", url="http://127.0.0.1:9/refused")
    backup = custom_gateway(app_ctx, simulator, "backup")
    for i in range(3):  # three jobs, one message each: three failures in a row
        sms.send(TO, f"first {i}")
        drain(app_ctx)
    ids = sms.send_bulk([(TO, f"n{i}") for i in range(6)], kind=Kind.PERSONAL)
    drain(app_ctx)
    session = app_ctx.extensions["sms"].session
    rows = session.scalars(select(Message)).all()
    assert {(m.status, m.gateway_id) for m in rows} == {(Status.SENT, backup.id)}
    flaky = session.scalars(
        select(MessageAttempt).where(MessageAttempt.gateway_name == "flaky")
    ).all()
    tried = [a for a in flaky if a.message_id not in ids]
    skipped = [a for a in flaky if a.message_id in ids]
    assert len(tried) == 3 and all("connection failed" in a.error for a in tried)
    assert len(skipped) == 6
    assert all(a.error.startswith("Skipped until") and a.http_status is None for a in skipped)
    assert len(simulator.requests_for("custom")) == 9  # the backup's: one per message


def test_all_gateways_fail_then_retry_succeeds(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "only")
    simulator.fail_next("custom", "500")
    message = sms.send(TO, "try again")
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.QUEUED, 1)
    assert "HTTP 500" in message.last_error
    assert message.next_attempt_at > utcnow()
    retry_now(app_ctx, message)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.SENT, 2)
    assert len(simulator.requests_for("custom")) == 2


def test_retries_stop_at_expiry(app_ctx: Flask, simulator: GatewaySimulator, sms: SMS) -> None:
    state = app_ctx.extensions["sms"]
    # Every retry must reach the gateway: a breaker opening after three would skip the rest
    # (its cool-down is Redis time, which age() does not move).
    state.settings = replace(state.settings, breaker_failures=100)
    custom_gateway(app_ctx, simulator, "broken")
    simulator.fail_next("custom", "503", count=100)
    # Backoff (1 s base) retries at about +2, +5, +10 and +19 s; the next would be at +36 s.
    message = sms.send(TO, "never", expires_at=utcnow() + timedelta(seconds=30))
    drain(app_ctx)
    for _ in range(10):
        if reload(app_ctx, message).status == Status.FAILED:
            break
        assert reload(app_ctx, message).status == Status.QUEUED
        retry_now(app_ctx, message)
    message = reload(app_ctx, message)
    assert message.status == Status.FAILED
    assert message.attempts >= 2
    assert "HTTP 503" in message.last_error
    assert "expires" in message.last_error
    assert len(simulator.requests_for("custom")) == message.attempts


def test_a_message_past_its_expiry_is_never_sent(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "gw")
    expires_at = utcnow() + timedelta(minutes=5)
    message = sms.send(TO, "Your code is 123456", kind=Kind.OTP, expires_at=expires_at)
    age(app_ctx, 5 * 60)  # the queue was stuck for as long as the code lives
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.FAILED, 0)
    assert message.last_error == "Expired before it could be sent."
    assert message.failed_at is not None
    assert simulator.requests_for("custom") == []


def test_permanent_errors_fail_at_once(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    simulator.set_custom_response(400, '{"error":"invalid number"}')
    custom_gateway(app_ctx, simulator, "strict")
    message = sms.send(TO, "x")
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.FAILED, 1)
    assert "HTTP 400" in message.last_error
    assert message.failed_at is not None


def test_no_enabled_gateway_fails_with_reason(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "off", enabled=False)
    message = sms.send(TO, "nobody home", location="cafe")
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert message.status == Status.FAILED
    assert message.last_error == "No enabled gateway serves this location."
    assert simulator.requests_for("custom") == []


def test_locations_and_priority_pick_the_chain(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    cafe = custom_gateway(app_ctx, simulator, "cafe-only", locations=["cafe"], priority=1)
    everywhere = custom_gateway(app_ctx, simulator, "everywhere", priority=2)
    at_cafe = sms.send(TO, "a", location="cafe")
    at_bar = sms.send(TO, "b", location="bar")
    drain(app_ctx)
    assert reload(app_ctx, at_cafe).gateway_id == cafe.id
    assert reload(app_ctx, at_bar).gateway_id == everywhere.id


def scheduled_retries(app: Flask) -> int:
    """Delivery jobs RQ's scheduler holds for later, on either queue."""
    state = app.extensions["sms"]
    return sum(
        ScheduledJobRegistry(queue=queue).count for queue in (state.urgent_queue, state.queue)
    )


def test_a_test_send_through_a_failing_gateway_fails_at_once(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    """One try, through its own gateway only (disabled or not), then "failed" with the
    answer: not two days of retries."""
    custom_gateway(app_ctx, simulator, "primary")
    disabled = custom_gateway(app_ctx, simulator, "candidate", enabled=False)
    simulator.fail_next("custom", "500")
    message = sms.send(TO, "test", kind=Kind.TEST, gateway=disabled)
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts, message.gateway_id) == (
        Status.FAILED,
        1,
        disabled.id,
    )
    assert message.last_error == "candidate: HTTP 500"
    assert message.failed_at is not None
    assert scheduled_retries(app_ctx) == 0
    (attempt,) = attempts(app_ctx, message)
    assert (attempt.gateway_name, attempt.http_status, attempt.retryable) == (
        "candidate",
        500,
        True,
    )
    assert [r.path for r in simulator.requests_for("custom")] == ["/custom/candidate"]


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [("429", 61), ("429", None), ("503", 3600), ("500", 5), ("timeout", None)],
)
def test_a_test_send_waits_only_for_a_short_retry_after(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS, fault: str, retry_after: int | None
) -> None:
    simulator.timeout_seconds = 1.0
    gateway = custom_gateway(app_ctx, simulator, "busy", timeout=0.3)
    simulator.fail_next("custom", fault, retry_after=retry_after)
    message = sms.send(TO, "test", kind=Kind.TEST, gateway=gateway)
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.FAILED, 1)
    assert scheduled_retries(app_ctx) == 0
    assert len(simulator.requests_for("custom")) == 1


@pytest.mark.parametrize("fault", ["429", "503"])
def test_a_test_send_tries_once_more_after_a_retry_after_of_a_minute_at_most(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS, fault: str
) -> None:
    backup = custom_gateway(app_ctx, simulator, "backup")
    gateway = custom_gateway(app_ctx, simulator, "busy", enabled=False)
    # A 429 pauses the gateway fleet-wide by Redis' clock, which age() does not move: the
    # test waits that pause out for real, so it is short (but over the 1 s of clock skew a
    # claim allows, or the urgent job's last look would take the retry at once).
    wait = 3 if fault == "429" else 60
    simulator.fail_next("custom", fault, count=2, retry_after=wait)
    message = sms.send(TO, "test", kind=Kind.TEST, gateway=gateway)
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.QUEUED, 1)
    waited = (message.next_attempt_at - message.created_at).total_seconds()
    assert wait < waited <= wait + 2
    assert scheduled_retries(app_ctx) == 1
    time.sleep(wait if fault == "429" else 0)
    retry_now(app_ctx, message)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts) == (Status.FAILED, 2)  # no third try
    assert f"HTTP {fault}" in message.last_error
    assert scheduled_retries(app_ctx) == 0
    paths = [r.path for r in simulator.requests_for("custom")]
    assert paths == ["/custom/busy", "/custom/busy"]  # never the backup
    assert backup.id != message.gateway_id


def test_a_test_send_succeeds_on_its_second_try(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "busy")
    simulator.fail_next("custom", "503", retry_after=30)
    message = sms.send(TO, "test", kind=Kind.TEST, gateway=gateway)
    drain(app_ctx)
    retry_now(app_ctx, message)
    message = reload(app_ctx, message)
    assert (message.status, message.attempts, message.gateway_id) == (Status.SENT, 2, gateway.id)


def test_rolled_back_send_enqueues_nothing(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "gw")
    state = app_ctx.extensions["sms"]
    sms.send(TO, "discarded", commit=False)
    state.session.rollback()
    assert Queue(state.settings.queue, connection=state.redis).count == 0
    kept = sms.send(TO, "kept", commit=False)
    assert Queue(state.settings.queue, connection=state.redis).count == 0
    state.session.commit()
    assert Queue(state.settings.queue, connection=state.redis).count == 1
    drain(app_ctx)
    assert reload(app_ctx, kept).status == Status.SENT
    assert state.session.scalar(select(func.count()).select_from(Message)) == 1


def test_sending_switched_off(
    app: Flask, database_urls: dict[str, str], backend: str, redis_url: str
) -> None:
    quiet_sms = SMS()
    quiet = make_app(database_urls[backend], redis_url, sms=quiet_sms, SMS_SENDING_ENABLED=False)
    with quiet.app_context():
        message = quiet_sms.send(TO, "quiet")
        assert message.status == Status.FAILED
        assert message.last_error == "SMS sending is switched off."
        assert quiet.extensions["sms"].queue.count == 0
        quiet.extensions["sqlalchemy"].engine.dispose()


def test_bulk_send_uses_batches_and_bulk_endpoint(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    add_gateway(
        app_ctx,
        name="portal",
        type="smsportal",
        client_id=simulator.smsportal.client_id,
        api_secret=simulator.smsportal.api_secret,
        base_url=f"{simulator.url}/smsportal/v1",
    )
    recipients = [(f"+2783{i:07d}", f"Promo {i}") for i in range(250)]
    ids = sms.send_bulk(recipients)
    assert len(ids) == 250
    state = app_ctx.extensions["sms"]
    assert state.queue.count == 2  # SMS_BATCH_SIZE 200 -> 2 jobs
    drain(app_ctx)
    statuses = dict(
        state.session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
    )
    assert statuses == {Status.SENT: 250}
    sends = [
        r for r in simulator.requests_for("smsportal") if r.path.lower().endswith("bulkmessages")
    ]
    assert sorted(len(r.json["messages"]) for r in sends) == [50, 100, 100]
    sent = {m["destination"] for r in sends for m in r.json["messages"]}
    assert sent == {to.lstrip("+") for to, _ in recipients}


def test_invalid_recipient_is_refused_before_queueing(app_ctx: Flask, sms: SMS) -> None:
    with pytest.raises(PhoneNumberError):
        sms.send("+27 12", "x")
    with pytest.raises(MessageError, match="empty"):
        sms.send(TO, "   ")
    with pytest.raises(MessageError, match="kind"):
        sms.send(TO, "x", kind="spam")
    assert app_ctx.extensions["sms"].session.scalar(select(func.count()).select_from(Message)) == 0


def test_twilio_gateways_end_to_end(app_ctx: Flask, simulator: GatewaySimulator, sms: SMS) -> None:
    account = simulator.twilio
    common = {
        "type": "twilio",
        "account_sid": account.account_sid,
        "api_key": account.api_key,
        "from_number": "+15005550006",
        "base_url": f"{simulator.url}/twilio",
    }
    add_gateway(app_ctx, name="stale secret", api_secret="revoked-secret-0000", **common)
    twilio = add_gateway(app_ctx, name="twilio", api_secret=account.api_secret, **common)
    message = sms.send(TO, "Your code is 123456")
    drain(app_ctx)
    message = reload(app_ctx, message)
    assert (message.status, message.gateway_id) == (Status.SENT, twilio.id)
    assert message.provider_message_id.startswith("SM") and len(message.provider_message_id) == 34
    refused, accepted = simulator.requests_for("twilio")
    assert (refused.response_status, accepted.response_status) == (401, 201)
    assert accepted.path == f"/twilio/2010-04-01/Accounts/{account.account_sid}/Messages.json"
    assert accepted.basic_auth == (account.api_key, account.api_secret)
    assert accepted.form == {"To": [TO], "From": ["+15005550006"], "Body": ["Your code is 123456"]}
    failed, won = attempts(app_ctx, message)
    assert (failed.http_status, failed.retryable) == (401, False)
    assert "20003" in failed.error
    assert "revoked-secret-0000" not in failed.request_summary + failed.response_excerpt
    assert won.ok
