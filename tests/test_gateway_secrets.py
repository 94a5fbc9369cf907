"""Stored gateway secrets cannot be read back: not by redirecting them to another host, not
through a preview, not through an encoded spelling in a record or an error; the egress guard
keeps gateway requests off private addresses; typed secrets survive a preview (issue 9)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from sms_ext import SMS, Gateway, GatewayConfigError, Message, Status
from sms_ext.gateways import OutgoingSMS
from sms_ext.gateways.custom import CustomDriver
from sms_ext.gateways.masking import redact
from sms_ext.gateways.store import export_gateways, gateway_config, import_gateways, save_gateway
from tests.conftest import _empty_tables, drain, make_app
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

PREFIX = "/sms/admin/gateways"
SECRET = 'tok"en\\with/odd+chars&=99'
SMS_OUT = OutgoingSMS(reference="5", to="+27831234567", body="hello")


def twilio_form(sim: GatewaySimulator, **changes: Any) -> dict[str, Any]:
    data = {
        "type": "twilio",
        "name": "Twilio",
        "enabled": "y",
        "account_sid": sim.twilio.account_sid,
        "api_secret": sim.twilio.auth_token,
        "from_number": "+27831234567",
        "base_url": sim.url + "/twilio",
        "timeout": "5",
    }
    data.update(changes)
    return data


def custom_form(**changes: Any) -> dict[str, Any]:
    data = {
        "type": "custom",
        "name": "Signed",
        "enabled": "y",
        "url": "https://sms.example.com/send",
        "method": "POST",
        "content_type": "json",
        "payload": '{"to": "{phone}", "text": "{message}", "key": "{api_key}"}',
        "timeout": "5",
        "api_key": "typed-key-0123456789",
        "api_secret": "typed-secret-0123456789",
    }
    data.update(changes)
    return data


def only_gateway(app: Flask) -> Gateway:
    """The one gateway, fresh from the database (loaded in full: usable after the context)."""
    with app.app_context():
        state = app.extensions["sms"]
        state.session.expire_all()
        (gateway,) = state.session.scalars(Gateway.in_order())
        state.session.refresh(gateway)
        return gateway


def error_of(page: str, field: str) -> str:
    found = re.search(rf'id="{re.escape(field)}-error">([^<]*)<', page)
    return found.group(1) if found else ""


def preview_text(page: str) -> str:
    found = re.search(r"<pre>(.*?)</pre>", page, re.S)
    return found.group(1) if found else ""


# -- a stored secret only goes where it was typed for -----------------------------------------


def test_a_new_base_url_needs_the_secret_again_and_check_sends_nothing_there(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    assert admin.post(f"{PREFIX}/new?type=twilio", data=twilio_form(simulator)).status_code == 303
    gateway_id = only_gateway(app).id
    with GatewaySimulator() as elsewhere:
        moved = twilio_form(simulator, api_secret="", base_url=elsewhere.url + "/twilio")
        answer = admin.post(f"{PREFIX}/{gateway_id}/", data=moved)
        page = answer.get_data(as_text=True)
        assert answer.status_code == 400
        assert error_of(page, "api_secret").startswith("Type this secret again: where the gateway")
        admin.post(f"{PREFIX}/{gateway_id}/balance")
        assert elsewhere.requests == []
        with app.app_context():
            assert only_gateway(app).settings["base_url"] == simulator.url + "/twilio"

        retyped = {**moved, "api_secret": "new-token-for-the-new-host"}
        assert admin.post(f"{PREFIX}/{gateway_id}/", data=retyped).status_code == 303
        with app.app_context():
            config = gateway_config(only_gateway(app), app.extensions["sms"].vault)
        assert config["api_secret"] == "new-token-for-the-new-host"


def test_the_same_destination_keeps_the_stored_secret(app_ctx: Flask) -> None:
    state = app_ctx.extensions["sms"]
    data = {**custom_form(), "url": "https://sms.example.com/send"}
    gateway = save_gateway(state.session, state.vault, data)
    same = {**data, "url": "HTTPS://SMS.EXAMPLE.COM/send/", "api_key": "", "api_secret": ""}
    save_gateway(state.session, state.vault, same, gateway)
    assert gateway_config(gateway, state.vault)["api_key"] == "typed-key-0123456789"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"url": "https://collector.example.net/send"}, "where the gateway sends requests"),
        (
            {"lua_enabled": True, "lua_script": "function build_request(m) return {} end"},
            "where the gateway sends requests",
        ),
        ({"type": "twilio"}, "the gateway type changed"),
    ],
)
def test_changing_where_requests_go_drops_the_stored_secrets(
    app_ctx: Flask, change: dict[str, Any], why: str
) -> None:
    state = app_ctx.extensions["sms"]
    gateway = save_gateway(state.session, state.vault, custom_form())
    edited = {**custom_form(api_key="", api_secret=""), **change}
    if change.get("type") == "twilio":
        edited.update(account_sid="AC" + "a" * 32, from_number="+27831234567")
        field = "api_secret"
    else:
        field = "api_key"
    with pytest.raises(GatewayConfigError) as caught:
        save_gateway(state.session, state.vault, edited, gateway)
    assert caught.value.errors[field].startswith(f"Type this secret again: {why}")


# -- previews use typed secrets only ----------------------------------------------------------


REVEAL = """
function build_request(msg)
  return {body = string.reverse(msg.api_secret) .. "|" .. string.reverse(msg.api_key)}
end
"""
SHOW = """
function build_request(msg, cfg)
  return {body = cfg.api_secret .. "|" .. msg.api_key}
end
"""


@pytest.mark.parametrize("script", [REVEAL, SHOW])
def test_a_preview_never_uses_a_stored_secret(app: Flask, admin: FlaskClient, script: str) -> None:
    form = custom_form(lua_enabled="y", lua_script=script)
    assert admin.post(f"{PREFIX}/new", data=form).status_code == 303
    gateway_id = only_gateway(app).id

    blank = {**form, "api_key": "", "api_secret": ""}
    page = admin.post(f"{PREFIX}/preview?gateway={gateway_id}", data=blank).get_data(as_text=True)

    for secret in ("typed-secret-0123456789", "typed-key-0123456789"):
        assert secret not in page and secret[::-1] not in page
    if script == SHOW:  # the stored secrets stand as a mask, not as the (masked) real value
        assert preview_text(page).endswith("\n\n\u2022\u2022\u2022\u2022|\u2022\u2022\u2022\u2022")


# -- masking covers every encoded spelling -----------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET)[1:-1].replace("/", "\\/"),
        quote(SECRET, safe=""),
        quote(SECRET),
        quote_plus(SECRET),
        urlencode({"k": SECRET})[2:],
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        base64.b64encode(b"user:" + SECRET.encode()).decode(),
        base64.b64encode(b"us:" + SECRET.encode()).decode(),
        base64.b64encode(b"u:" + SECRET.encode()).decode(),
    ],
)
def test_redact_masks_every_encoding(spelling: str) -> None:
    shown = redact(f"before {spelling} after", [SECRET])
    assert "****" in shown
    core = spelling[4:-4]  # whatever encoding: no long run of it survives
    assert core not in shown


def test_recorded_requests_mask_a_secret_with_quotes_and_backslashes(
    simulator: GatewaySimulator,
) -> None:
    config = CustomDriver.validate(
        {
            "url": f"{simulator.url}/custom/send?k={{api_secret}}",
            "content_type": "json",
            "payload": '{"text": "{message}", "secret": "{api_secret}"}',
            "headers": [{"name": "X-Sig", "value": "v={api_secret}"}],
            "api_secret": SECRET,
        }
    )
    result = CustomDriver(config, requests.Session()).send(SMS_OUT)
    assert result.ok, result.error
    (recorded,) = simulator.requests_for("custom")
    assert recorded.json["secret"] == SECRET  # the provider got the real thing
    for spelling in (json.dumps(SECRET)[1:-1], quote(SECRET, safe=""), "en\\\\with"):
        assert spelling not in result.request_summary
    assert '"secret":"****"' in result.request_summary


# -- item 16: typed secrets survive a preview; a used secret must not be empty ------------------


def test_preview_keeps_typed_secrets_in_the_form_only(app: Flask, admin: FlaskClient) -> None:
    answer = admin.post(f"{PREFIX}/preview", data=custom_form())
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    for name, value in (
        ("api_key", "typed-key-0123456789"),
        ("api_secret", "typed-secret-0123456789"),
    ):
        tag = re.search(rf'<input [^>]*name="{name}"[^>]*>', page).group(0)
        assert 'type="password"' in tag and f'value="{value}"' in tag
        assert value not in preview_text(page)
    assert '"key":"****"' in preview_text(page).replace("&#34;", '"')

    # "Save" right after posts the same form back: the gateway has its keys
    assert admin.post(f"{PREFIX}/new", data=custom_form()).status_code == 303
    with app.app_context():
        config = gateway_config(only_gateway(app), app.extensions["sms"].vault)
    assert config["api_key"] == "typed-key-0123456789"


def test_save_is_refused_when_the_payload_uses_an_empty_key(app: Flask, admin: FlaskClient) -> None:
    answer = admin.post(f"{PREFIX}/new", data=custom_form(api_key="", api_secret=""))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert error_of(page, "api_key") == "The request uses {api_key}: type the API key."
    assert error_of(page, "api_secret") == ""  # the payload does not use it
    with app.app_context():
        assert list(app.extensions["sms"].session.scalars(Gateway.in_order())) == []


# -- the Lua toggle is a column, in the form and in export/import --------------------------------


def test_the_lua_toggle_round_trips(app: Flask, admin: FlaskClient) -> None:
    script = "function build_request(msg) return {} end"
    off = custom_form(lua_script=script)  # an unticked checkbox is absent
    assert admin.post(f"{PREFIX}/new", data=off).status_code == 303
    with app.app_context():
        gateway = only_gateway(app)
        assert (gateway.lua_enabled, gateway.settings["lua_script"]) == (False, script)
        assert "lua_enabled" not in gateway.settings
    page = admin.get(f"{PREFIX}/{gateway.id}/").get_data(as_text=True)
    assert re.search(r'<input [^>]*id="lua_enabled"[^>]*>', page)
    assert "checked" not in re.search(r'<input [^>]*id="lua_enabled"[^>]*>', page).group(0)
    assert (
        admin.post(f"{PREFIX}/{gateway.id}/", data={**off, "lua_enabled": "y"}).status_code == 303
    )

    with app.app_context():
        state = app.extensions["sms"]
        exported = export_gateways(state.session)
        assert exported[0]["lua_enabled"] is True
        state.session.delete(only_gateway(app))
        state.session.commit()
        exported[0].update(api_key="k-0123456789", api_secret="s-0123456789")
        import_gateways(state.session, state.vault, [{**exported[0], "lua_enabled": False}])
        state.session.commit()
        assert only_gateway(app).lua_enabled is False


# -- the egress guard -----------------------------------------------------------------------------


@pytest.fixture
def guarded_app(
    backend: str, database_urls: dict[str, str], redis_url: str, redis: Redis, sms: SMS
) -> Iterator[Flask]:
    """An app with ``SMS_GATEWAY_DENY_PRIVATE`` on; the simulator is on 127.0.0.1."""
    app = make_app(database_urls[backend], redis_url, sms=sms, SMS_GATEWAY_DENY_PRIVATE=True)
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
        yield app
        app.extensions["sqlalchemy"].engine.dispose()


def test_guard_records_a_final_failure_with_a_clear_message(
    guarded_app: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    custom_gateway(guarded_app, simulator, "internal")  # saved before the guard was turned on
    message = sms.send("+27831234567", "hello")
    drain(guarded_app)
    session = guarded_app.extensions["sms"].session
    session.expire_all()
    queued = session.get(Message, message.id)
    (attempt,) = queued.attempt_log
    assert attempt.error.startswith("refused: 127.0.0.1 is at the private address 127.0.0.1")
    assert attempt.retryable is False
    assert queued.status == Status.FAILED
    assert simulator.requests_for("custom") == []


def test_guard_refuses_a_literal_private_url_on_the_form(
    guarded_app: Flask, simulator: GatewaySimulator, sms: SMS
) -> None:
    guarded_app.config["WTF_CSRF_ENABLED"] = False
    sms.admin_check(lambda: True)
    client = guarded_app.test_client()
    for url, field in (
        ("http://169.254.169.254/latest/meta-data", "url"),
        (f"{simulator.url}/custom/send", "url"),
    ):
        answer = client.post(f"{PREFIX}/new", data=custom_form(url=url))
        assert answer.status_code == 400
        assert "SMS_GATEWAY_DENY_PRIVATE refuses" in error_of(answer.get_data(as_text=True), field)
    twilio = twilio_form(simulator)
    answer = client.post(f"{PREFIX}/new?type=twilio", data=twilio)
    assert "private address 127.0.0.1" in error_of(answer.get_data(as_text=True), "base_url")
