"""Twilio's webhooks: the signature (with Twilio's published vector), status callbacks end to
end through a live server, and inbound STOP replies."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from sqlalchemy import select
from werkzeug.datastructures import MultiDict
from werkzeug.serving import make_server

from sms_ext import SMS
from sms_ext.hooks.twilio import port_variants, signature
from sms_ext.models import Gateway, OptOut, Status
from tests.conftest import _empty_tables, drain, make_app
from tests.helpers import add_gateway, custom_gateway, reload
from tests.simulator import GatewaySimulator

TO = "+27831234567"
VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = MultiDict(
    {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
)


def test_signature_matches_twilios_published_vector() -> None:
    assert signature("12345", VECTOR_URL, VECTOR_PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert signature("12345", with_port, VECTOR_PARAMS) == "kvajT1Ptam85bY51eRf/AJRuM3w="


def test_signature_sorts_repeated_values() -> None:
    one = MultiDict([("A", "2"), ("A", "1"), ("B", "x")])
    other = MultiDict([("B", "x"), ("A", "1"), ("A", "2")])
    assert signature("t", "https://h/p", one) == signature("t", "https://h/p", other)
    assert signature("t", "https://h/p", one) != signature("u", "https://h/p", one)


def test_port_variants_add_and_remove_the_default_port() -> None:
    assert port_variants(VECTOR_URL) == [
        VECTOR_URL,
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
    ]
    assert port_variants("http://h:80/x") == ["http://h:80/x", "http://h/x"]
    assert port_variants("http://h:8080/x") == ["http://h:8080/x", "http://h/x", "http://h:80/x"]


# -- the endpoint, through the test client ------------------------------------------------------


def twilio_with_token(app: Flask, sim: GatewaySimulator, **extra: Any) -> Gateway:
    """A Twilio gateway with an API key and the account's Auth Token for webhooks."""
    account = sim.twilio
    data = {
        "name": "Twilio",
        "type": "twilio",
        "account_sid": account.account_sid,
        "api_key": account.api_key,
        "api_secret": account.api_secret,
        "auth_token": account.auth_token,
        "from_number": "+15005550006",
        "base_url": f"{sim.url}/twilio",
        **extra,
    }
    return add_gateway(app, **data)


def sent_via_twilio(app: Flask, sms: SMS) -> Any:
    message = sms.send(TO, "Hello")
    drain(app)
    message = reload(app, message)
    assert message.status == Status.SENT
    return message


def post_signed(
    client: FlaskClient,
    path: str,
    params: dict[str, str],
    token: str,
    *,
    signed_url: str | None = None,
    header: str | None = None,
) -> Any:
    url = signed_url or f"http://localhost{path}"
    sig = signature(token, url, MultiDict(params)) if header is None else header
    return client.post(path, data=params, headers={"X-Twilio-Signature": sig})


def callback(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1", **extra}


def test_signed_status_callback_delivers_the_message(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    message = sent_via_twilio(app_ctx, sms)
    client = app_ctx.test_client()
    path = f"/sms/hooks/twilio/{gateway.id}"

    answer = post_signed(
        client,
        path,
        callback(message.provider_message_id, "delivered"),
        simulator.twilio.auth_token,
    )

    assert answer.status_code == 200
    message = reload(app_ctx, message)
    assert message.status == Status.DELIVERED and message.delivered_at is not None


def test_undelivered_callback_keeps_twilios_error_code(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    message = sent_via_twilio(app_ctx, sms)
    params = callback(message.provider_message_id, "undelivered", ErrorCode="30003")

    answer = post_signed(
        app_ctx.test_client(),
        f"/sms/hooks/twilio/{gateway.id}",
        params,
        simulator.twilio.auth_token,
    )

    assert answer.status_code == 200
    message = reload(app_ctx, message)
    assert (message.status, message.error_code) == (Status.UNDELIVERED, "30003")
    assert message.failed_at is not None


@pytest.mark.parametrize(
    "header", ["", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "not base64 at all", "x" * 5000]
)
def test_unsigned_or_wrongly_signed_callbacks_are_refused_and_change_nothing(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator, header: str
) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    message = sent_via_twilio(app_ctx, sms)
    params = callback(message.provider_message_id, "delivered")

    answer = post_signed(
        app_ctx.test_client(), f"/sms/hooks/twilio/{gateway.id}", params, "", header=header
    )

    assert answer.status_code == 403
    assert reload(app_ctx, message).status == Status.SENT


def test_a_signature_with_another_token_or_for_other_params_is_refused(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    message = sent_via_twilio(app_ctx, sms)
    client = app_ctx.test_client()
    path = f"/sms/hooks/twilio/{gateway.id}"
    params = callback(message.provider_message_id, "delivered")

    wrong_token = post_signed(client, path, params, simulator.twilio.api_secret)
    signed = signature(simulator.twilio.auth_token, f"http://localhost{path}", MultiDict(params))
    tampered = client.post(
        path, data={**params, "MessageStatus": "failed"}, headers={"X-Twilio-Signature": signed}
    )

    assert (wrong_token.status_code, tampered.status_code) == (403, 403)
    assert reload(app_ctx, message).status == Status.SENT


def test_api_key_gateway_without_auth_token_refuses_callbacks(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    gateway = twilio_with_token(app_ctx, simulator, auth_token="")
    message = sent_via_twilio(app_ctx, sms)
    params = callback(message.provider_message_id, "delivered")
    for token in (simulator.twilio.auth_token, simulator.twilio.api_secret):
        answer = post_signed(
            app_ctx.test_client(), f"/sms/hooks/twilio/{gateway.id}", params, token
        )
        assert answer.status_code == 403
        assert "Auth Token" in answer.text
    assert reload(app_ctx, message).status == Status.SENT


def test_auth_token_gateway_signs_with_its_api_secret(
    app_ctx: Flask, sms: SMS, simulator: GatewaySimulator
) -> None:
    """Without an API key, the "API secret" field holds the Auth Token itself."""
    gateway = twilio_with_token(
        app_ctx, simulator, api_key="", api_secret=simulator.twilio.auth_token, auth_token=""
    )
    message = sent_via_twilio(app_ctx, sms)
    params = callback(message.provider_message_id, "delivered")

    answer = post_signed(
        app_ctx.test_client(),
        f"/sms/hooks/twilio/{gateway.id}",
        params,
        simulator.twilio.auth_token,
    )

    assert answer.status_code == 200
    assert reload(app_ctx, message).status == Status.DELIVERED


@pytest.fixture
def public_app(
    backend: str, database_urls: dict[str, str], redis_url: str, redis: Redis
) -> Iterator[Flask]:
    app = make_app(database_urls[backend], redis_url, SMS_PUBLIC_URL="https://wifi.example.com/")
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
        yield app
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.mark.parametrize(
    "signed_for",
    [
        "https://wifi.example.com/sms/hooks/twilio/{id}?x=1",
        "https://wifi.example.com:443/sms/hooks/twilio/{id}?x=1",
    ],
)
def test_signature_over_the_public_url_behind_a_proxy_is_accepted(
    public_app: Flask, simulator: GatewaySimulator, signed_for: str
) -> None:
    gateway = twilio_with_token(public_app, simulator)
    params = callback("SM" + "0" * 32, "delivered")
    url = signed_for.format(id=gateway.id)

    answer = post_signed(
        public_app.test_client(),
        f"/sms/hooks/twilio/{gateway.id}?x=1",
        params,
        simulator.twilio.auth_token,
        signed_url=url,
    )

    assert answer.status_code == 200  # an unknown sid: answered, kept pending, logged


def test_unknown_gateway_and_other_types_are_404(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    custom = custom_gateway(app_ctx, simulator, "gw")
    client = app_ctx.test_client()
    for path in ("/sms/hooks/twilio/999999", "/sms/hooks/twilio/abc", "/sms/hooks/twilio/1e99"):
        assert client.post(path, data={"MessageSid": "x"}).status_code == 404
    assert client.post(f"/sms/hooks/twilio/{custom.id}", data={}).status_code == 404


def test_oversized_bodies_are_413(app_ctx: Flask, simulator: GatewaySimulator) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    answer = app_ctx.test_client().post(
        f"/sms/hooks/twilio/{gateway.id}", data={"Body": "x" * 70_000}
    )
    assert answer.status_code == 413


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/json",
            "multipart/form-data",
            "text/plain",
        ]
    ),
    header=st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=40),
)
def test_garbage_never_gets_a_500(
    app_ctx: Flask, simulator: GatewaySimulator, body: bytes, content_type: str, header: str
) -> None:
    session = app_ctx.extensions["sms"].session
    gateway = session.scalar(select(Gateway)) or twilio_with_token(app_ctx, simulator)
    answer = app_ctx.test_client().post(
        f"/sms/hooks/twilio/{gateway.id}",
        data=body,
        headers={"Content-Type": content_type, "X-Twilio-Signature": header},
    )
    assert answer.status_code in (400, 403, 413)


# -- inbound STOP -------------------------------------------------------------------------------


def test_inbound_stop_opts_out_and_start_undoes_it(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    client = app_ctx.test_client()
    token = simulator.twilio.auth_token
    path = f"/sms/hooks/twilio/{gateway.id}/inbound"
    session = app_ctx.extensions["sms"].session
    reply = {"MessageSid": "SM" + "1" * 32, "From": TO, "To": "+15005550006", "Body": " stop "}

    answer = post_signed(client, path, reply, token)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml")
    assert "<Response/>" in answer.text
    entry = session.get(OptOut, TO)
    assert entry is not None and (entry.source, entry.gateway_id) == ("stop", gateway.id)

    assert post_signed(client, path, {**reply, "Body": "START"}, token).status_code == 200
    session.expire_all()
    assert session.get(OptOut, TO) is None


def test_inbound_on_the_status_url_is_recognised_by_its_body(
    app_ctx: Flask, simulator: GatewaySimulator
) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    reply = {"SmsSid": "SM" + "2" * 32, "From": TO, "Body": "UNSUBSCRIBE", "SmsStatus": "received"}

    answer = post_signed(
        app_ctx.test_client(), f"/sms/hooks/twilio/{gateway.id}", reply, simulator.twilio.auth_token
    )

    assert answer.status_code == 200 and "<Response/>" in answer.text
    assert app_ctx.extensions["sms"].session.get(OptOut, TO) is not None


def test_unsigned_inbound_stop_is_refused(app_ctx: Flask, simulator: GatewaySimulator) -> None:
    gateway = twilio_with_token(app_ctx, simulator)
    answer = app_ctx.test_client().post(
        f"/sms/hooks/twilio/{gateway.id}/inbound", data={"From": TO, "Body": "STOP"}
    )
    assert answer.status_code == 403
    assert app_ctx.extensions["sms"].session.get(OptOut, TO) is None


# -- end to end: worker -> simulator -> our live server -----------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_status_callback_end_to_end_through_a_live_server(
    backend: str,
    database_urls: dict[str, str],
    redis_url: str,
    redis: Redis,
    simulator: GatewaySimulator,
) -> None:
    """A real worker sends through the Twilio simulator with StatusCallback (from
    SMS_PUBLIC_URL); the simulator calls our live server, signed; the message is delivered."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    sms = SMS()
    app = make_app(database_urls[backend], redis_url, sms=sms, SMS_PUBLIC_URL=public)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            gateway = twilio_with_token(app, simulator)
            message = sms.send(TO, "Hello")
            drain(app)

            sent = simulator.requests_for("twilio")[-1]
            expected = f"{public}/sms/hooks/twilio/{gateway.id}"
            assert sent.form["StatusCallback"] == [expected]
            deadline = time.monotonic() + 30
            while len(simulator.callbacks) < 2 or reload(app, message).status == Status.SENT:
                assert time.monotonic() < deadline, simulator.callbacks
                time.sleep(0.1)
            assert reload(app, message).status == Status.DELIVERED
            message = reload(app, message)
            assert message.delivered_at is not None and message.receipt_at is not None
            assert [(s, c) for _, s, c in simulator.callbacks] == [
                ("sent", 200),
                ("delivered", 200),
            ]
    finally:
        server.shutdown()
        thread.join()
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
