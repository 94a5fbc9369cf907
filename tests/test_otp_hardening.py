"""Issue 9 over HTTP: what a guest (or someone posing as one) can and cannot do with codes.

The WebOTP host comes from configuration, a code works only where it was sent for, the guest
hears at once when no code can come, a mistyped number can be corrected, a refresh does not
spend a try, and the code is never stored or shown in clear.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy import select, update

from sms_ext import ConfigError, Message, OtpChallenge, Status, metadata
from sms_ext import runtime as sms_runtime
from sms_ext.config import load
from sms_ext.models import Gateway
from tests.conftest import TEST_KEY
from tests.test_otp_flow import (
    PAGE,
    PHONE,
    QUERY,
    ask_code,
    count_rows,
    latest_code,
)

WRONG_CODE_ERROR = re.compile(r'role="alert" id="code-error">([^<]*)<')


def set_runtime(app: Flask, **values: object) -> None:
    with app.app_context():
        state = app.extensions["sms"]
        sms_runtime.save(state, replace(sms_runtime.current(state), **values))


def wrong_for(code: str) -> str:
    return "000000" if code != "000000" else "111111"


# --- item 1: the WebOTP line ---


def test_the_webotp_host_is_configuration_not_the_host_header(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    page = client.post(PAGE, data={"phone": PHONE}, headers={"Host": "bank-verify.example"})
    assert page.status_code == 200
    code = latest_code(otp_app, simulator)
    text = simulator.requests_for("custom")[-1].json["text"]
    assert text == f"Your Wi-Fi code is {code}\n\n@wifi.example.com #{code}"
    assert "bank-verify" not in text


@pytest.mark.parametrize("size", [1400, 1600])
def test_a_huge_host_header_neither_grows_the_sms_nor_fails(
    otp_app: Flask, simulator, size: int
) -> None:
    host = ".".join(["a" * 63] * (size // 64 + 1))  # labels a router accepts, 1,400+ characters
    page = otp_app.test_client().post(PAGE, data={"phone": PHONE}, headers={"Host": host})
    assert page.status_code == 200, page.get_data(as_text=True)
    with otp_app.app_context():
        message = otp_app.extensions["sms"].session.scalar(select(Message))
        assert message.segments == 1 and host not in message.body


def config(**values: object) -> dict[str, object]:
    return {"SECRET_KEY": TEST_KEY, **values}


@pytest.mark.parametrize(
    ("values", "host"),
    [
        ({}, None),
        ({"SERVER_NAME": "portal.example.com:8443"}, "portal.example.com"),
        ({"SERVER_NAME": "Portal.Example.com"}, "portal.example.com"),
        ({"SERVER_NAME": "[::1]:5000"}, None),
        (
            {"SMS_OTP_WEBOTP_HOST": "wifi.example.com", "SERVER_NAME": "x.example"},
            "wifi.example.com",
        ),
    ],
)
def test_the_webotp_host_falls_back_to_server_name(values: dict, host: str | None) -> None:
    assert load(config(**values)).otp.webotp_host == host


@pytest.mark.parametrize(
    "bad",
    ["https://wifi.example.com", "wifi.example.com:443", "wifi example", "-x.example", "a" * 254],
)
def test_a_bad_webotp_host_fails_at_start(bad: str) -> None:
    with pytest.raises(ConfigError, match="SMS_OTP_WEBOTP_HOST must be a host name"):
        load(config(SMS_OTP_WEBOTP_HOST=bad))


# --- item 4: a code is bound to its location ---


def test_a_code_only_works_where_it_was_sent_for(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    code = latest_code(otp_app, simulator)
    elsewhere = f"/s/other/?{QUERY.replace('gw.local', 'evil.example')}"
    moved = client.post(elsewhere, data={"sms_step": "code", "code": code})
    assert moved.status_code == 400
    assert "sent for another place" in moved.get_data(as_text=True)
    assert otp_app.extensions["verified_guests"] == []


# --- item 5: no code can come ---


def assert_not_available(response) -> None:
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "SMS codes are not available right now" in page
    assert 'id="code"' not in page and "We sent" not in page


def test_sending_switched_off_says_so_and_spends_nothing(otp_app: Flask) -> None:
    set_runtime(otp_app, sending_enabled=False)
    assert_not_available(ask_code(otp_app.test_client()))
    assert count_rows(otp_app, OtpChallenge) == 0
    assert count_rows(otp_app, Message) == 0
    set_runtime(otp_app, sending_enabled=True)  # nothing was counted against the phone
    for _ in range(3):
        assert ask_code(otp_app.test_client()).status_code == 200


@pytest.mark.parametrize("change", [{"enabled": False}, {"locations": ["another-venue"]}])
def test_no_gateway_for_the_location_says_so(otp_app: Flask, change: dict) -> None:
    with otp_app.app_context():
        session = otp_app.extensions["sms"].session
        session.execute(update(Gateway).values(**change))
        session.commit()
    assert_not_available(ask_code(otp_app.test_client()))
    assert count_rows(otp_app, Message) == 0


def test_a_message_that_already_failed_shows_no_code_form(otp_app: Flask) -> None:
    client = otp_app.test_client()
    assert ask_code(client).status_code == 200
    with otp_app.app_context():  # refused at once, say by a gateway that rejects the number
        session = otp_app.extensions["sms"].session
        session.execute(update(Message).values(status=Status.FAILED, last_error="Rejected."))
        session.commit()
    assert_not_available(client.post(PAGE, data={"sms_step": "code", "code": "123456"}))
    assert_not_available(client.post(PAGE, data={"sms_step": "resend"}))


# --- item 6: correcting a mistyped number ---


def test_a_different_number_is_served_at_once(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    assert ask_code(client, "+27831234500").status_code == 200  # the typo
    assert client.get(PAGE).status_code == 200  # "Use a different number"
    corrected = ask_code(client, PHONE)
    assert corrected.status_code == 200
    assert "+27 83 123 4567" in corrected.get_data(as_text=True)
    assert ask_code(client, PHONE).status_code == 429  # the cooldown is per phone
    latest_code(otp_app, simulator)  # both texts delivered, in either order
    [text] = [r.json["text"] for r in simulator.requests_for("custom") if r.json["to"] == PHONE]
    code = re.search(r"\d{6}", text)[0]
    assert client.post(PAGE, data={"sms_step": "code", "code": code}).status_code == 303
    assert otp_app.extensions["verified_guests"][0][0] == PHONE


# --- item 7 and 19: refresh, too many wrong codes, the error tied to its field ---


def test_a_refresh_does_not_spend_a_second_try(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    wrong = wrong_for(latest_code(otp_app, simulator))
    pages = [client.post(PAGE, data={"sms_step": "code", "code": wrong}) for _ in range(3)]
    assert [p.status_code for p in pages] == [400, 400, 400]
    errors = [WRONG_CODE_ERROR.search(p.get_data(as_text=True))[1] for p in pages]
    assert errors == ["That code is not right. 4 tries left."] * 3
    with otp_app.app_context():
        challenge = otp_app.extensions["sms"].session.scalar(select(OtpChallenge))
        assert challenge.failed_attempts == 1
    other = "222222" if wrong != "222222" else "333333"
    again = client.post(PAGE, data={"sms_step": "code", "code": other})
    assert "3 tries left" in again.get_data(as_text=True)


def test_the_code_error_is_tied_to_the_field(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    first = ask_code(client).get_data(as_text=True)
    assert "aria-invalid" not in re.search(r'<input type="text" id="code"[^>]*>', first)[0]
    wrong = wrong_for(latest_code(otp_app, simulator))
    page = client.post(PAGE, data={"sms_step": "code", "code": wrong}).get_data(as_text=True)
    field = re.search(r'<input type="text" id="code"[^>]*>', page)[0]
    assert 'aria-invalid="true"' in field and 'aria-describedby="code-error"' in field
    assert 'id="code-error"' in page


def test_too_many_wrong_codes_hides_the_code_form(otp_app: Flask, simulator) -> None:
    client = otp_app.test_client()
    ask_code(client)
    code = latest_code(otp_app, simulator)
    for wrong in [
        c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c != code
    ][:5]:
        last = client.post(PAGE, data={"sms_step": "code", "code": wrong})
    page = last.get_data(as_text=True)
    assert "Too many wrong codes. Ask for a new code." in page
    assert 'id="code"' not in page and 'name="sms_step" value="code"' not in page
    assert re.search(r'<button type="submit" class="" id="resend"', page)  # the main button
    assert "<h1>Ask for a new code</h1>" in page


# --- item 8: codes masked at rest and in every log ---


def test_the_code_is_never_stored_or_logged_in_clear(
    otp_app: Flask, simulator, caplog: pytest.LogCaptureFixture
) -> None:
    set_runtime(otp_app, debug_logging=True)
    client = otp_app.test_client()
    ask_code(client)
    with caplog.at_level(logging.INFO, logger="sms_ext"):
        code = latest_code(otp_app, simulator)
    assert "Your Wi-Fi code is" in caplog.text  # the attempt was logged ...
    assert code not in caplog.text  # ... without the code
    assert client.post(PAGE, data={"sms_step": "code", "code": code}).status_code == 303
    with otp_app.app_context():
        session = otp_app.extensions["sms"].session
        message = session.scalar(select(Message))
        assert message.body == "Your Wi-Fi code is ••••••\n\n@wifi.example.com #••••••"
        assert message.code_sealed is None  # sent: nothing kept to decrypt
        for table in metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                assert code not in repr(tuple(row)), (table.name, row)
    otp_app.extensions["sms"].registrations.admin_callback = lambda: True
    admin = otp_app.test_client()
    prefix = otp_app.extensions["sms"].settings.admin_url_prefix
    for path in ("/logs/", f"/logs/{message.id}", "/logs/export.csv"):
        response = admin.get(prefix + path)
        assert response.status_code == 200, path
        assert code not in response.get_data(as_text=True), path


def test_a_code_waiting_to_be_sent_is_kept_encrypted(otp_app: Flask) -> None:
    ask_code(otp_app.test_client())
    with otp_app.app_context():
        state = otp_app.extensions["sms"]
        message = state.session.scalar(select(Message))
        assert message.status == Status.QUEUED and "••••••" in message.body
        sealed = state.vault.open(message.code_sealed)
        assert sealed["text"] == message.body.replace("••••••", sealed["code"])
