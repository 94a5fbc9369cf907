"""The Twilio driver against the loopback simulator, through real HTTP sessions."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from sms_ext import GatewayConfigError
from sms_ext.gateways.base import OutgoingSMS, SendResult
from sms_ext.gateways.twilio import TwilioDriver
from tests.simulator import GatewaySimulator

SENDER = "+15005550006"
RECIPIENT = "+27831234567"
SERVICE_SID = "MG" + "0123456789abcdef" * 2
HEX32 = "0123456789abcdef" * 2


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def config(sim: GatewaySimulator, **overrides: Any) -> dict[str, Any]:
    """A valid config for the simulator's account, authenticating with the Auth Token."""
    settings = {
        "account_sid": sim.twilio.account_sid,
        "api_secret": sim.twilio.auth_token,
        "from_number": SENDER,
        "base_url": sim.url + "/twilio",
        "timeout": 5,
    }
    settings.update(overrides)
    return settings


def driver_for(sim: GatewaySimulator, session: requests.Session, **overrides: Any) -> TwilioDriver:
    return TwilioDriver(TwilioDriver.validate(config(sim, **overrides)), session)


def sms(to: str = RECIPIENT, body: str = "Your code is 123456") -> OutgoingSMS:
    return OutgoingSMS(reference="42", to=to, body=body)


def shown(result: SendResult) -> str:
    """Everything of a result an admin can read."""
    return "\n".join((result.request_summary, result.response_excerpt, result.error))


# -- sending ------------------------------------------------------------------------------------


def test_send_with_auth_token_posts_the_form_to_the_account(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    result = driver_for(simulator, session).send(sms())

    assert result.ok is True
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_id or "")
    assert result.http_status == 201
    assert result.error == ""
    assert result.retryable is False
    [request] = simulator.requests_for("twilio")
    assert request.method == "POST"
    assert (
        request.path == f"/twilio/2010-04-01/Accounts/{simulator.twilio.account_sid}/Messages.json"
    )
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {"To": [RECIPIENT], "From": [SENDER], "Body": ["Your code is 123456"]}
    assert request.basic_auth == (simulator.twilio.account_sid, simulator.twilio.auth_token)
    assert result.provider_id in result.response_excerpt


def test_send_with_api_key_keeps_the_account_sid_in_the_path(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    driver = driver_for(
        simulator,
        session,
        api_key=simulator.twilio.api_key,
        api_secret=simulator.twilio.api_secret,
    )

    result = driver.send(sms())

    assert result.ok is True
    [request] = simulator.requests_for("twilio")
    assert request.basic_auth == (simulator.twilio.api_key, simulator.twilio.api_secret)
    assert f"/Accounts/{simulator.twilio.account_sid}/" in request.path


def test_messaging_service_sid_replaces_from_and_status_callback_is_sent(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    callback = "https://portal.example/sms/status?gateway=3"
    driver = driver_for(simulator, session, from_number=SERVICE_SID, status_callback=callback)

    result = driver.send(sms(body="Héllo wörld & more"))

    assert result.ok is True
    [request] = simulator.requests_for("twilio")
    assert request.form == {
        "To": [RECIPIENT],
        "Body": ["Héllo wörld & more"],
        "MessagingServiceSid": [SERVICE_SID],
        "StatusCallback": [callback],
    }


def test_alphanumeric_sender_is_sent_as_from(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    result = driver_for(simulator, session, from_number="Cafe WiFi").send(sms())

    assert result.ok is True
    assert simulator.requests_for("twilio")[0].form["From"] == ["Cafe WiFi"]


# -- provider errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "error"),
    [
        (
            "+15005550001",
            "Twilio error 21211: The 'To' number +15005550001 is not a valid phone number.",
        ),
        ("+15005550009", "Twilio error 21614: 'To' number is not a valid mobile number"),
        ("+15005550004", "Twilio error 21610: Attempt to send to unsubscribed recipient"),
    ],
)
def test_refused_recipients_fail_for_good(
    simulator: GatewaySimulator, session: requests.Session, to: str, error: str
) -> None:
    result = driver_for(simulator, session).send(sms(to=to))

    assert result.ok is False
    assert result.http_status == 400
    assert result.error == error
    assert result.retryable is False
    assert result.provider_id is None


def test_wrong_secret_is_a_permanent_authentication_failure(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    result = driver_for(simulator, session, api_secret="wrong-secret-value").send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, 401, False)
    assert result.error == "Twilio error 20003: Authenticate"


def test_unknown_account_in_the_path_is_not_retried(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    other_account = "AC" + HEX32
    driver = driver_for(
        simulator,
        session,
        account_sid=other_account,
        api_key=simulator.twilio.api_key,
        api_secret=simulator.twilio.api_secret,
    )

    result = driver.send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, 404, False)
    assert result.error.startswith("Twilio error 20404: The requested resource ")
    assert other_account in simulator.requests_for("twilio")[0].path


def test_throttling_is_retryable_after_the_announced_delay(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    simulator.fail_next("twilio", "429", retry_after=7)

    result = driver_for(simulator, session).send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, 429, True)
    assert result.retry_after == 7.0
    assert result.error == "Twilio error 20429: Too Many Requests"


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("500", 500, "Twilio error 20500: Internal Server Error"),
        ("503", 503, "Twilio error 20503: Service Unavailable"),
        ("garbage", 200, "unexpected answer from Twilio (HTTP 200): no message SID in it"),
    ],
)
def test_server_trouble_is_retryable(
    simulator: GatewaySimulator,
    session: requests.Session,
    kind: str,
    status: int,
    error: str,
) -> None:
    simulator.fail_next("twilio", kind)

    result = driver_for(simulator, session).send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, status, True)
    assert result.error == error
    assert result.retry_after is None


def test_timeout_is_retryable(simulator: GatewaySimulator, session: requests.Session) -> None:
    simulator.timeout_seconds = 2.0  # the stalled handler is woken when the simulator stops
    simulator.fail_next("twilio", "timeout")

    result = driver_for(simulator, session, timeout=0.2).send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, None, True)
    assert result.error == "no answer within 0.2 s"
    assert 150 <= result.duration_ms < 1500


def test_connection_reset_is_retryable_and_the_next_send_works(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    simulator.fail_next("twilio", "reset")
    driver = driver_for(simulator, session)

    failed = driver.send(sms())
    sent = driver.send(sms())

    assert (failed.ok, failed.http_status, failed.retryable) == (False, None, True)
    assert failed.error.startswith("connection failed: ")
    assert sent.ok is True
    assert len(simulator.requests_for("twilio")) == 2


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_api_key", [False, True])
def test_secrets_never_show_in_results(
    simulator: GatewaySimulator, session: requests.Session, use_api_key: bool
) -> None:
    account = simulator.twilio
    secret = account.api_secret if use_api_key else account.auth_token
    driver = driver_for(
        simulator, session, api_key=account.api_key if use_api_key else "", api_secret=secret
    )

    # Twilio echoes the body, and names a refused number in its error: both carry the secret.
    echoed = driver.send(sms(body=f"leaked {secret} here"))
    refused = driver.send(sms(to=f"+{secret}"))

    assert echoed.ok is True
    assert refused.ok is False
    assert refused.error.startswith("Twilio error 21211: The 'To' number +****")
    for result in (echoed, refused):
        assert secret not in shown(result)
        assert "****" in result.request_summary
    assert "leaked **** here" in echoed.response_excerpt


# -- balance ------------------------------------------------------------------------------------


def test_balance_is_read_with_the_same_credentials(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    driver = driver_for(simulator, session)

    assert driver.check_balance() == Decimal("12.50")
    assert driver.last_error == ""
    [request] = simulator.requests_for("twilio")
    assert request.method == "GET"
    assert (
        request.path == f"/twilio/2010-04-01/Accounts/{simulator.twilio.account_sid}/Balance.json"
    )
    assert request.basic_auth == (simulator.twilio.account_sid, simulator.twilio.auth_token)


def test_balance_failures_return_none_with_the_reason(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    refused = driver_for(simulator, session, api_secret="not-the-token")
    driver = driver_for(simulator, session)

    assert refused.check_balance() is None
    assert refused.last_error == "Twilio error 20003: Authenticate"
    simulator.fail_next("twilio", "garbage")
    assert driver.check_balance() is None
    assert driver.last_error == "unexpected answer (HTTP 200): no balance in it"
    assert driver.check_balance() == Decimal("12.50")
    assert driver.last_error == ""


# -- validate -----------------------------------------------------------------------------------


def test_validate_normalises_a_good_config() -> None:
    checked = TwilioDriver.validate(
        {
            "account_sid": " AC" + HEX32 + " ",
            "api_key": "SK" + HEX32.upper(),
            "api_secret": "s3cret",
            "from_number": "+1 (415) 555-0100",
            "status_callback": "https://portal.example/dlr/",
        }
    )

    assert checked == {
        "account_sid": "AC" + HEX32,
        "api_key": "SK" + HEX32.upper(),
        "api_secret": "s3cret",
        "from_number": "+14155550100",
        "base_url": "https://api.twilio.com",
        "timeout": 10.0,
        "status_callback": "https://portal.example/dlr/",
    }


@pytest.mark.parametrize("sender", ["+27831234567", "WiFi 4 You", "A", SERVICE_SID])
def test_validate_accepts_each_kind_of_sender(sender: str) -> None:
    checked = TwilioDriver.validate(
        {"account_sid": "AC" + HEX32, "api_secret": "token", "from_number": sender}
    )

    assert checked["from_number"] == sender
    assert checked["api_key"] == ""


def test_validate_reports_every_missing_field_at_once() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        TwilioDriver.validate({})

    assert caught.value.errors == {
        "account_sid": "Account SID is required.",
        "api_secret": "API secret is required.",
        "from_number": "Sender is required.",
    }


BAD_SENDER = (
    "Sender must be an E.164 number (+14155550100), an alphanumeric sender ID of 1 to 11 "
    "letters, digits or spaces with at least one letter, or a Messaging Service SID "
    "(MG followed by 32 hexadecimal characters)."
)
BAD_NUMBER = (
    "Sender number must be in E.164 form: + then the country code and number, "
    "at most 15 digits (e.g. +14155550100)."
)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "account_sid",
            "SK" + HEX32,
            "Account SID must start with AC followed by 32 hexadecimal characters.",
        ),
        (
            "account_sid",
            "AC" + HEX32[:-1] + "g",
            "Account SID must start with AC followed by 32 hexadecimal characters.",
        ),
        (
            "api_key",
            "AC" + HEX32,
            "API key SID must start with SK followed by 32 hexadecimal characters.",
        ),
        ("from_number", "+0831234567", BAD_NUMBER),
        ("from_number", "+1234567890123456", BAD_NUMBER),
        ("from_number", "14155550100", BAD_SENDER),
        ("from_number", "Twelve chars", BAD_SENDER),
        ("from_number", "Café", BAD_SENDER),
        (
            "from_number",
            "MG" + HEX32[:-1],
            "Messaging Service SID must start with MG followed by 32 hexadecimal characters.",
        ),
        (
            "base_url",
            "ftp://api.twilio.com",
            "Base URL must be an absolute http:// or https:// URL.",
        ),
        ("timeout", "soon", "Timeout must be a number of seconds."),
        ("timeout", "600", "Timeout must be between 0.1 and 60 seconds."),
        (
            "status_callback",
            "portal.example/dlr",
            "Status callback URL must be an absolute http:// or https:// URL.",
        ),
    ],
)
def test_validate_refuses_a_bad_field(field: str, value: str, message: str) -> None:
    good = {"account_sid": "AC" + HEX32, "api_secret": "token", "from_number": SENDER}

    with pytest.raises(GatewayConfigError) as caught:
        TwilioDriver.validate({**good, field: value})

    assert caught.value.errors == {field: message}
