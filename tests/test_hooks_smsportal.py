"""SMSPortal's delivery webhook: a real bulk send through the simulator (one eventId for the
whole request), then receipts found by each message's own reference."""

from __future__ import annotations

from flask import Flask

from sms_ext import SMS
from sms_ext.models import Gateway, Message, Status
from tests.conftest import drain
from tests.helpers import add_gateway, custom_gateway, reload
from tests.simulator import GatewaySimulator

PHONES = ["+27831234567", "+27831234568", "+27831234569"]


def smsportal_gateway(app: Flask, sim: GatewaySimulator) -> Gateway:
    account = sim.smsportal
    return add_gateway(
        app,
        name="SMSPortal",
        type="smsportal",
        client_id=account.client_id,
        api_secret=account.api_secret,
        base_url=f"{sim.url}/smsportal/v1",
    )


def bulk_sent(app: Flask, sms: SMS) -> list[Message]:
    ids = sms.send_bulk([(phone, "Hello") for phone in PHONES])
    drain(app)
    messages = [app.extensions["sms"].session.get(Message, i) for i in ids]
    assert {m.status for m in messages} == {Status.SENT}
    assert len({m.provider_message_id for m in messages}) == 1  # one bulk request, one eventId
    return messages


def hook(gateway: Gateway, token: str | None = None) -> str:
    return f"/sms/hooks/smsportal/{gateway.id}/{token or gateway.hook_token}"


def test_each_message_of_a_bulk_send_carries_its_own_reference(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    smsportal_gateway(app_ctx, simulator)
    messages = bulk_sent(app_ctx, sms)
    send = [r for r in simulator.requests_for("smsportal") if r.method == "POST"][-1]
    assert [m["customerId"] for m in send.json["messages"]] == [str(m.id) for m in messages]


def test_receipts_by_user_reference_reach_the_right_message(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = smsportal_gateway(app_ctx, simulator)
    first, second, third = bulk_sent(app_ctx, sms)
    event_id = first.provider_message_id
    client = app_ctx.test_client()

    def receipt(message: Message, status: str) -> dict[str, object]:
        return {
            "Status": status,
            "EventId": int(event_id),
            "Msisdn": message.to.lstrip("+"),
            "UserReference": str(message.id),
        }

    answer = client.post(hook(gateway), json=receipt(first, "DELIVRD"))
    batch = client.post(hook(gateway), json=[receipt(second, "UNDELIV"), receipt(third, "ENROUTE")])

    assert (answer.status_code, answer.text) == (200, "applied=1\n")
    assert (batch.status_code, batch.text) == (200, "applied=1\n")
    assert reload(app_ctx, first).status == Status.DELIVERED
    second = reload(app_ctx, second)
    assert (second.status, second.error_code) == (Status.UNDELIVERED, "UNDELIV")
    assert reload(app_ctx, third).status == Status.SENT


def test_without_reference_event_id_and_number_find_the_message(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = smsportal_gateway(app_ctx, simulator)
    first, second, _ = bulk_sent(app_ctx, sms)
    receipt = {"status": "delivrd", "eventId": first.provider_message_id, "msisdn": "27831234568"}

    answer = app_ctx.test_client().post(hook(gateway), json=receipt)

    assert answer.text == "applied=1\n"
    assert reload(app_ctx, second).status == Status.DELIVERED
    assert reload(app_ctx, first).status == Status.SENT


def test_wrong_token_or_type_is_404_and_bad_bodies_400(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    gateway = smsportal_gateway(app_ctx, simulator)
    custom = custom_gateway(app_ctx, simulator, "gw")
    client = app_ctx.test_client()
    receipt = {"Status": "DELIVRD", "EventId": 1, "Msisdn": "27831234567"}

    assert client.post(hook(gateway, "wrong"), json=receipt).status_code == 404
    assert client.post(hook(custom, custom.hook_token), json=receipt).status_code == 404
    assert client.get(hook(gateway), query_string=receipt).status_code == 405
    bad = client.post(hook(gateway), data=b"{", headers={"Content-Type": "application/json"})
    missing = client.post(hook(gateway), json={"Status": "DELIVRD"})
    assert (bad.status_code, missing.status_code) == (400, 400)
    unknown = client.post(hook(gateway), json={**receipt, "UserReference": "424242"})
    assert (unknown.status_code, unknown.text) == (200, "pending=1\n")
