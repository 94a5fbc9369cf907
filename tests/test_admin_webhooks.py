"""The webhook part of the gateway page: field names and status mapping of a custom gateway,
the URLs to give each provider (token masked), and a new token on demand."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from sms_ext.gateways.hook_fields import meaning
from tests.helpers import custom_gateway, twilio_gateway
from tests.simulator import GatewaySimulator

PREFIX = "/sms/admin/gateways"


def custom_form(simulator: GatewaySimulator, **changes: Any) -> dict[str, Any]:
    return {
        "type": "custom",
        "name": "gw",
        "enabled": "y",
        "url": f"{simulator.url}/custom/gw",
        "method": "POST",
        "content_type": "json",
        "payload": '{"to": "{phone}", "text": "{message}"}',
        "timeout": "2",
        **changes,
    }


def test_field_names_and_mapping_are_saved_and_shown_again(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "gw")
        gateway_id = gateway.id
    form = custom_form(
        simulator,
        **{
            "hooks-message_id": "data.msgid",
            "hooks-status": "stat",
            "hooks-sender": "msisdn",
            "hooks-statuses": "1=delivered\n 2 = Undelivered \n\nACK=ignore",
        },
    )

    answer = admin.post(f"{PREFIX}/{gateway_id}/", data=form)

    assert answer.status_code == 303
    with app.app_context():
        session = app.extensions["sms"].session
        from sms_ext.models import Gateway

        hooks = session.get(Gateway, gateway_id).hooks
        assert hooks["fields"] == {"id": "data.msgid", "status": "stat", "from": "msisdn"}
        assert hooks["statuses"] == {"1": "delivered", "2": "undelivered", "ack": "ignore"}
        assert (meaning(hooks, "1"), meaning(hooks, "ACK"), meaning(hooks, "DELIVRD")) == (
            "delivered",
            None,
            "delivered",
        )
    page = admin.get(f"{PREFIX}/{gateway_id}/").text
    assert 'value="data.msgid"' in page and "1=delivered" in page


def test_a_bad_mapping_line_is_refused_next_to_its_field(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway_id = custom_gateway(app, simulator, "gw").id
    form = custom_form(
        simulator, **{"hooks-statuses": "DELIVRD=delivered\nnonsense", "hooks-message_id": "a b"}
    )

    answer = admin.post(f"{PREFIX}/{gateway_id}/", data=form)

    assert answer.status_code == 400
    assert "Line 2: write it as PROVIDER_STATUS=meaning." in answer.text
    assert "a field name or dotted path, without spaces" in answer.text
    assert 'id="hooks-statuses-error"' in answer.text


def test_urls_show_the_token_masked_and_in_full_only_on_request(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "gw")
        gateway_id, token = gateway.id, gateway.hook_token
    page = admin.get(f"{PREFIX}/{gateway_id}/").text
    full = f"http://localhost/sms/hooks/custom/{gateway_id}/{token}"
    assert f'<code style="word-break: break-all">{full}' not in page
    assert f"/sms/hooks/custom/{gateway_id}/\u2022\u2022\u2022\u2022{token[-4:]}" in page
    assert f'readonly value="{full}"' in page and f'readonly value="{full}/inbound"' in page


def test_twilio_urls_use_the_public_url(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway_id = twilio_gateway(app, simulator).id
    page = admin.get(f"{PREFIX}/{gateway_id}/").text
    assert f"http://localhost/sms/hooks/twilio/{gateway_id}/inbound" in page
    assert "Set <code>SMS_PUBLIC_URL</code>" in page
    assert "Auth Token (for webhooks)" in page


def test_new_token_replaces_the_old_one(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "gw")
        gateway_id, old = gateway.id, gateway.hook_token
    answer = admin.post(f"{PREFIX}/{gateway_id}/hook-token")
    assert answer.status_code == 303 and answer.location.endswith("#webhooks")
    with app.app_context():
        from sms_ext.models import Gateway

        new = app.extensions["sms"].session.get(Gateway, gateway_id).hook_token
    assert new and new != old
    receipt = {"id": "x", "status": "delivered"}
    client = app.test_client()
    assert client.post(f"/sms/hooks/custom/{gateway_id}/{old}", json=receipt).status_code == 404
    assert client.post(f"/sms/hooks/custom/{gateway_id}/{new}", json=receipt).status_code == 200
    assert admin.post(f"{PREFIX}/99999999999/hook-token").status_code == 404


def test_new_token_needs_csrf_and_an_admin(
    app: Flask, sms: Any, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway_id = custom_gateway(app, simulator, "gw").id
    client = app.test_client()
    assert client.post(f"{PREFIX}/{gateway_id}/hook-token").status_code == 403  # no admin
    sms.admin_check(lambda: True)
    assert client.post(f"{PREFIX}/{gateway_id}/hook-token").status_code == 400  # no CSRF
