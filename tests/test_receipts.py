"""Delivery receipts against a real database: the order of meaning, races, pending receipts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from sms_ext import SMS
from sms_ext.messages import receipts
from sms_ext.messages.receipts import Outcome, Receipt
from sms_ext.messages.sweeper import sweep
from sms_ext.models import Message, PendingReceipt, Status, utcnow
from tests.conftest import drain, make_app
from tests.helpers import custom_gateway, reload
from tests.simulator import GatewaySimulator

TO = "+27831234567"


def sent_message(app: Flask, sms: SMS, simulator: GatewaySimulator, provider_id: str) -> Message:
    """A message a real worker sent through a custom gateway that answered ``provider_id``."""
    simulator.set_custom_response(body=f'{{"status": "ok", "messageId": "{provider_id}"}}')
    message = sms.send(TO, "Hello")
    drain(app)
    message = reload(app, message)
    assert (message.status, message.provider_message_id) == (Status.SENT, provider_id)
    return message


def apply(app: Flask, receipt: Receipt) -> Outcome:
    session = app.extensions["sms"].session
    outcome = receipts.apply(session, receipt)
    session.commit()
    return outcome


def test_delivered_receipt_records_time_and_clears_nothing_else(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent_message(app_ctx, sms, simulator, "p-1")
    before = utcnow()

    outcome = apply(app_ctx, Receipt(gateway.id, Status.DELIVERED, provider_id="p-1"))

    message = reload(app_ctx, message)
    assert outcome == Outcome.APPLIED
    assert message.status == Status.DELIVERED
    assert message.delivered_at is not None and message.delivered_at >= before
    assert message.receipt_at is not None and message.failed_at is None
    assert message.sent_at is not None and message.provider_message_id == "p-1"


@pytest.mark.parametrize(
    ("first", "second", "final"),
    [
        (Status.DELIVERED, Status.UNDELIVERED, Status.DELIVERED),
        (Status.UNDELIVERED, Status.DELIVERED, Status.DELIVERED),
        (Status.FAILED, Status.UNDELIVERED, Status.FAILED),
        (Status.UNDELIVERED, Status.FAILED, Status.UNDELIVERED),
        (Status.DELIVERED, Status.DELIVERED, Status.DELIVERED),
        (Status.DELIVERED, Status.SENT, Status.DELIVERED),
    ],
)
def test_receipts_are_sorted_by_meaning_not_arrival(
    app_ctx: Flask,
    sms: SMS,
    simulator: GatewaySimulator,
    first: Status,
    second: Status,
    final: Status,
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent_message(app_ctx, sms, simulator, "p-2")
    code = "30003" if first != Status.DELIVERED else None

    assert apply(app_ctx, Receipt(gateway.id, first, "p-2", error_code=code)) == Outcome.APPLIED
    second_outcome = apply(app_ctx, Receipt(gateway.id, second, "p-2", error_code="99"))

    message = reload(app_ctx, message)
    assert message.status == final
    if final == first:  # the second one changed nothing, not even the error code
        assert second_outcome in (Outcome.KEPT, Outcome.IGNORED)
        assert message.error_code == code
    else:
        assert second_outcome == Outcome.APPLIED and message.error_code == "99"


def test_intermediate_reports_change_nothing(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent_message(app_ctx, sms, simulator, "p-3")
    for status in ("queued", "sending", "sent", "accepted"):
        assert apply(app_ctx, Receipt(gateway.id, status, "p-3")) == Outcome.IGNORED
    message = reload(app_ctx, message)
    assert (message.status, message.receipt_at) == (Status.SENT, None)


def test_a_receipt_never_touches_a_message_we_never_sent(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    simulator.set_custom_response(400, '{"status": "refused"}')
    message = sms.send(TO, "Hello")
    drain(app_ctx)
    assert reload(app_ctx, message).status == Status.FAILED

    outcome = apply(app_ctx, Receipt(gateway.id, Status.DELIVERED, message_id=message.id))

    assert outcome != Outcome.APPLIED
    sweep(app_ctx.extensions["sms"])  # nor later, from the pending list
    assert reload(app_ctx, message).status == Status.FAILED


def test_a_receipt_of_another_gateway_does_not_match(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    other = custom_gateway(app_ctx, simulator, "other")
    message = sent_message(app_ctx, sms, simulator, "p-4")
    assert message.gateway_id == gateway.id

    assert apply(app_ctx, Receipt(other.id, Status.DELIVERED, "p-4")) == Outcome.PENDING
    assert reload(app_ctx, message).status == Status.SENT


def test_unknown_ids_wait_a_day_and_are_then_dropped(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    session = app_ctx.extensions["sms"].session
    assert apply(app_ctx, Receipt(gateway.id, Status.DELIVERED, "nobody")) == Outcome.PENDING
    assert apply(app_ctx, Receipt(gateway.id, Status.FAILED, "old")) == Outcome.PENDING
    session.execute(
        update(PendingReceipt)
        .where(PendingReceipt.provider_message_id == "old")
        .values(received_at=utcnow() - timedelta(days=1, minutes=1))
    )
    session.commit()

    sweep(app_ctx.extensions["sms"])

    left = session.scalars(select(PendingReceipt.provider_message_id)).all()
    assert left == ["nobody"]


def test_receipt_before_the_send_is_recorded_is_applied_by_the_worker(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    """The race: the gateway's receipt beats the worker's record of the send."""
    gateway = custom_gateway(app_ctx, simulator, "gw")
    simulator.set_custom_response(body='{"status": "ok", "messageId": "fast-1"}')
    message = sms.send(TO, "Hello")
    # The receipt arrives while the message is still queued/sending: nothing to match yet.
    outcome = apply(app_ctx, Receipt(gateway.id, Status.UNDELIVERED, "fast-1", error_code="30005"))
    assert outcome == Outcome.PENDING
    assert reload(app_ctx, message).status == Status.QUEUED

    drain(app_ctx)  # the worker records provider id fast-1 and applies the waiting receipt

    message = reload(app_ctx, message)
    session = app_ctx.extensions["sms"].session
    assert (message.status, message.error_code) == (Status.UNDELIVERED, "30005")
    assert message.sent_at is not None and message.failed_at is not None
    assert session.scalar(select(func.count()).select_from(PendingReceipt)) == 0


def test_pending_receipt_by_our_own_id_waits_for_the_send(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sms.send(TO, "Hello")
    receipt = Receipt(gateway.id, Status.DELIVERED, message_id=message.id)
    assert apply(app_ctx, receipt) == Outcome.PENDING
    drain(app_ctx)
    assert reload(app_ctx, message).status == Status.DELIVERED


def test_sweeper_applies_a_receipt_stored_as_its_send_was_recorded(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    """A receipt stored just after the worker looked for pending ones is not lost."""
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent_message(app_ctx, sms, simulator, "late-1")
    session = app_ctx.extensions["sms"].session
    session.add(
        PendingReceipt(
            gateway_id=gateway.id,
            provider_message_id="late-1",
            status=Status.DELIVERED,
            occurred_at=utcnow(),
        )
    )
    session.commit()

    outcome = sweep(app_ctx.extensions["sms"])

    assert outcome["receipts_applied"] == 1
    assert reload(app_ctx, message).status == Status.DELIVERED
    assert session.scalar(select(func.count()).select_from(PendingReceipt)) == 0


def test_racing_receipts_in_many_threads_end_delivered(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator, service_urls: tuple[str, str]
) -> None:
    """Receipts of every kind applied at once from separate connections (web processes do
    this): whatever the interleaving, delivered wins and nothing regresses."""
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent_message(app_ctx, sms, simulator, "race-1")
    others = [make_app(*service_urls) for _ in range(4)]
    order = [Status.UNDELIVERED, Status.DELIVERED, Status.FAILED, Status.UNDELIVERED] * 5
    errors: list[BaseException] = []
    start = threading.Barrier(len(others))

    def hammer(app: Flask, offset: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for status in order[offset:] + order[:offset]:
                    apply(app, Receipt(gateway.id, status, "race-1"))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(a, i)) for i, a in enumerate(others)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for app in others:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()

    assert errors == []
    message = reload(app_ctx, message)
    assert message.status == Status.DELIVERED and message.delivered_at is not None
