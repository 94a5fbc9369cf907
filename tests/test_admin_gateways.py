"""The gateways admin pages, over HTTP with the test client, on every database backend."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from sms_ext import SMS, Gateway, Message, Status
from sms_ext.gateways.base import SendResult
from sms_ext.gateways.custom import CustomDriver
from sms_ext.gateways.presets import PRESETS
from tests.conftest import drain, make_app
from tests.helpers import add_gateway, custom_gateway, twilio_gateway
from tests.simulator import GatewaySimulator

PREFIX = "/sms/admin/gateways"
KEY = "KEY-abcdefghijklmnop-1234"
SECRET = "SECRET-qrstuvwxyz-98765"


def custom_form(**changes: Any) -> dict[str, Any]:
    """A valid custom gateway as the browser posts it."""
    data = {
        "type": "custom",
        "name": "Custom one",
        "enabled": "y",
        "locations": "cafe, hotel",
        "url": "https://sms.example.com/send",
        "method": "POST",
        "content_type": "json",
        "payload": '{"to": "{phone}", "text": "{message}", "key": "{api_key}"}',
        "success_response": '"ok"',
        "verify_ssl": "y",
        "headers-0-name": "X-Secret",
        "headers-0-value": "{api_secret}",
        "headers-1-name": "",
        "headers-1-value": "",
        "timeout": "5",
        "api_key": KEY,
        "api_secret": SECRET,
        "from_number": "Cafe",
    }
    data.update(changes)
    return data


def gateways(app: Flask) -> list[Gateway]:
    session = app.extensions["sms"].session
    session.expire_all()
    return list(session.scalars(Gateway.in_order()))


def stored_secrets(app: Flask, gateway: Gateway) -> dict[str, Any]:
    state = app.extensions["sms"]
    state.session.expire_all()
    return state.vault.open(state.session.get(Gateway, gateway.id).secrets_sealed)


def error_of(page: str, field: str) -> str:
    found = re.search(rf'id="{re.escape(field)}-error">([^<]*)<', page)
    return found.group(1) if found else ""


# -- access -----------------------------------------------------------------------------------

ROUTES = [
    ("get", "/"),
    ("get", "/new"),
    ("post", "/new"),
    ("get", "/1/"),
    ("post", "/1/"),
    ("post", "/1/toggle"),
    ("post", "/1/move"),
    ("post", "/order"),
    ("post", "/1/delete"),
    ("post", "/preview"),
    ("post", "/1/test"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_is_denied_without_admin_check(app: Flask, method: str, path: str) -> None:
    assert getattr(app.test_client(), method)(PREFIX + path).status_code == 403


def test_every_route_is_denied_when_the_check_says_no(app: Flask, sms: SMS) -> None:
    sms.admin_check(lambda: False)
    client = app.test_client()
    for method, path in ROUTES:
        assert getattr(client, method)(PREFIX + path).status_code == 403, path


def test_post_without_csrf_token_is_refused(
    app: Flask, backend: str, database_urls: dict[str, str], redis_url: str
) -> None:
    with app.app_context():
        gateway_id = add_gateway(app, name="Sandbox", type="sandbox").id
    guarded_sms = SMS()
    guarded_sms.admin_check(lambda: True)
    guarded = make_app(database_urls[backend], redis_url, sms=guarded_sms)  # CSRF on
    client = guarded.test_client()
    assert client.post(f"{PREFIX}/{gateway_id}/toggle").status_code == 400
    assert client.post(f"{PREFIX}/new", data=custom_form()).status_code == 400
    page = client.get(f"{PREFIX}/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(f"{PREFIX}/{gateway_id}/toggle", data={"csrf_token": token})
    assert answer.status_code == 303
    form = client.get(f"{PREFIX}/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    saved = client.post(f"{PREFIX}/new", data=custom_form(csrf_token=token))
    assert saved.status_code == 303
    with guarded.app_context():
        assert [g.enabled for g in gateways(guarded) if g.name == "Sandbox"] == [False]
    with guarded.app_context():
        guarded.extensions["sqlalchemy"].engine.dispose()


# -- list, toggle, order ----------------------------------------------------------------------


def test_list_shows_order_state_locations_and_balance(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        add_gateway(app, name="Main", type="sandbox")
        add_gateway(app, name="Backup", type="sandbox", locations="cafe,hotel", enabled=False)
    page = admin.get(f"{PREFIX}/").get_data(as_text=True)
    assert page.index("Main") < page.index("Backup")
    assert "primary" in page
    assert "cafe, hotel" in page and ">all<" in page
    assert 'aria-checked="true"' in page and 'aria-checked="false"' in page
    assert "never used" in page and "not reported" in page  # sandboxes have no balance
    assert '<a href="/sms/admin/gateways/"' in page  # the menu entry


def test_empty_list_offers_presets(admin: FlaskClient) -> None:
    page = admin.get(f"{PREFIX}/").get_data(as_text=True)
    for key in PRESETS:
        assert f"preset={key}" in page


def test_toggle_flips_enabled(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        gateway = add_gateway(app, name="Main", type="sandbox")
        assert admin.post(f"{PREFIX}/{gateway.id}/toggle").status_code == 303
        assert gateways(app)[0].enabled is False
        admin.post(f"{PREFIX}/{gateway.id}/toggle")
        assert gateways(app)[0].enabled is True
        assert admin.post(f"{PREFIX}/999/toggle").status_code == 404


def test_move_up_and_down_and_reorder(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        a, b, c = (add_gateway(app, name=n, type="sandbox").id for n in ("A", "B", "C"))
        admin.post(f"{PREFIX}/{c}/move", data={"direction": "up"})
        assert [g.name for g in gateways(app)] == ["A", "C", "B"]
        admin.post(f"{PREFIX}/{a}/move", data={"direction": "down"})
        assert [g.name for g in gateways(app)] == ["C", "A", "B"]
        admin.post(f"{PREFIX}/{c}/move", data={"direction": "up"})  # already first
        assert [g.name for g in gateways(app)] == ["C", "A", "B"]
        assert [g.priority for g in gateways(app)] == [1, 2, 3]
        assert admin.post(f"{PREFIX}/{a}/move", data={"direction": "left"}).status_code == 400
        answer = admin.post(f"{PREFIX}/order", data={"ids": [str(b), str(a), str(c)]})
        assert answer.status_code == 303
        assert [g.name for g in gateways(app)] == ["B", "A", "C"]
        admin.post(f"{PREFIX}/order", data={"ids": f"{c},999"})  # partial list, unknown id
        assert [g.name for g in gateways(app)] == ["C", "B", "A"]


def test_delete_needs_confirmation(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        gateway = add_gateway(app, name="Old", type="sandbox")
        admin.post(f"{PREFIX}/{gateway.id}/delete")
        assert len(gateways(app)) == 1
        admin.post(f"{PREFIX}/{gateway.id}/delete", data={"confirm": "yes"})
        assert gateways(app) == []


# -- forms and validation ---------------------------------------------------------------------


def test_create_custom_gateway(app: Flask, admin: FlaskClient) -> None:
    answer = admin.post(f"{PREFIX}/new", data=custom_form())
    assert answer.status_code == 303
    with app.app_context():
        (gateway,) = gateways(app)
        assert gateway.locations == ["cafe", "hotel"]
        assert gateway.settings["headers"] == [{"name": "X-Secret", "value": "{api_secret}"}]
        assert gateway.settings["timeout"] == 5
        assert stored_secrets(app, gateway) == {"api_key": KEY, "api_secret": SECRET}
        assert answer.location.endswith(f"{PREFIX}/{gateway.id}/")


def test_unchecked_boxes_are_saved_as_false(app: Flask, admin: FlaskClient) -> None:
    data = custom_form()
    del data["enabled"], data["verify_ssl"]
    assert admin.post(f"{PREFIX}/new", data=data).status_code == 303
    with app.app_context():
        (gateway,) = gateways(app)
        assert gateway.enabled is False and gateway.settings["verify_ssl"] is False


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"method": "GET"}, "content_type", "A JSON payload needs the POST method"),
        ({"payload": '{"to": {phone}}'}, "payload", "Payload is not valid JSON"),
        ({"payload": '{"to": "{phone}", "x": "{nope}"}'}, "payload", "Unknown placeholder {nope}"),
        ({"url": "https://x.example/{nope}"}, "url", "Unknown placeholder {nope}"),
        ({"url": "ftp://x.example/"}, "url", "must be an absolute http"),
        ({"headers-0-value": "a\r\nb"}, "headers", "line breaks are not allowed"),
        ({"headers-0-name": "Bad Name"}, "headers", "is not a valid header name"),
        ({"name": ""}, "name", "Name is required."),
        ({"timeout": "soon"}, "timeout", "Timeout must be a number"),
    ],
)
def test_bad_input_shows_its_message(
    app: Flask, admin: FlaskClient, changes: dict[str, str], field: str, message: str
) -> None:
    answer = admin.post(f"{PREFIX}/new", data=custom_form(**{"name": "Kept name", **changes}))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert message in page
    if field != "headers":
        assert message in error_of(page, field)
    if "name" not in changes:
        assert 'value="Kept name"' in page
    outside_inputs = re.sub(r"<input [^>]*>", "", page)  # typed secrets are kept in theirs
    assert KEY not in outside_inputs and SECRET not in outside_inputs
    with app.app_context():
        assert gateways(app) == []


def test_duplicate_name_is_refused(app: Flask, admin: FlaskClient) -> None:
    assert admin.post(f"{PREFIX}/new", data=custom_form()).status_code == 303
    answer = admin.post(f"{PREFIX}/new", data=custom_form())
    assert answer.status_code == 400
    assert "already exists" in error_of(answer.get_data(as_text=True), "name")


def test_type_switch_changes_the_fields(admin: FlaskClient) -> None:
    twilio = admin.get(f"{PREFIX}/new?type=twilio").get_data(as_text=True)
    assert 'name="account_sid"' in twilio and 'name="payload"' not in twilio
    portal = admin.get(f"{PREFIX}/new?type=smsportal").get_data(as_text=True)
    assert 'name="client_id"' in portal and 'name="account_sid"' not in portal
    custom = admin.get(f"{PREFIX}/new").get_data(as_text=True)
    assert 'name="headers-0-name"' in custom and 'name="headers-1-value"' in custom


def test_twilio_and_smsportal_forms_save(app: Flask, admin: FlaskClient) -> None:
    twilio = {
        "type": "twilio",
        "name": "Twilio",
        "enabled": "y",
        "account_sid": "AC" + "a" * 32,
        "api_key": "SK" + "b" * 32,
        "api_secret": SECRET,
        "from_number": "+14155550100",
    }
    assert admin.post(f"{PREFIX}/new", data=twilio).status_code == 303
    portal = {"type": "smsportal", "name": "Portal", "client_id": "client", "api_secret": ""}
    answer = admin.post(f"{PREFIX}/new", data=portal)
    assert answer.status_code == 400
    assert "API secret is required." in error_of(answer.get_data(as_text=True), "api_secret")
    assert admin.post(f"{PREFIX}/new", data={**portal, "api_secret": SECRET}).status_code == 303
    with app.app_context():
        saved = {g.name: g for g in gateways(app)}
        assert stored_secrets(app, saved["Twilio"]) == {"api_secret": SECRET}
        assert saved["Twilio"].settings["api_key"] == "SK" + "b" * 32
        page = admin.get(f"{PREFIX}/{saved['Portal'].id}/").get_data(as_text=True)
        assert SECRET not in page and "stored: ••••8765 — leave blank to keep" in page


# -- secrets ----------------------------------------------------------------------------------


def test_secrets_are_write_only(app: Flask, admin: FlaskClient) -> None:
    admin.post(f"{PREFIX}/new", data=custom_form())
    with app.app_context():
        (gateway,) = gateways(app)
        gateway_id = gateway.id
    edit = admin.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    listing = admin.get(f"{PREFIX}/").get_data(as_text=True)
    preview = admin.post(
        f"{PREFIX}/preview?gateway={gateway_id}", data=custom_form(api_key="", api_secret="")
    ).get_data(as_text=True)
    typed = admin.post(f"{PREFIX}/preview", data=custom_form(name="Other")).get_data(as_text=True)
    for page in (edit, listing, preview):
        assert KEY not in page and SECRET not in page
        assert "abcdefghijklmnop" not in page
    # typed secrets come back in their inputs, and nowhere else
    outside_inputs = re.sub(r"<input [^>]*>", "", typed)
    assert KEY not in outside_inputs and SECRET not in outside_inputs
    assert "stored: ••••1234 — leave blank to keep" in edit
    assert "stored: ••••8765 — leave blank to keep" in edit
    for name in ("api_key", "api_secret"):
        tag = re.search(rf'<input [^>]*name="{name}"[^>]*>', edit).group(0)
        assert 'type="password"' in tag and 'value=""' in tag
        assert 'autocomplete="new-password"' in tag and f'aria-describedby="{name}-hint"' in tag
    # blank keeps both secrets; a typed one replaces only itself
    blank = custom_form(name="Renamed", api_key="", api_secret="")
    assert admin.post(f"{PREFIX}/{gateway_id}/", data=blank).status_code == 303
    with app.app_context():
        assert stored_secrets(app, gateway) == {"api_key": KEY, "api_secret": SECRET}
    changed = custom_form(api_key="", api_secret="NEW-SECRET-0123456789")
    admin.post(f"{PREFIX}/{gateway_id}/", data=changed)
    with app.app_context():
        assert stored_secrets(app, gateway) == {
            "api_key": KEY,
            "api_secret": "NEW-SECRET-0123456789",
        }


def test_short_secret_shows_no_characters(app: Flask, admin: FlaskClient) -> None:
    unused = {"headers-0-name": "", "headers-0-value": ""}  # nothing uses {api_secret}
    admin.post(f"{PREFIX}/new", data=custom_form(api_key="short-key", api_secret="", **unused))
    with app.app_context():
        (gateway,) = gateways(app)
    page = admin.get(f"{PREFIX}/{gateway.id}/").get_data(as_text=True)
    assert "stored: •••• — leave blank to keep" in page and "short-key" not in page


# -- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_every_preset_validates(key: str) -> None:
    config = CustomDriver.validate({**PRESETS[key]["config"], "api_key": KEY, "api_secret": SECRET})
    assert config["url"].startswith("https://")


@pytest.mark.parametrize("key", sorted(PRESETS))
def test_create_from_preset(app: Flask, admin: FlaskClient, key: str) -> None:
    preset = PRESETS[key]
    page = admin.get(f"{PREFIX}/new?type=custom&preset={key}").get_data(as_text=True)
    assert f'value="{preset["config"]["url"]}"' in page
    form = re.findall(r'<(?:input|textarea|select)[^>]*name="([^"]+)"', page)
    assert {"url", "method", "payload", "success_response", "api_key"} <= set(form)
    data = {**preset["config"], "type": "custom", "name": preset["label"], "enabled": "y"}
    for number, header in enumerate(data.pop("headers")):
        data[f"headers-{number}-name"] = header["name"]
        data[f"headers-{number}-value"] = header["value"]
    data.update(api_key=KEY, api_secret=SECRET, from_number="Cafe")
    assert admin.post(f"{PREFIX}/new", data=data).status_code == 303
    with app.app_context():
        (gateway,) = gateways(app)
        assert gateway.settings["url"] == preset["config"]["url"]
        assert gateway.settings["headers"] == preset["config"]["headers"]


# -- preview ----------------------------------------------------------------------------------


def test_preview_shows_the_masked_request_without_saving(app: Flask, admin: FlaskClient) -> None:
    data = custom_form(sample_phone="+27 83 765 4321", sample_message="Hello & bye")
    answer = admin.post(f"{PREFIX}/preview", data=data)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    shown = re.search(r"<pre>(.*?)</pre>", page, re.S).group(1)
    assert shown.startswith("POST https://sms.example.com/send")
    assert "X-Secret: ****" in shown
    assert "+27837654321" in shown and "Hello &amp; bye" in shown
    assert "&#34;key&#34;:&#34;****&#34;" in shown
    assert f'value="{KEY}"' in page  # typed secrets survive the preview, in their inputs
    with app.app_context():
        assert gateways(app) == []


def test_preview_of_a_get_gateway_and_of_twilio(admin: FlaskClient) -> None:
    clickatell = {**PRESETS["clickatell"]["config"], "type": "custom", "api_key": KEY}
    clickatell.pop("headers")
    page = admin.post(f"{PREFIX}/preview", data=clickatell).get_data(as_text=True)
    assert "GET https://platform.clickatell.com/messages/http/send?apiKey=****&amp;to=27" in page
    twilio = {
        "type": "twilio",
        "account_sid": "AC" + "a" * 32,
        "api_secret": SECRET,
        "from_number": "+14155550100",
    }
    page = admin.post(f"{PREFIX}/preview?type=twilio", data=twilio).get_data(as_text=True)
    assert "POST https://api.twilio.com/2010-04-01/Accounts/AC" in page
    assert "Authorization: Basic ****" in page and SECRET not in re.sub(r"<input [^>]*>", "", page)


def test_preview_reports_invalid_values(admin: FlaskClient) -> None:
    answer = admin.post(f"{PREFIX}/preview", data=custom_form(sample_phone="12", method="GET"))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert error_of(page, "sample_phone") and error_of(page, "content_type")
    assert "<pre>" not in page


# -- test send --------------------------------------------------------------------------------


def test_run_test_through_one_gateway(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway = custom_gateway(app, simulator, "trial", enabled=False)
        gateway_id = gateway.id
    answer = admin.post(f"{PREFIX}/{gateway_id}/test", data={"phone": "+27831234567"})
    assert answer.status_code == 303
    assert "test=" in answer.location
    queued = admin.get(answer.location)
    # The refresh names its URL: a bare refresh of a URL with #test would not reload.
    target = f"{PREFIX}/{gateway_id}/?test="
    assert queued.headers["Refresh"].startswith(f"2; url={target}")
    assert f'<meta http-equiv="refresh" content="2; url={target}' in queued.get_data(as_text=True)
    drain(app)
    done = admin.get(answer.location)
    page = done.get_data(as_text=True)
    assert "Refresh" not in done.headers
    assert 'class="status sent">sent<' in page
    assert "HTTP 200" in page and "messageId" in page
    assert len(simulator.requests_for("custom")) == 1
    with app.app_context():
        session = app.extensions["sms"].session
        message = session.scalar(select(Message))
        assert message.status == Status.SENT and message.gateway_id == gateway_id
    listing = admin.get(f"{PREFIX}/").get_data(as_text=True)
    assert 'class="result ok">ok<' in listing and "HTTP 200" in listing


def test_run_test_with_a_bad_number(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        gateway = add_gateway(app, name="Sandbox", type="sandbox")
        answer = admin.post(f"{PREFIX}/{gateway.id}/test", data={"phone": "12"})
        assert answer.status_code == 400  # next to the test form: see test_admin_gateway_actions
        page = answer.get_data(as_text=True)
        assert "Test not sent" in page
        assert app.extensions["sms"].session.scalar(select(func.count()).select_from(Message)) == 0


def test_balance_is_checked_and_shown(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        twilio = twilio_gateway(app, simulator)
        custom = custom_gateway(app, simulator, "plain")
        ids = twilio.id, custom.id
    checked = admin.post(f"{PREFIX}/{ids[0]}/balance", follow_redirects=True)
    page = checked.get_data(as_text=True)
    assert "Twilio: balance 12.5." in page
    assert "<strong>12.5</strong>" in page
    assert simulator.twilio.api_secret not in page
    none = admin.post(f"{PREFIX}/{ids[1]}/balance", follow_redirects=True)
    assert "plain: Custom HTTP gateways do not report a balance." in none.get_data(as_text=True)
    with app.app_context():
        stored = app.extensions["sms"].session.get(Gateway, ids[0])
        assert stored.balance == Decimal("12.5") and stored.balance_checked_at is not None
    simulator.fail_next("twilio", "500")
    failed = admin.post(f"{PREFIX}/{ids[0]}/balance", follow_redirects=True)
    assert "Twilio: no balance." in failed.get_data(as_text=True)
    assert admin.post(f"{PREFIX}/999999/balance").status_code == 404


# -- limits and health ------------------------------------------------------------------------


def test_limits_round_trip_through_the_form(app: Flask, admin: FlaskClient) -> None:
    page = admin.get(f"{PREFIX}/new").get_data(as_text=True)
    assert "Max messages per second" in page and "Max requests at once" in page
    data = custom_form(max_per_second="5", max_in_flight=" 3 ")
    assert admin.post(f"{PREFIX}/new", data=data).status_code == 303
    with app.app_context():
        (gateway,) = gateways(app)
        assert (gateway.max_per_second, gateway.max_in_flight) == (5, 3)
        gateway_id = gateway.id
    edit = admin.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    assert re.search(r'<input [^>]*name="max_per_second"[^>]*value="5"', edit)
    assert re.search(r'<input [^>]*name="max_in_flight"[^>]*value="3"', edit)
    listing = admin.get(f"{PREFIX}/").get_data(as_text=True)
    assert "5/s · 3 at once" in listing
    blank = custom_form(max_per_second="", max_in_flight="")
    assert admin.post(f"{PREFIX}/{gateway_id}/", data=blank).status_code == 303
    with app.app_context():
        (gateway,) = gateways(app)
        assert (gateway.max_per_second, gateway.max_in_flight) == (None, None)
    edit = admin.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    assert re.search(r'<input [^>]*name="max_per_second"[^>]*value=""', edit)


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "ten", "100001"])
@pytest.mark.parametrize(
    ("field", "label"),
    [("max_per_second", "Max messages per second"), ("max_in_flight", "Max requests at once")],
)
def test_bad_limits_are_refused_with_a_clear_message(
    app: Flask, admin: FlaskClient, field: str, label: str, value: str
) -> None:
    answer = admin.post(f"{PREFIX}/new", data=custom_form(**{field: value}))
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert error_of(page, field) == (
        f"{label} must be a whole number from 1 to 100,000, or blank for no limit."
    )
    assert f'value="{value}"' in page  # what was typed stays in the field
    with app.app_context():
        assert gateways(app) == []


def test_list_shows_paused_and_skipped_gateways(app: Flask, admin: FlaskClient) -> None:
    with app.app_context():
        paused = add_gateway(app, name="Paused", type="sandbox")
        broken = add_gateway(app, name="Broken", type="sandbox")
        fine = add_gateway(app, name="Fine", type="sandbox")
        health = app.extensions["sms"].gateway_health
        health.record(paused, SendResult(ok=False, retryable=True, http_status=429, retry_after=60))
        for _ in range(3):
            health.record(broken, SendResult(ok=False, retryable=True, error="Timed out"))
        health.record(fine, SendResult(ok=False, retryable=True, http_status=503))
        ids = paused.id, broken.id, fine.id
    page = admin.get(f"{PREFIX}/").get_data(as_text=True)
    rows = {
        gateway_id: re.search(rf'<tr id="gateway-{gateway_id}".*?</tr>', page, re.S).group(0)
        for gateway_id in ids
    }
    assert re.search(r"Paused until \d\d:\d\d:\d\d UTC<", rows[ids[0]])
    assert re.search(r"Skipped until \d\d:\d\d:\d\d UTC \(3 failures in a row\)<", rows[ids[1]])
    assert "1 failure in a row" in rows[ids[2]] and "until" not in rows[ids[2]]


def test_list_without_redis_shows_no_health_and_no_error(
    backend: str, database_urls: dict[str, str], app: Flask
) -> None:
    with app.app_context():
        add_gateway(app, name="Main", type="sandbox")
    nowhere = SMS()
    nowhere.admin_check(lambda: True)
    offline = make_app(database_urls[backend], "redis://127.0.0.1:1/0", sms=nowhere)
    answer = offline.test_client().get(f"{PREFIX}/")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "Main" in page and "until" not in page
    with offline.app_context():
        offline.extensions["sqlalchemy"].engine.dispose()
