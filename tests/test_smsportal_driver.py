"""The SMSPortal driver against the loopback simulator, through real HTTP sessions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from sms_ext import GatewayConfigError
from sms_ext.gateways.base import OutgoingSMS, SendResult
from sms_ext.gateways.smsportal import SMSPortalDriver
from tests.simulator import GatewaySimulator, RecordedRequest

RECIPIENT = "+27831234567"


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def config(sim: GatewaySimulator, **overrides: Any) -> dict[str, Any]:
    settings = {
        "client_id": sim.smsportal.client_id,
        "api_secret": sim.smsportal.api_secret,
        "base_url": sim.url + "/smsportal/v1",
        "timeout": 5,
    }
    settings.update(overrides)
    return settings


def driver_for(
    sim: GatewaySimulator, session: requests.Session, **overrides: Any
) -> SMSPortalDriver:
    return SMSPortalDriver(SMSPortalDriver.validate(config(sim, **overrides)), session)


def sms(to: str = RECIPIENT, body: str = "Your code is 123456", ref: str = "1") -> OutgoingSMS:
    return OutgoingSMS(reference=ref, to=to, body=body)


def calls(sim: GatewaySimulator) -> list[tuple[str, str, int]]:
    """The SMSPortal requests as (method, path, answer status), in order."""
    return [(r.method, r.path, r.response_status) for r in sim.requests_for("smsportal")]


def bearer(request: RecordedRequest) -> str:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


def shown(result: SendResult) -> str:
    """Everything of a result an admin can read."""
    return "\n".join((result.request_summary, result.response_excerpt, result.error))


AUTH = ("GET", "/smsportal/v1/Authentication", 200)
SENT = ("POST", "/smsportal/v1/BulkMessages", 200)


# -- sending and the token ----------------------------------------------------------------------


def test_send_authenticates_then_posts_the_bulk_document(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    result = driver_for(simulator, session).send(sms())

    assert result.ok is True
    assert result.http_status == 200
    assert result.provider_id is not None and result.provider_id.isdigit()
    assert len(result.provider_id) == 11
    assert calls(simulator) == [AUTH, SENT]
    auth, send = simulator.requests_for("smsportal")
    assert auth.basic_auth == (simulator.smsportal.client_id, simulator.smsportal.api_secret)
    assert "authorization" in send.headers and send.basic_auth is None
    assert len(bearer(send)) > 20
    assert send.headers["content-type"] == "application/json"
    assert send.json == {
        "sendOptions": {"testMode": False},
        "messages": [
            {"content": "Your code is 123456", "destination": "27831234567", "customerId": "1"}
        ],
    }
    assert simulator.smsportal.balance == 1499


def test_token_is_fetched_once_and_shared_by_later_drivers(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    first = driver_for(simulator, session)
    with requests.Session() as other_session:
        second = driver_for(simulator, other_session)

        results = [first.send(sms()), second.send(sms()), first.send(sms())]
        balance = second.check_balance()

    assert [r.ok for r in results] == [True, True, True]
    assert balance == Decimal(1497)
    assert calls(simulator) == [AUTH, SENT, SENT, SENT, ("GET", "/smsportal/v1/Balance", 200)]
    tokens = {bearer(r) for r in simulator.requests_for("smsportal")[1:]}
    assert len(tokens) == 1


def test_concurrent_drivers_reuse_one_cached_token(simulator: GatewaySimulator) -> None:
    with requests.Session() as session:
        assert driver_for(simulator, session).send(sms()).ok
    results: list[SendResult] = []

    def send_one() -> None:
        with requests.Session() as own:
            results.append(driver_for(simulator, own).send(sms()))

    threads = [threading.Thread(target=send_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.ok for r in results] == [True] * 8
    assert calls(simulator).count(AUTH) == 1
    assert calls(simulator).count(SENT) == 9


def test_expired_token_is_replaced_once_and_the_send_repeated(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    driver = driver_for(simulator, session)
    assert driver.send(sms()).ok
    simulator.smsportal.expire_tokens()

    result = driver.send(sms())

    assert result.ok is True
    assert calls(simulator) == [
        AUTH,
        SENT,
        ("POST", "/smsportal/v1/BulkMessages", 401),
        AUTH,
        SENT,
    ]
    sends = simulator.requests_for("smsportal")
    assert bearer(sends[2]) == bearer(sends[1]) != bearer(sends[4])


def test_token_past_its_announced_lifetime_is_renewed_without_a_refusal(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    simulator.smsportal.token_minutes = 0.001  # type: ignore[assignment]  # 60 ms
    driver = driver_for(simulator, session)
    assert driver.send(sms()).ok
    time.sleep(0.05)

    assert driver.send(sms()).ok
    assert calls(simulator) == [AUTH, SENT, AUTH, SENT]


def test_wrong_credentials_fail_cleanly_with_one_request(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    result = driver_for(simulator, session, api_secret="wrong-secret-value").send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, 401, False)
    assert result.error == (
        "SMSPortal authentication failed: SMSPortal error InvalidCredentials: Invalid credentials"
    )
    assert calls(simulator) == [("GET", "/smsportal/v1/Authentication", 401)]


def test_refused_renewal_ends_after_one_attempt(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    driver = driver_for(simulator, session)
    assert driver.send(sms()).ok
    simulator.smsportal.expire_tokens()
    simulator.smsportal.api_secret = "rotated-at-the-provider"

    result = driver.send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, 401, False)
    assert result.error.startswith("SMSPortal authentication failed: ")
    assert calls(simulator)[2:] == [
        ("POST", "/smsportal/v1/BulkMessages", 401),
        ("GET", "/smsportal/v1/Authentication", 401),
    ]


def test_authentication_trouble_is_retryable(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    simulator.fail_next("smsportal", "503", retry_after=30)
    simulator.fail_next("smsportal", "garbage")
    driver = driver_for(simulator, session)

    unavailable = driver.send(sms())
    garbled = driver.send(sms())

    assert (unavailable.ok, unavailable.http_status, unavailable.retryable) == (False, 503, True)
    assert unavailable.retry_after == 30.0
    assert unavailable.error == (
        "SMSPortal authentication failed: SMSPortal error ServiceUnavailable: Service Unavailable"
    )
    assert (garbled.ok, garbled.retryable) == (False, True)
    assert garbled.error == "SMSPortal authentication failed: no token in the answer (HTTP 200)"
    assert calls(simulator) == [
        ("GET", "/smsportal/v1/Authentication", 503),
        ("GET", "/smsportal/v1/Authentication", 200),
    ]


# -- bulk sends ---------------------------------------------------------------------------------


def test_large_batch_goes_out_in_requests_of_100_with_results_in_order(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    batch = [sms(to=f"+2783{n:07d}", body=f"message {n}", ref=str(n)) for n in range(150)]

    results = driver_for(simulator, session).send_many(batch)

    assert len(results) == 150
    assert all(r.ok for r in results)
    assert calls(simulator) == [AUTH, SENT, SENT]
    first, second = (r.json["messages"] for r in simulator.requests_for("smsportal")[1:])
    assert [m["destination"] for m in first + second] == [f"2783{n:07d}" for n in range(150)]
    assert [m["content"] for m in first + second] == [f"message {n}" for n in range(150)]
    first_ids = {r.provider_id for r in results[:100]}
    second_ids = {r.provider_id for r in results[100:]}
    assert len(first_ids) == len(second_ids) == 1
    assert first_ids != second_ids
    assert simulator.smsportal.balance == 1500 - 150


def test_faults_fail_only_their_own_messages(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    batch = [sms(to="+27830000001"), sms(to="+123"), sms(to="+27830000002"), sms(to="+4567")]

    results = driver_for(simulator, session).send_many(batch)

    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].error == results[3].error == "SMSPortal fault: Invalid destination"
    assert [r.retryable for r in results] == [False] * 4
    assert results[0].provider_id == results[2].provider_id
    assert results[0].provider_id is not None and results[0].provider_id.isdigit()
    assert results[1].provider_id is None


def test_pascal_case_answers_and_plus_prefixed_faults_are_understood(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    # The custom route answers every path alike, so one PascalCase document serves as the
    # authentication, send and balance answer of an SMSPortal that follows its own docs.
    simulator.set_custom_response(
        body=json.dumps(
            {
                "Token": "pascal-token-0123456789",
                "ExpiresInMinutes": 5,
                "EventId": 987654321,
                "Balance": 77,
                "ErrorReport": {
                    "Faults": [{"Destination": "+27830000002", "ErrorMessage": "Opted out"}]
                },
            }
        )
    )
    driver = driver_for(simulator, session, base_url=simulator.url + "/custom")

    results = driver.send_many([sms(to="+27830000001"), sms(to="+27830000002")])

    assert [(r.ok, r.provider_id, r.error) for r in results] == [
        (True, "987654321", ""),
        (False, None, "SMSPortal fault: Opted out"),
    ]
    assert driver.check_balance() == Decimal(77)
    paths = [r.path for r in simulator.requests_for("custom")]
    assert paths == ["/custom/Authentication", "/custom/BulkMessages", "/custom/Balance"]
    assert bearer(simulator.requests_for("custom")[2]) == "pascal-token-0123456789"
    assert "pascal-token-0123456789" not in shown(results[0])


def test_insufficient_credits_is_permanent(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    simulator.smsportal.balance = 0

    results = driver_for(simulator, session).send_many([sms(), sms(to="+27830000001")])

    for result in results:
        assert (result.ok, result.http_status, result.retryable) == (False, 403, False)
        assert result.error == "SMSPortal error InsufficientCredits: Insufficient credits"


def test_throttling_is_retryable_after_the_announced_delay(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    driver = driver_for(simulator, session)
    assert driver.check_balance() == Decimal(1500)
    simulator.fail_next("smsportal", "429", retry_after=12)

    [result] = driver.send_many([sms()])

    assert (result.ok, result.http_status, result.retryable) == (False, 429, True)
    assert result.retry_after == 12.0
    assert result.error == "SMSPortal error TooManyRequests: Too Many Requests"


@pytest.mark.parametrize(
    ("kind", "status", "error"),
    [
        ("500", 500, "SMSPortal error InternalServerError: Internal Server Error"),
        ("503", 503, "SMSPortal error ServiceUnavailable: Service Unavailable"),
        ("garbage", 200, "unexpected answer from SMSPortal (HTTP 200): no eventId in it"),
        ("reset", None, "connection failed: ConnectionError"),
    ],
)
def test_server_trouble_on_send_is_retryable(
    simulator: GatewaySimulator,
    session: requests.Session,
    kind: str,
    status: int | None,
    error: str,
) -> None:
    driver = driver_for(simulator, session)
    assert driver.check_balance() == Decimal(1500)
    simulator.fail_next("smsportal", kind)

    results = driver.send_many([sms(), sms(to="+27830000001")])

    for result in results:
        assert (result.ok, result.http_status, result.retryable) == (False, status, True)
        assert result.error == error


def test_timeout_on_send_is_retryable(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    simulator.timeout_seconds = 0.5
    driver = driver_for(simulator, session, timeout=0.2)
    assert driver.check_balance() == Decimal(1500)
    simulator.fail_next("smsportal", "timeout")

    result = driver.send(sms())

    assert (result.ok, result.http_status, result.retryable) == (False, None, True)
    assert result.error == "no answer within 0.2 s"


# -- secrets ------------------------------------------------------------------------------------


def test_secret_and_token_never_show_in_results(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    secret = simulator.smsportal.api_secret
    driver = driver_for(simulator, session)
    assert driver.send(sms()).ok
    token = bearer(simulator.requests_for("smsportal")[1])

    # SMSPortal echoes the first message as "sample": a body carrying a secret comes back.
    echoed = driver.send(sms(body=f"secret {secret} token {token}"))
    refused = driver_for(simulator, session, api_secret=secret + "x").send(sms())

    assert echoed.ok is True
    assert "secret **** token ****" in echoed.response_excerpt
    assert "Authorization: Bearer ****" in echoed.request_summary
    assert refused.ok is False
    assert "Authorization: Basic ****" in refused.request_summary
    for result in (echoed, refused):
        assert secret not in shown(result)
        assert token not in shown(result)


# -- balance ------------------------------------------------------------------------------------


def test_balance_uses_the_token(simulator: GatewaySimulator, session: requests.Session) -> None:
    simulator.smsportal.balance = 1234
    driver = driver_for(simulator, session)

    assert driver.check_balance() == Decimal(1234)
    assert driver.last_error == ""
    assert calls(simulator) == [AUTH, ("GET", "/smsportal/v1/Balance", 200)]
    assert len(bearer(simulator.requests_for("smsportal")[1])) > 20


def test_balance_failures_return_none_with_the_reason(
    simulator: GatewaySimulator, session: requests.Session
) -> None:
    refused = driver_for(simulator, session, client_id="someone-else")
    driver = driver_for(simulator, session)

    assert refused.check_balance() is None
    assert refused.last_error == (
        "SMSPortal authentication failed: SMSPortal error InvalidCredentials: Invalid credentials"
    )
    assert driver.check_balance() == Decimal(1500)
    simulator.fail_next("smsportal", "503")
    assert driver.check_balance() is None
    assert driver.last_error == "SMSPortal error ServiceUnavailable: Service Unavailable"


# -- validate -----------------------------------------------------------------------------------


def test_validate_normalises_a_good_config() -> None:
    checked = SMSPortalDriver.validate(
        {"client_id": " abc123 ", "api_secret": "s3cret", "timeout": "2.5"}
    )

    assert checked == {
        "client_id": "abc123",
        "api_secret": "s3cret",
        "base_url": "https://rest.smsportal.com/v1",
        "timeout": 2.5,
    }


def test_validate_reports_every_missing_field_at_once() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        SMSPortalDriver.validate({"client_id": "  "})

    assert caught.value.errors == {
        "client_id": "Client ID is required.",
        "api_secret": "API secret is required.",
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "base_url",
            "rest.smsportal.com/v1",
            "Base URL must be an absolute http:// or https:// URL.",
        ),
        (
            "base_url",
            "https://rest.smsportal.com/v 1",
            "Base URL must not contain spaces or line breaks.",
        ),
        ("timeout", "0", "Timeout must be between 0.1 and 60 seconds."),
        ("timeout", "fast", "Timeout must be a number of seconds."),
    ],
)
def test_validate_refuses_a_bad_field(field: str, value: str, message: str) -> None:
    good = {"client_id": "abc123", "api_secret": "s3cret"}

    with pytest.raises(GatewayConfigError) as caught:
        SMSPortalDriver.validate({**good, field: value})

    assert caught.value.errors == {field: message}
