"""The generic receipt webhook of custom gateways: token, field names, status mapping, and
every shape of request (JSON, form, query string), bad ones included."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from sms_ext import SMS
from sms_ext.models import Gateway, Message, PendingReceipt, Status
from tests.conftest import drain
from tests.helpers import custom_gateway, reload, twilio_gateway
from tests.simulator import GatewaySimulator

TO = "+27831234567"


def sent(app: Flask, sms: SMS, simulator: GatewaySimulator, provider_id: str) -> Message:
    simulator.set_custom_response(body=f'{{"status": "ok", "messageId": "{provider_id}"}}')
    message = sms.send(TO, "Hello")
    drain(app)
    message = reload(app, message)
    assert message.provider_message_id == provider_id
    return message


def hook(gateway: Gateway, token: str | None = None) -> str:
    return f"/sms/hooks/custom/{gateway.id}/{token or gateway.hook_token}"


def test_a_new_gateway_gets_a_long_random_token(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    one = custom_gateway(app_ctx, simulator, "one")
    two = custom_gateway(app_ctx, simulator, "two")
    assert one.hook_token and two.hook_token and one.hook_token != two.hook_token
    assert len(one.hook_token) >= 43  # 32 random bytes, urlsafe base64


@pytest.mark.parametrize("shape", ["json", "form", "query"])
def test_receipt_in_every_shape_with_default_fields(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator, shape: str
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent(app_ctx, sms, simulator, "c-1")
    fields = {"id": "c-1", "status": "UNDELIV", "error_code": "34"}
    client = app_ctx.test_client()

    if shape == "json":
        answer = client.post(hook(gateway), json=fields)
    elif shape == "form":
        answer = client.post(hook(gateway), data=fields)
    else:
        answer = client.get(hook(gateway), query_string=fields)

    assert (answer.status_code, answer.text) == (200, "applied=1\n")
    message = reload(app_ctx, message)
    assert (message.status, message.error_code) == (Status.UNDELIVERED, "34")


def test_field_names_and_status_mapping_from_the_gateway(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    gateway.hooks = {
        "fields": {"id": "data.msgid", "status": "data.state", "error_code": "data.err"},
        "statuses": {"1": "delivered", "2": "undelivered", "8": "ignore"},
    }
    app_ctx.extensions["sms"].session.commit()
    message = sent(app_ctx, sms, simulator, "c-2")
    client = app_ctx.test_client()

    ignored = client.post(hook(gateway), json={"data": {"msgid": "c-2", "state": 8}})
    delivered = client.post(hook(gateway), json={"data": {"msgid": "c-2", "state": 1}})
    late = client.post(hook(gateway), json={"data": {"msgid": "c-2", "state": "2", "err": 5}})

    assert [a.text for a in (ignored, delivered, late)] == ["nothing\n", "applied=1\n", "kept=1\n"]
    assert reload(app_ctx, message).status == Status.DELIVERED


def test_a_list_of_receipts_in_one_request(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    first = sent(app_ctx, sms, simulator, "c-3")
    second = sent(app_ctx, sms, simulator, "c-4")

    answer = app_ctx.test_client().post(
        hook(gateway),
        json=[{"id": "c-3", "status": "DELIVRD"}, {"id": "c-4", "status": "REJECTD"}],
    )

    assert answer.text == "applied=2\n"
    assert reload(app_ctx, first).status == Status.DELIVERED
    assert reload(app_ctx, second).status == Status.FAILED


def test_unknown_ids_are_answered_200_and_logged(
    app_ctx: Flask, simulator: GatewaySimulator, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    with caplog.at_level(logging.INFO, logger="sms_ext"):
        answer = app_ctx.test_client().post(
            hook(gateway), json={"id": "nobody", "status": "delivered"}
        )
    assert (answer.status_code, answer.text) == (200, "pending=1\n")
    assert "nobody" in caplog.text and "kept until it is sent" in caplog.text
    session = app_ctx.extensions["sms"].session
    assert session.scalars(select(PendingReceipt.provider_message_id)).all() == ["nobody"]


def test_wrong_token_unknown_gateway_and_other_type_are_all_404(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    other = custom_gateway(app_ctx, simulator, "other")
    twilio = twilio_gateway(app_ctx, simulator)
    message = sent(app_ctx, sms, simulator, "c-5")
    receipt = {"id": "c-5", "status": "delivered"}
    client = app_ctx.test_client()
    paths = [
        hook(gateway, "x" * 43),
        hook(gateway, other.hook_token),
        f"/sms/hooks/custom/999999/{gateway.hook_token}",
        f"/sms/hooks/custom/-1/{gateway.hook_token}",
        f"/sms/hooks/custom/{twilio.id}/{twilio.hook_token}",
        f"/sms/hooks/smsportal/{gateway.id}/{gateway.hook_token}",
    ]
    answers = [client.post(path, json=receipt) for path in paths]
    assert [a.status_code for a in answers] == [404] * len(paths)
    assert len({a.text for a in answers}) == 1  # which part was wrong is not revealed
    assert reload(app_ctx, message).status == Status.SENT


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"id": "c-1", "status": ', "application/json", "not valid JSON"),
        (b'"just a string"', "application/json", "must be an object"),
        (b"[1, 2]", "application/json", "must be an object"),
        (b'{"status": "delivered"}', "application/json", "needs the fields 'id' and 'status'"),
        (b"id=c-1", "application/x-www-form-urlencoded", "needs the fields"),
    ],
)
def test_malformed_bodies_are_400_with_a_short_text(
    app_ctx: Flask, simulator: GatewaySimulator, body: bytes, content_type: str, message: str
) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    answer = app_ctx.test_client().post(
        hook(gateway), data=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 400
    assert message in answer.text and len(answer.text) < 200


def test_oversized_body_is_413(app_ctx: Flask, simulator: GatewaySimulator) -> None:
    gateway = custom_gateway(app_ctx, simulator, "gw")
    big = json.dumps({"id": "x", "status": "delivered", "pad": "x" * 70_000})
    answer = app_ctx.test_client().post(
        hook(gateway), data=big, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413


def test_csrf_protect_of_the_host_does_not_apply(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    """A host with CSRFProtect set up after the extension: the token in the URL is the proof."""
    from flask_wtf import CSRFProtect

    CSRFProtect(app_ctx)
    gateway = custom_gateway(app_ctx, simulator, "gw")
    message = sent(app_ctx, sms, simulator, "c-6")
    answer = app_ctx.test_client().post(hook(gateway), data={"id": "c-6", "status": "delivered"})
    assert answer.status_code == 200
    assert reload(app_ctx, message).status == Status.DELIVERED


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "status", "error_code", "x"]), children, max_size=4
        )
    ),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(JSONISH.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200)),
    content_type=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "multipart/form-data", ""]
    ),
    inbound=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
)
def test_garbage_never_gets_a_500(
    app_ctx: Flask,
    simulator: GatewaySimulator,
    payload: bytes,
    content_type: str,
    inbound: bool,
    method: str,
) -> None:
    session = app_ctx.extensions["sms"].session
    gateway = session.scalar(select(Gateway)) or custom_gateway(app_ctx, simulator, "gw")
    headers: dict[str, Any] = {"Content-Type": content_type} if content_type else {}
    answer = app_ctx.test_client().open(
        hook(gateway) + ("/inbound" if inbound else ""),
        method=method,
        data=payload,
        headers=headers,
    )
    assert answer.status_code in (200, 400, 413), answer.text
