"""Guest OTP verification over HTTP: real Redis, real worker, codes read from the simulator."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from sms_ext import Kind, Message, OtpChallenge, Status
from sms_ext.models import utcnow
from tests.conftest import _empty_tables, drain
from tests.helpers import custom_gateway, reload
from tests.otp_app import build
from tests.redis_server import RedisServer
from tests.simulator import GatewaySimulator

PHONE = "+27831234567"
QUERY = "mac=02:00:00:00:00:01&ip=10.0.0.23&ap=ap-7&login_url=http://gw.local/login&url=http://x.org/?a=1%26b=2"
PAGE = f"/s/cafe/?{QUERY}"


def latest_code(app: Flask, sim: GatewaySimulator) -> str:
    """Deliver queued messages with a real worker and read the newest code the gateway got."""
    with app.app_context():
        drain(app)
    text = sim.requests_for("custom")[-1].json["text"]
    return re.search(r"\d{4,}", text)[0]


def ask_code(client: FlaskClient, phone: str = PHONE, page: str = PAGE):
    return client.post(page, data={"phone": phone})


def test_whole_flow_keeps_the_controller_parameters(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    assert client.get(PAGE).status_code == 200
    page = ask_code(client, "083 123 4567")  # national format, region ZA from the callback
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in html and 'inputmode="numeric"' in html
    assert f'action="{PAGE}"' in html.replace("&amp;", "&")
    assert "+27 83 123 4567" in html
    code = latest_code(otp_app, simulator)
    sms_text = simulator.requests_for("custom")[-1].json["text"]
    assert sms_text == f"Your Wi-Fi code is {code}\n\n@wifi.example.com #{code}"
    done = client.post(PAGE, data={"sms_step": "code", "code": code})
    assert done.status_code == 303
    target = urlsplit(done.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == "http://gw.local/login"
    assert parse_qsl(target.query) == parse_qsl(QUERY)
    assert otp_app.extensions["verified_guests"] == [(PHONE, True, dict(parse_qsl(QUERY)))]
    with otp_app.app_context():
        message = otp_app.extensions["sms"].session.scalar(select(Message))
        assert (message.kind, message.status, message.to) == (Kind.OTP, Status.SENT, PHONE)
        challenge = otp_app.extensions["sms"].session.scalar(select(OtpChallenge))
        assert code not in challenge.code_hmac and challenge.used_at is not None
        assert challenge.expires_at - challenge.created_at == timedelta(seconds=300)
        assert message.expires_at == challenge.expires_at
    again = client.post(PAGE, data={"sms_step": "code", "code": code})
    assert again.status_code == 400  # single use


def test_otp_off_connects_after_the_format_check(otp_app: Flask, simulator) -> None:
    otp_app.config["SPLASH_OTP"] = False
    client = otp_app.test_client()
    response = client.post("/s/cafe/", data={"phone": "0831234567"})
    assert response.get_data(as_text=True) == f"connected {PHONE}"
    assert otp_app.extensions["verified_guests"] == [(PHONE, False, {})]
    assert simulator.requests_for("custom") == []
    bad = client.post("/s/cafe/", data={"phone": "12"})
    assert bad.status_code == 400 and "too short" in bad.get_data(as_text=True)


def test_wrong_codes_then_the_code_is_dead(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    code = latest_code(otp_app, simulator)
    wrongs = [c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c != code]
    messages = []
    for wrong in wrongs[:5]:  # each a new guess: re-posting one is not counted again
        response = client.post(PAGE, data={"sms_step": "code", "code": wrong})
        assert response.status_code == 400
        messages.append(
            re.search(r'role="alert"[^>]*>([^<]*)<', response.get_data(as_text=True))[1]
        )
    assert messages[:2] == [
        "That code is not right. 4 tries left.",
        "That code is not right. 3 tries left.",
    ]
    assert messages[-1] == "Too many wrong codes. Ask for a new code."
    dead = client.post(PAGE, data={"sms_step": "code", "code": code})
    assert dead.status_code == 400
    assert "no longer valid" in dead.get_data(as_text=True)
    assert otp_app.extensions["verified_guests"] == []


def test_expired_code_is_refused(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    code = latest_code(otp_app, simulator)
    with otp_app.app_context():
        session = otp_app.extensions["sms"].session
        session.execute(update(OtpChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    response = client.post(PAGE, data={"sms_step": "code", "code": code})
    assert response.status_code == 400 and "no longer valid" in response.get_data(as_text=True)


def test_resend_waits_then_replaces_the_code(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    first = latest_code(otp_app, simulator)
    early = client.post(PAGE, data={"sms_step": "resend"})
    assert early.status_code == 429
    assert re.search(r"try again in (29|30) seconds", early.get_data(as_text=True))
    with otp_app.app_context():
        session = otp_app.extensions["sms"].session
        session.execute(update(OtpChallenge).values(created_at=utcnow() - timedelta(seconds=31)))
        session.commit()
    later = client.post(PAGE, data={"sms_step": "resend"})
    assert later.status_code == 200 and "A new code is on its way." in later.get_data(as_text=True)
    second = latest_code(otp_app, simulator)
    old = client.post(PAGE, data={"sms_step": "code", "code": first})
    if first != second:
        assert old.status_code == 400
    assert client.post(PAGE, data={"sms_step": "code", "code": second}).status_code == 303


def test_phone_limit_says_how_long_to_wait(otp_app: Flask, simulator) -> None:
    for attempt in range(3):  # three browsers, one phone
        assert ask_code(otp_app.test_client()).status_code == 200, attempt
    refused = ask_code(otp_app.test_client())
    assert refused.status_code == 429
    assert "Too many codes were requested. Please try again in 10 minutes." in refused.get_data(
        as_text=True
    )
    other = ask_code(otp_app.test_client(), "+27831234568")
    assert other.status_code == 200
    with otp_app.app_context():
        count = otp_app.extensions["sms"].session.scalar(select(func.count()).select_from(Message))
    assert count == 4


def test_code_is_bound_to_the_client_mac(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    code = latest_code(otp_app, simulator)
    moved = client.post(
        PAGE.replace("02:00:00:00:00:01", "02:00:00:00:00:99"),
        data={"sms_step": "code", "code": code},
    )
    assert moved.status_code == 400
    assert "another device" in moved.get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"sms_step": "code", "code": "12ab56"}, 400, "Enter the 6-digit code"),
        ({"sms_step": "code", "code": "1" * 5000}, 400, "Enter the 6-digit code"),
        ({"sms_step": "code"}, 400, "Enter the 6-digit code"),
        ({"phone": "x" * 10000}, 400, "too long"),
        ({"phone": ""}, 400, "Please enter"),
        ({"phone": "+49 151 1234 5678 abc"}, 400, "can only contain digits"),
    ],
)
def test_bad_input_gets_a_message(otp_app: Flask, simulator, data, status, message) -> None:
    client = otp_app.test_client()
    ask_code(client)
    response = client.post(PAGE, data=data)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)


def test_code_without_a_session_is_a_clear_400(otp_app: Flask) -> None:
    response = otp_app.test_client().post(PAGE, data={"sms_step": "code", "code": "123456"})
    assert response.status_code == 400
    assert "Your session expired" in response.get_data(as_text=True)


def test_csrf_is_enforced(service_urls: tuple[str, str], redis, simulator) -> None:
    app = build(*service_urls)
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
        custom_gateway(app, simulator, "otp")
    client = app.test_client()
    assert client.post(PAGE, data={"phone": PHONE}).status_code == 400
    form = client.get(PAGE).get_data(as_text=True)
    token = re.search(r'name=csrf_token value="([^"]+)"', form)[1]
    assert client.post(PAGE, data={"phone": PHONE, "csrf_token": token}).status_code == 200
    foreign = app.test_client()
    foreign.get(PAGE)
    assert foreign.post(PAGE, data={"phone": PHONE, "csrf_token": token}).status_code == 400
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_protect_before_registering_the_blueprint(service_urls, redis, simulator) -> None:
    app = build(*service_urls, protect_first=True, WTF_CSRF_ENABLED=False)
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
        custom_gateway(app, simulator, "otp")
    client = app.test_client()
    assert ask_code(client).status_code == 200
    code = latest_code(app, simulator)
    assert client.post(PAGE, data={"sms_step": "code", "code": code}).status_code == 303
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_regions_and_fixed_lines(service_urls, redis, simulator) -> None:
    app = build(*service_urls, WTF_CSRF_ENABLED=False, SMS_ALLOWED_REGIONS="ZA,NA")
    client = app.test_client()
    german = client.post("/s/cafe/", data={"phone": "+49 1512 3456789"})
    assert german.status_code == 400 and "Germany" in german.get_data(as_text=True)
    landline = client.post("/s/cafe/", data={"phone": "+27 21 123 4567"})
    assert landline.status_code == 400 and "mobile" in landline.get_data(as_text=True)
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


def test_message_template_is_configurable(service_urls, redis, simulator) -> None:
    app = build(
        *service_urls,
        WTF_CSRF_ENABLED=False,
        SMS_OTP_DIGITS=8,
        SMS_OTP_MESSAGE="{{ code }} is your Cafe Wi-Fi code",
    )
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
        custom_gateway(app, simulator, "otp")
    ask_code(app.test_client())
    code = latest_code(app, simulator)
    assert len(code) == 8
    # Neither SMS_OTP_WEBOTP_HOST nor SERVER_NAME: no WebOTP line (never the request's Host).
    assert simulator.requests_for("custom")[-1].json["text"] == f"{code} is your Cafe Wi-Fi code"
    with app.app_context():
        message = app.extensions["sms"].session.scalar(select(Message))
        assert reload(app, message).status == Status.SENT
        app.extensions["sqlalchemy"].engine.dispose()


def test_no_code_without_redis(service_urls: tuple[str, str], simulator) -> None:
    """Limits cannot be checked, so nothing is sent (fail closed), with a clear 503."""
    with RedisServer() as redis_server:
        app = build(service_urls[0], redis_server.url, WTF_CSRF_ENABLED=False)
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            custom_gateway(app, simulator, "otp")
        redis_server.stop()
        response = ask_code(app.test_client())
        assert response.status_code == 503
        assert "unavailable right now" in response.get_data(as_text=True)
        assert count_rows(app, OtpChallenge) == 0
        assert count_rows(app, Message) == 0
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def count_rows(app: Flask, model) -> int:
    with app.app_context():
        return app.extensions["sms"].session.scalar(select(func.count()).select_from(model))
