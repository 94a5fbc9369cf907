"""``sent_by``: who sent a message by hand, through the API, in the log page and its CSV."""

from __future__ import annotations

import csv
import io

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from sms_ext import SMS, Kind, Message, MessageError, Status
from tests.conftest import drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

TO = "+27831234567"


def test_personal_send_records_the_admin_and_the_guest(
    app_ctx: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(app_ctx, simulator, "primary")
    message = sms.send(
        TO, "Your umbrella is at the desk", kind=Kind.PERSONAL, customer="guest:7", sent_by="ops"
    )
    drain(app_ctx)
    session = app_ctx.extensions["sms"].session
    session.expire_all()
    stored = session.get(Message, message.id)
    assert (stored.kind, stored.customer_ref, stored.sent_by) == (Kind.PERSONAL, "guest:7", "ops")
    assert stored.status == Status.SENT
    (request,) = simulator.requests_for("custom")
    assert request.json["text"] == "Your umbrella is at the desk"


def test_send_bulk_puts_the_sender_on_every_row(app_ctx: Flask, sms: SMS) -> None:
    ids = sms.send_bulk([(TO, "one"), ("+27821110000", "two")], sent_by="ops")
    session = app_ctx.extensions["sms"].session
    rows = session.execute(select(Message.sent_by).where(Message.id.in_(ids))).scalars().all()
    assert rows == ["ops", "ops"]
    assert sms.send(TO, "system text").sent_by is None


@pytest.mark.parametrize(
    ("sent_by", "problem"),
    [
        ("x" * 121, "The sender (sent_by) must be at most 120 characters."),
        ("ops\nroot", "The sender (sent_by) must not contain line breaks or control characters."),
        ("ops\x00", "The sender (sent_by) must not contain NUL characters."),
        (7, "The sender (sent_by) must be text."),
    ],
)
def test_bad_sender_is_refused_before_anything_is_written(
    app_ctx: Flask, sms: SMS, sent_by: object, problem: str
) -> None:
    with pytest.raises(MessageError) as refused:
        sms.send(TO, "hello", sent_by=sent_by)  # type: ignore[arg-type]
    assert str(refused.value) == problem
    with pytest.raises(MessageError):
        sms.send_bulk([(TO, "hello")], sent_by=sent_by)  # type: ignore[arg-type]
    session = app_ctx.extensions["sms"].session
    assert session.scalars(select(Message)).all() == []


def test_log_detail_and_export_show_sender_and_customer(
    app: Flask, admin_client: FlaskClient, sms: SMS
) -> None:
    with app.app_context():
        message_id = sms.send(TO, "hello", customer="guest:7", sent_by="=ops").id
    page = admin_client.get(f"/sms/admin/logs/{message_id}").get_data(as_text=True)
    assert "<dt>Sent by</dt><dd>=ops</dd>" in page
    assert "<dt>Customer</dt><dd>guest:7</dd>" in page
    export = admin_client.get("/sms/admin/logs/export.csv").get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(export.lstrip("\ufeff")))
    assert (row["customer"], row["sent_by"]) == ("guest:7", "'=ops")
