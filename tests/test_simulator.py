"""The gateway simulator, over real HTTP: every driver test trusts what it imitates."""

from __future__ import annotations

import json
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from tests.simulator import TRICKLE_LENGTH, GatewaySimulator, count_segments

SMS_SID = re.compile(r"^SM[0-9a-f]{32}$")
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def simulator() -> Iterator[GatewaySimulator]:
    """Defined here too, so this file runs without conftest's database and Redis imports."""
    with GatewaySimulator() as sim:
        yield sim


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def messages_url(sim: GatewaySimulator, account_sid: str | None = None) -> str:
    sid = account_sid or sim.twilio.account_sid
    return f"{sim.url}/twilio/2010-04-01/Accounts/{sid}/Messages.json"


def token_auth(sim: GatewaySimulator) -> tuple[str, str]:
    return (sim.twilio.account_sid, sim.twilio.auth_token)


def key_auth(sim: GatewaySimulator) -> tuple[str, str]:
    return (sim.twilio.api_key, sim.twilio.api_secret)


def portal_auth(sim: GatewaySimulator) -> tuple[str, str]:
    return (sim.smsportal.client_id, sim.smsportal.api_secret)


def portal_token(sim: GatewaySimulator, http: requests.Session) -> dict[str, str]:
    response = http.get(f"{sim.url}/smsportal/v1/Authentication", auth=portal_auth(sim))
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['token']}"}


def portal_send(
    sim: GatewaySimulator, http: requests.Session, payload: object, headers: dict[str, str]
) -> requests.Response:
    return http.post(f"{sim.url}/smsportal/v1/BulkMessages", json=payload, headers=headers)


# -- accounts ------------------------------------------------------------------------------


def test_credentials_are_random_per_instance() -> None:
    first, second = GatewaySimulator(), GatewaySimulator()
    assert re.fullmatch(r"AC[0-9a-f]{32}", first.twilio.account_sid)
    assert re.fullmatch(r"SK[0-9a-f]{32}", first.twilio.api_key)
    assert first.twilio.auth_token != second.twilio.auth_token
    assert first.smsportal.client_id != second.smsportal.client_id
    assert (first.twilio.balance, first.twilio.currency) == ("12.50", "USD")
    assert (first.smsportal.balance, first.smsportal.token_minutes) == (1500, 1440)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_count_segments_boundaries(text: str, parts: int) -> None:
    assert count_segments(text) == parts


# -- Twilio --------------------------------------------------------------------------------


def test_twilio_send_with_auth_token(simulator: GatewaySimulator, http: requests.Session) -> None:
    form = {"To": "+27831234567", "From": "+15005550006", "Body": "Your code is 123456"}
    response = http.post(messages_url(simulator), data=form, auth=token_auth(simulator))

    assert response.status_code == 201
    message = response.json()
    assert SMS_SID.match(message["sid"])
    assert message["account_sid"] == simulator.twilio.account_sid
    assert (message["to"], message["from"], message["body"]) == (
        "+27831234567",
        "+15005550006",
        "Your code is 123456",
    )
    assert message["status"] == "queued"
    assert message["messaging_service_sid"] is None
    assert message["num_segments"] == "1"
    assert message["num_media"] == "0"
    assert message["direction"] == "outbound-api"
    assert message["api_version"] == "2010-04-01"
    assert message["price"] is None and message["price_unit"] == "USD"
    assert message["error_code"] is None and message["error_message"] is None
    assert abs(parsedate_to_datetime(message["date_created"]).timestamp() - time.time()) < 5
    assert message["uri"].endswith(f"/Messages/{message['sid']}.json")

    [recorded] = simulator.requests_for("twilio")
    assert recorded.method == "POST"
    assert (
        recorded.path == f"/twilio/2010-04-01/Accounts/{simulator.twilio.account_sid}/Messages.json"
    )
    assert recorded.form == {k: [v] for k, v in form.items()}
    assert recorded.basic_auth == token_auth(simulator)
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorded.response_status == 201


def test_twilio_send_with_api_key_and_messaging_service(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    form = {"To": "+27831234567", "MessagingServiceSid": "MG" + "0" * 32, "Body": "ж" * 71}
    response = http.post(messages_url(simulator), data=form, auth=key_auth(simulator))

    assert response.status_code == 201
    message = response.json()
    assert message["from"] is None
    assert message["messaging_service_sid"] == "MG" + "0" * 32
    assert message["status"] == "accepted"
    assert message["num_segments"] == "2"


def test_twilio_api_key_sid_in_path_is_not_found(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    url = messages_url(simulator, account_sid=simulator.twilio.api_key)
    form = {"To": "+27831234567", "From": "+15005550006", "Body": "Hi"}
    response = http.post(url, data=form, auth=key_auth(simulator))

    assert response.status_code == 404
    assert response.json()["code"] == 20404
    assert response.json()["status"] == 404


@pytest.mark.parametrize(
    "bad_auth",
    [
        lambda sim: None,
        lambda sim: ("AC" + "0" * 32, "nope"),
        lambda sim: (sim.twilio.api_key, sim.twilio.auth_token),
        lambda sim: (sim.twilio.account_sid, sim.twilio.api_secret),
    ],
    ids=["missing", "wrong", "token-with-key", "secret-with-account"],
)
def test_twilio_bad_credentials(
    simulator: GatewaySimulator,
    http: requests.Session,
    bad_auth: Callable[[GatewaySimulator], tuple[str, str] | None],
) -> None:
    form = {"To": "+27831234567", "From": "+15005550006", "Body": "Hi"}
    response = http.post(messages_url(simulator), data=form, auth=bad_auth(simulator))

    assert response.status_code == 401
    assert response.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        ({"To": None}, 21211, "The 'To' number  is not a valid phone number."),
        ({"To": "0831234567"}, 21211, "The 'To' number 0831234567 is not a valid phone number."),
        ({"To": "+0831234567"}, 21211, "The 'To' number +0831234567 is not a valid phone number."),
        ({"From": None}, 21603, "A 'From' phone number is required."),
        ({"Body": None}, 21602, "Message body is required."),
        ({"Body": ""}, 21602, "Message body is required."),
        ({"Body": "x" * 1601}, 21617, "exceeds the 1600 character limit"),
        ({"To": "+15005550001"}, 21211, "+15005550001 is not a valid phone number"),
        ({"To": "+15005550009"}, 21614, "'To' number is not a valid mobile number"),
        ({"To": "+15005550004"}, 21610, "unsubscribed recipient"),
    ],
)
def test_twilio_rejects_invalid_messages(
    simulator: GatewaySimulator,
    http: requests.Session,
    changes: dict[str, str | None],
    code: int,
    message: str,
) -> None:
    form = {"To": "+27831234567", "From": "+15005550006", "Body": "Hi"} | changes
    sent = {name: value for name, value in form.items() if value is not None}
    response = http.post(messages_url(simulator), data=sent, auth=token_auth(simulator))

    assert response.status_code == 400
    error = response.json()
    assert error["code"] == code
    assert error["status"] == 400
    assert message in error["message"]
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


def test_twilio_body_of_1600_chars_is_accepted(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    form = {"To": "+27831234567", "From": "+15005550006", "Body": "x" * 1600}
    response = http.post(messages_url(simulator), data=form, auth=token_auth(simulator))

    assert response.status_code == 201
    assert response.json()["num_segments"] == "11"


@pytest.mark.parametrize("auth", [token_auth, key_auth])
def test_twilio_balance(
    simulator: GatewaySimulator,
    http: requests.Session,
    auth: Callable[[GatewaySimulator], tuple[str, str]],
) -> None:
    sid = simulator.twilio.account_sid
    url = f"{simulator.url}/twilio/2010-04-01/Accounts/{sid}/Balance.json"
    response = http.get(url, auth=auth(simulator))

    assert response.status_code == 200
    assert response.json() == {"account_sid": sid, "balance": "12.50", "currency": "USD"}


# -- SMSPortal -----------------------------------------------------------------------------


def test_smsportal_authenticate_send_and_balance(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    auth = http.get(f"{simulator.url}/smsportal/v1/Authentication", auth=portal_auth(simulator))
    assert auth.status_code == 200
    assert auth.json()["schema"] == "JWT"
    assert auth.json()["expiresInMinutes"] == 1440
    headers = {"Authorization": f"Bearer {auth.json()['token']}"}

    payload = {
        "sendOptions": {"testMode": False},
        "messages": [
            {"content": "Code 1234", "destination": "27830000000"},
            {"content": "x" * 161, "destination": "27830000001"},
        ],
    }
    response = portal_send(simulator, http, payload, headers)

    assert response.status_code == 200
    result = response.json()
    assert isinstance(result["eventId"], int)
    del result["eventId"]
    assert result == {
        "cost": 3,
        "remainingBalance": 1497,
        "sample": "Code 1234",
        "messages": 2,
        "parts": 3,
        "errorReport": {"noNetwork": 0, "duplicates": 0, "optedOuts": 0, "faults": []},
    }
    assert simulator.smsportal.balance == 1497
    balance = http.get(f"{simulator.url}/smsportal/v1/Balance", headers=headers)
    assert balance.json() == {"balance": 1497}
    assert simulator.requests_for("smsportal")[1].json == payload


def test_smsportal_bad_credentials(simulator: GatewaySimulator, http: requests.Session) -> None:
    url = f"{simulator.url}/smsportal/v1/Authentication"
    response = http.get(url, auth=(simulator.smsportal.client_id, "wrong"))

    assert response.status_code == 401
    assert response.json() == {
        "errors": [{"errorCode": "InvalidCredentials", "errorMessage": "Invalid credentials"}]
    }


def test_smsportal_unknown_token(simulator: GatewaySimulator, http: requests.Session) -> None:
    response = http.get(
        f"{simulator.url}/smsportal/v1/Balance", headers={"Authorization": "Bearer forged"}
    )

    assert response.status_code == 401
    assert response.json()["errors"][0]["errorCode"] == "InvalidToken"


def test_smsportal_expired_token_then_reauthenticate(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    old = portal_token(simulator, http)
    simulator.smsportal.expire_tokens()
    payload = {"messages": [{"content": "Hi", "destination": "27830000000"}]}
    response = portal_send(simulator, http, payload, old)

    assert response.status_code == 401
    assert response.json() == {
        "errors": [
            {"errorCode": "AuthenticationToken.Expired", "errorMessage": "Token has expired"}
        ]
    }
    assert simulator.smsportal.balance == 1500
    fresh = portal_token(simulator, http)
    assert fresh != old
    assert portal_send(simulator, http, payload, fresh).status_code == 200


def test_smsportal_zero_token_lifetime_expires_at_once(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.smsportal.token_minutes = 0
    response = http.get(
        f"{simulator.url}/smsportal/v1/Balance", headers=portal_token(simulator, http)
    )

    assert response.json()["errors"][0]["errorCode"] == "AuthenticationToken.Expired"


def test_smsportal_pascal_case_basic_auth_lowercase_path_test_mode(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    payload = {
        "SendOptions": {"TestMode": True},
        "Messages": [{"Content": "Hello", "Destination": "+27830000000"}],
    }
    response = http.post(
        f"{simulator.url}/smsportal/v1/bulkmessages", json=payload, auth=portal_auth(simulator)
    )

    assert response.status_code == 200
    result = response.json()
    assert (result["cost"], result["messages"], result["sample"]) == (1, 1, "Hello")
    assert result["remainingBalance"] == 1500
    assert simulator.smsportal.balance == 1500


def test_smsportal_invalid_destinations_are_faults_and_free(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    payload = {
        "messages": [
            {"content": "A", "destination": "abc"},
            {"content": "B", "destination": "123"},
            {"content": "C", "destination": "27830000000"},
        ]
    }
    response = portal_send(simulator, http, payload, portal_token(simulator, http))

    assert response.status_code == 200
    result = response.json()
    assert result["errorReport"]["faults"] == [
        {"destination": "abc", "errorMessage": "Invalid destination"},
        {"destination": "123", "errorMessage": "Invalid destination"},
    ]
    assert (result["messages"], result["cost"], result["remainingBalance"]) == (1, 1, 1499)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"messages": [{"content": "Hi", "destination": "27830000000"}] * 101}),
        '{"messages": [',
        json.dumps({"messages": []}),
        json.dumps(["not", "an", "object"]),
    ],
    ids=["101-messages", "malformed-json", "no-messages", "not-an-object"],
)
def test_smsportal_rejects_bad_requests(
    simulator: GatewaySimulator, http: requests.Session, body: str
) -> None:
    headers = portal_token(simulator, http) | {"Content-Type": "application/json"}
    response = http.post(f"{simulator.url}/smsportal/v1/BulkMessages", data=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["errors"][0]["errorCode"] == "InvalidRequest"
    assert simulator.smsportal.balance == 1500


def test_smsportal_insufficient_credits(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.smsportal.balance = 1
    payload = {"messages": [{"content": "x" * 161, "destination": "27830000000"}]}
    response = portal_send(simulator, http, payload, portal_token(simulator, http))

    assert response.status_code == 403
    assert response.json() == {
        "errors": [{"errorCode": "InsufficientCredits", "errorMessage": "Insufficient credits"}]
    }
    assert simulator.smsportal.balance == 1


# -- custom --------------------------------------------------------------------------------


def test_custom_default_response(simulator: GatewaySimulator, http: requests.Session) -> None:
    first = http.post(f"{simulator.url}/custom/send", data={"to": "27830000000"})
    second = http.put(f"{simulator.url}/custom/a/b?apiKey=k&to=1&to=2")

    for response in (first, second):
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["status"] == "ok"
        assert HEX_ID.match(response.json()["messageId"])
    assert first.json()["messageId"] != second.json()["messageId"]
    recorded = simulator.requests_for("custom")
    assert [(r.method, r.path) for r in recorded] == [
        ("POST", "/custom/send"),
        ("PUT", "/custom/a/b"),
    ]
    assert recorded[0].form == {"to": ["27830000000"]}
    assert recorded[1].query == {"apiKey": ["k"], "to": ["1", "2"]}


def test_custom_configured_response(simulator: GatewaySimulator, http: requests.Session) -> None:
    simulator.set_custom_response(202, "queued: 42", {"content-type": "text/plain", "X-Id": "42"})
    response = http.get(f"{simulator.url}/custom/send")

    assert response.status_code == 202
    assert response.text == "queued: 42"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["X-Id"] == "42"

    simulator.set_custom_response()
    assert HEX_ID.match(http.get(f"{simulator.url}/custom/send").json()["messageId"])


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "expected"),
    [
        (
            "twilio",
            "/twilio/x",
            {
                "code": 20503,
                "message": "Service Unavailable",
                "more_info": "https://www.twilio.com/docs/errors/20503",
                "status": 503,
            },
        ),
        (
            "smsportal",
            "/smsportal/v1/Balance",
            {
                "errors": [
                    {"errorCode": "ServiceUnavailable", "errorMessage": "Service Unavailable"}
                ]
            },
        ),
        ("custom", "/custom/x", {"error": "Service Unavailable"}),
    ],
)
def test_status_faults_answer_in_the_target_shape(
    simulator: GatewaySimulator,
    http: requests.Session,
    target: str,
    path: str,
    expected: dict[str, object],
) -> None:
    simulator.fail_next(target, "503")
    response = http.get(simulator.url + path)

    assert response.status_code == 503
    assert response.json() == expected
    assert simulator.requests_for(target)[0].response_status == 503


def test_500_fault_then_normal_answer(simulator: GatewaySimulator, http: requests.Session) -> None:
    simulator.fail_next("twilio", "500")
    form = {"To": "+27831234567", "From": "+15005550006", "Body": "Hi"}
    failed = http.post(messages_url(simulator), data=form, auth=token_auth(simulator))
    retried = http.post(messages_url(simulator), data=form, auth=token_auth(simulator))

    assert failed.status_code == 500
    assert failed.json()["code"] == 20500
    assert retried.status_code == 201
    assert [r.response_status for r in simulator.requests] == [500, 201]


def test_429_fault_with_and_without_retry_after(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.fail_next("twilio", "429", retry_after=7)
    simulator.fail_next("twilio", "429")
    first = http.get(f"{simulator.url}/twilio/x")
    second = http.get(f"{simulator.url}/twilio/x")

    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert "Retry-After" not in second.headers
    assert first.json()["code"] == 20429


def test_garbage_fault(simulator: GatewaySimulator, http: requests.Session) -> None:
    simulator.fail_next("smsportal", "garbage")
    response = http.get(f"{simulator.url}/smsportal/v1/Balance")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html"
    assert response.content == b"<html>\x00not json"


def test_timeout_fault_stalls_then_closes(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.timeout_seconds = 0.3
    simulator.fail_next("custom", "timeout", count=2)

    with pytest.raises(requests.ReadTimeout):
        http.get(f"{simulator.url}/custom/x", timeout=0.1)
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        http.get(f"{simulator.url}/custom/x", timeout=5)
    assert 0.25 <= time.monotonic() - started < 3
    assert [r.response_status for r in simulator.requests] == [0, 0]
    assert http.get(f"{simulator.url}/custom/x", timeout=5).status_code == 200


def test_reset_fault(simulator: GatewaySimulator, http: requests.Session) -> None:
    simulator.fail_next("custom", "reset")
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        http.post(f"{simulator.url}/custom/x", data="a=1", timeout=5)

    assert time.monotonic() - started < 1
    [recorded] = simulator.requests
    assert (recorded.response_status, recorded.body) == (0, b"a=1")
    assert http.get(f"{simulator.url}/custom/x", timeout=5).status_code == 200


def test_faults_are_fifo_and_per_target(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.fail_next("custom", "503", count=2)
    simulator.fail_next("custom", "500")
    simulator.fail_next("twilio", "429")

    statuses = [http.get(f"{simulator.url}/custom/x").status_code for _ in range(4)]

    assert statuses == [503, 503, 500, 200]
    assert http.get(f"{simulator.url}/twilio/x").status_code == 429


def test_clear_forgets_requests_and_faults(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.fail_next("custom", "503")
    http.get(f"{simulator.url}/custom/x")
    simulator.fail_next("custom", "500")
    simulator.clear()

    assert simulator.requests == []
    assert http.get(f"{simulator.url}/custom/x").status_code == 200


def test_fail_next_rejects_unknown_names(simulator: GatewaySimulator) -> None:
    with pytest.raises(ValueError, match="Unknown fault kind 'boom'"):
        simulator.fail_next("custom", "boom")
    with pytest.raises(ValueError, match="Unknown target 'vonage'"):
        simulator.fail_next("vonage", "500")


# -- control over HTTP ---------------------------------------------------------------------


def test_control_accounts(simulator: GatewaySimulator, http: requests.Session) -> None:
    accounts = http.get(f"{simulator.url}/_sim/accounts").json()

    twilio, portal = simulator.twilio, simulator.smsportal
    assert accounts == {
        "twilio": {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "api_key": twilio.api_key,
            "api_secret": twilio.api_secret,
            "balance": "12.50",
            "currency": "USD",
        },
        "smsportal": {
            "client_id": portal.client_id,
            "api_secret": portal.api_secret,
            "balance": 1500,
            "token_minutes": 1440,
        },
    }
    assert simulator.requests == []


def test_control_requests_lists_gateway_requests_only(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    before = time.time()
    http.post(f"{simulator.url}/custom/send?x=1", data="hello=world")
    listed = http.get(f"{simulator.url}/_sim/requests").json()

    assert len(listed) == 1
    entry = listed[0]
    assert (entry["target"], entry["method"], entry["path"]) == ("custom", "POST", "/custom/send")
    assert entry["query"] == {"x": ["1"]}
    assert entry["body"] == "hello=world"
    assert entry["headers"]["content-length"] == "11"
    assert (entry["response_status"], entry["fault"]) == (200, None)
    assert before <= entry["received_at"] <= time.time()


def test_control_fail_latency_and_reset(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    fail = {"target": "custom", "kind": "503", "count": 1, "retry_after": 2}
    assert http.post(f"{simulator.url}/_sim/fail", json=fail).status_code == 200
    faulted = http.get(f"{simulator.url}/custom/x")
    assert (faulted.status_code, faulted.headers["Retry-After"]) == (503, "2")

    assert http.post(f"{simulator.url}/_sim/latency", json={"seconds": 0.2}).status_code == 200
    assert simulator.latency == 0.2
    started = time.monotonic()
    assert http.get(f"{simulator.url}/custom/x").status_code == 200
    assert time.monotonic() - started >= 0.2
    assert http.post(f"{simulator.url}/_sim/latency", json={"seconds": 0}).status_code == 200

    assert len(simulator.requests) == 2
    assert http.post(f"{simulator.url}/_sim/reset").status_code == 200
    assert simulator.requests == []


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/_sim/fail", {"target": "custom", "kind": "boom"}, 400),
        ("/_sim/fail", {"kind": "500"}, 400),
        ("/_sim/latency", {"seconds": "slow"}, 400),
        ("/_sim/latency", [1], 400),
        ("/_sim/nothing", {}, 404),
    ],
)
def test_control_rejects_bad_calls(
    simulator: GatewaySimulator, http: requests.Session, path: str, payload: object, status: int
) -> None:
    response = http.post(simulator.url + path, json=payload)

    assert response.status_code == status
    assert response.json()["error"]
    assert simulator.latency == 0.0


def test_command_line_server_runs_until_sigterm() -> None:
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.simulator", "--port", "0", "--latency", "0.01"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().split()
        accounts = json.loads(process.stdout.readline())
        assert banner[0] == "SIMULATOR"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", banner[1])
        assert re.fullmatch(r"AC[0-9a-f]{32}", accounts["twilio"]["account_sid"])
        sid, token = accounts["twilio"]["account_sid"], accounts["twilio"]["auth_token"]
        balance = requests.get(
            f"{banner[1]}/twilio/2010-04-01/Accounts/{sid}/Balance.json", auth=(sid, token)
        )
        assert balance.json()["balance"] == "12.50"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


# -- HTTP behaviour ------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    for _ in range(5):
        response = http.post(f"{simulator.url}/custom/send", data={"n": "1"})
        assert response.headers["Content-Length"] == str(len(response.content))

    ports = {request.client_address[1] for request in simulator.requests}
    assert len(simulator.requests) == 5
    assert len(ports) == 1


def test_malformed_requests_get_400_and_server_survives(simulator: GatewaySimulator) -> None:
    host, port = simulator.url.removeprefix("http://").split(":")
    for raw in (
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1 extra words\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"POST /custom/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /custom/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            connection.sendall(raw)
            assert connection.recv(4096).split(b"\r\n")[0].split(b" ")[1] == b"400"

    assert requests.get(f"{simulator.url}/custom/x", timeout=5).status_code == 200
    assert requests.get(f"{simulator.url}/elsewhere", timeout=5).status_code == 404


def test_wait_for_requests(simulator: GatewaySimulator) -> None:
    def send_later() -> None:
        time.sleep(0.1)
        requests.post(f"{simulator.url}/custom/late", timeout=5)

    sender = threading.Thread(target=send_later)
    sender.start()
    [recorded] = simulator.wait_for_requests(1, target="custom", timeout=5)
    sender.join()
    assert recorded.path == "/custom/late"

    with pytest.raises(AssertionError, match=r"expected 1 twilio request\(s\) within 0.1s, got 0"):
        simulator.wait_for_requests(1, target="twilio", timeout=0.1)


def test_concurrent_clients_are_all_recorded(simulator: GatewaySimulator) -> None:
    def client() -> None:
        with requests.Session() as session:
            for _ in range(25):
                assert session.post(f"{simulator.url}/custom/x", data="a").status_code == 200

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(simulator.wait_for_requests(200, target="custom")) == 200
    assert len({request.client_address[1] for request in simulator.requests}) == 8


def test_stop_closes_kept_alive_connections(http: requests.Session) -> None:
    with GatewaySimulator() as sim:
        assert http.get(f"{sim.url}/custom/x").status_code == 200
    with pytest.raises(requests.ConnectionError):
        http.get(f"{sim.url}/custom/x", timeout=5)


def test_constructor_latency_delays_gateway_answers(http: requests.Session) -> None:
    with GatewaySimulator(latency=0.15) as sim:
        started = time.monotonic()
        http.get(f"{sim.url}/custom/x")
        assert time.monotonic() - started >= 0.15
        started = time.monotonic()
        http.get(f"{sim.url}/_sim/accounts")
        assert time.monotonic() - started < 0.15


# -- measuring: concurrency, rate, arrivals ------------------------------------------------


def test_200_parallel_connections_are_all_held_at_once(simulator: GatewaySimulator) -> None:
    # One client thread opens every connection: client threads would contend for the GIL and
    # spread the arrivals. The latency, far longer than that spread, makes the peak exact.
    simulator.latency = 1.5
    host, port = simulator.url.removeprefix("http://").split(":")
    connections = []
    started = time.monotonic()
    for target in ["custom"] * 100 + ["twilio"] * 100:
        connection = socket.create_connection((host, int(port)), timeout=10)
        connection.sendall(f"GET /{target}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        connections.append(connection)
    statuses = []
    for connection in connections:
        with connection, connection.makefile("rb") as answer:
            statuses.append(int(answer.readline().split()[1]))

    assert time.monotonic() - started < 5  # the latencies overlapped instead of adding up
    assert Counter(statuses) == {200: 100, 401: 100}
    simulator.wait_idle(timeout=2)
    assert (simulator.in_flight, simulator.max_in_flight) == (0, 200)
    assert simulator.max_in_flight_for("custom") == simulator.max_in_flight_for("twilio") == 100
    assert simulator.max_in_flight_for("smsportal") == 0
    simulator.clear()
    assert (simulator.max_in_flight, simulator.max_in_flight_for("custom")) == (0, 0)


def test_in_flight_lasts_until_the_answer_and_clear_keeps_held_requests(
    simulator: GatewaySimulator,
) -> None:
    simulator.latency = 0.4
    sender = threading.Thread(target=requests.get, args=(f"{simulator.url}/custom/x",))
    sender.start()
    deadline = time.monotonic() + 2
    while not simulator.arrivals and time.monotonic() < deadline:
        time.sleep(0.01)

    assert (simulator.in_flight, simulator.max_in_flight) == (1, 1)
    assert simulator.requests == []  # recorded when answered
    assert simulator.arrivals[0].response_status == 0
    simulator.clear()
    assert simulator.max_in_flight == 1  # still held: the peak cannot drop below it
    sender.join()
    simulator.wait_idle(timeout=2)
    assert simulator.in_flight == 0
    assert simulator.requests[0].response_status == 200


def test_wait_idle_waits_for_requests_the_client_gave_up_on(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.latency = 0.3
    with pytest.raises(requests.ReadTimeout):
        http.get(f"{simulator.url}/custom/x", timeout=0.05)
    with pytest.raises(AssertionError, match=r"1 request\(s\) still in flight after 0.01s"):
        simulator.wait_idle(timeout=0.01)

    simulator.wait_idle(timeout=2)
    [recorded] = simulator.requests
    assert recorded.response_status == 200


def test_max_rate_slides_a_window_over_arrivals(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    for _ in range(5):
        http.get(f"{simulator.url}/custom/x")
    time.sleep(0.3)
    for _ in range(3):
        http.get(f"{simulator.url}/custom/x")
    http.get(f"{simulator.url}/twilio/x")

    assert simulator.max_rate("custom", window=0.2) == 5
    assert simulator.max_rate("custom", window=10) == 8
    assert simulator.max_rate(window=10) == 9
    assert simulator.max_rate("smsportal") == 0
    with pytest.raises(ValueError, match="window must be positive"):
        simulator.max_rate(window=0)
    arrived = [r.received_at for r in simulator.arrivals]
    assert arrived == sorted(arrived)


def test_arrivals_by_recipient_counts_accepted_and_all(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    def twilio(to: str) -> None:
        form = {"To": to, "From": "+15005550006", "Body": "Hi"}
        http.post(messages_url(simulator), data=form, auth=token_auth(simulator))

    twilio("+27830000001")
    twilio("+27830000001")  # a duplicate
    simulator.fail_next("twilio", "503")
    twilio("+27830000002")  # lost
    twilio("+15005550001")  # rejected by the gateway
    portal = portal_token(simulator, http)
    bulk = {"messages": [{"content": "A", "destination": d} for d in ("27830000003", "abc")]}
    portal_send(simulator, http, bulk, portal)
    simulator.fail_next("smsportal", "garbage")  # a 200, but not the gateway's
    portal_send(
        simulator, http, {"messages": [{"content": "B", "destination": "27830000004"}]}, portal
    )
    http.post(f"{simulator.url}/custom/send", json={"to": "27830000005", "ref": "r5"})
    http.post(f"{simulator.url}/custom/send", data={"to": "27830000006", "ref": "r6"})
    simulator.fail_next("custom", "reset")
    with pytest.raises(requests.ConnectionError):
        http.post(f"{simulator.url}/custom/send", json={"to": "27830000007", "ref": "r7"})

    assert simulator.arrivals_by_recipient() == {
        "+27830000001": 2,
        "27830000003": 1,
        "27830000005": 1,
        "27830000006": 1,
    }
    assert simulator.arrivals_by_recipient("twilio", accepted_only=False) == {
        "+27830000001": 2,
        "+27830000002": 1,
        "+15005550001": 1,
    }
    assert simulator.arrivals_by_recipient("smsportal", accepted_only=False) == {
        "27830000003": 1,
        "abc": 1,
        "27830000004": 1,
    }
    by_ref = simulator.arrivals_by_recipient(
        "custom",
        recipient=lambda r: [r.json["ref"]] if r.json else r.form["ref"],
        accepted_only=False,
    )
    assert by_ref == {"r5": 1, "r6": 1, "r7": 1}
    faults = [r.fault for r in simulator.requests]
    assert faults == [None, None, "503", None, None, None, "garbage", None, None, "reset"]


def test_fail_always_until_stopped_after_queued_faults(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    simulator.fail_always("custom", "503", retry_after=4)
    simulator.fail_next("custom", "429")
    answers = [http.get(f"{simulator.url}/custom/x") for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 503, 503]
    assert answers[2].headers["Retry-After"] == "4"
    assert http.get(f"{simulator.url}/twilio/x").status_code == 401  # other targets unaffected
    simulator.stop_failing("custom")
    assert http.get(f"{simulator.url}/custom/x").status_code == 200
    simulator.fail_always("custom", "500")
    simulator.clear()
    assert http.get(f"{simulator.url}/custom/x").status_code == 200
    with pytest.raises(ValueError, match="Unknown fault kind 'boom'"):
        simulator.fail_always("custom", "boom")


def test_fail_always_timeout_for_every_message(simulator: GatewaySimulator) -> None:
    simulator.timeout_seconds = 0.2
    simulator.fail_always("twilio", "timeout")
    for _ in range(3):
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{simulator.url}/twilio/x", timeout=5)

    assert [r.fault for r in simulator.requests_for("twilio")] == ["timeout"] * 3
    simulator.stop_failing()
    assert requests.get(f"{simulator.url}/custom/x", timeout=5).status_code == 200


def test_latency_per_target(simulator: GatewaySimulator, http: requests.Session) -> None:
    def duration(target: str) -> float:
        started = time.monotonic()
        http.get(f"{simulator.url}/{target}/x")
        return time.monotonic() - started

    simulator.set_latency("twilio", 0.25)
    assert duration("twilio") >= 0.25
    assert duration("custom") < 0.2
    simulator.latency = 0.1
    assert simulator.latency_for("custom") == 0.1
    assert simulator.latency_for("twilio") == 0.25
    simulator.set_latency("twilio", None)
    assert simulator.latency_for("twilio") == 0.1


# -- streaming faults ----------------------------------------------------------------------


def test_trickle_defeats_a_read_timeout_but_not_an_overall_deadline(
    simulator: GatewaySimulator,
) -> None:
    simulator.trickle_interval = 0.05
    simulator.fail_next("custom", "trickle")
    started = time.monotonic()
    received = b""
    # A read timeout of 0.2 s never fires: a byte comes every 0.05 s. Only a deadline helps.
    with requests.get(f"{simulator.url}/custom/x", stream=True, timeout=(5, 0.2)) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(TRICKLE_LENGTH)
        for byte in response.iter_content(1):
            received += byte
            if time.monotonic() - started > 0.6:
                break

    assert 4 <= len(received) < 30
    assert received.strip() == b""
    simulator.wait_idle(timeout=1)  # the server noticed the hang-up well before its next byte
    [recorded] = simulator.requests
    assert (recorded.response_status, recorded.fault, recorded.accepted) == (200, "trickle", False)


def test_trickle_is_bounded_by_stream_seconds(simulator: GatewaySimulator) -> None:
    simulator.trickle_interval = 0.05
    simulator.stream_seconds = 0.3
    simulator.fail_next("custom", "trickle")
    started = time.monotonic()

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{simulator.url}/custom/x", timeout=5)
    assert 0.3 <= time.monotonic() - started < 2
    assert requests.get(f"{simulator.url}/custom/x", timeout=5).status_code == 200


def test_huge_is_streamed_and_stops_when_the_client_closes(simulator: GatewaySimulator) -> None:
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    simulator.fail_next("twilio", "huge")
    read = 0
    with requests.get(f"{simulator.url}/twilio/x", stream=True, timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(300 * 1024 * 1024)
        for chunk in response.iter_content(1 << 16):
            if read == 0:
                assert chunk.startswith(b'{"padding": "xxx')
            read += len(chunk)
            if read >= 4 * 1024 * 1024:
                break

    simulator.wait_idle(timeout=2)
    assert simulator.requests[0].fault == "huge"
    growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert growth_kib < 100 * 1024  # 300 MB were announced, never built


def test_huge_body_is_valid_json_of_the_configured_size(simulator: GatewaySimulator) -> None:
    simulator.huge_bytes = 200_000
    simulator.fail_next("custom", "huge")
    response = requests.get(f"{simulator.url}/custom/x", timeout=5)

    assert len(response.content) == 200_000
    assert response.json() == {"padding": "x" * (200_000 - 15)}


def test_stop_ends_a_trickle_in_progress() -> None:
    sim = GatewaySimulator().start()
    sim.trickle_interval = 0.05
    sim.fail_next("custom", "trickle")
    errors: list[Exception] = []

    def read() -> None:
        try:
            requests.get(f"{sim.url}/custom/x", timeout=5)
        except requests.RequestException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    sim.wait_for_requests(1)
    started = time.monotonic()
    sim.stop()
    reader.join(timeout=5)

    assert time.monotonic() - started < 1
    assert [type(e) for e in errors] == [requests.exceptions.ChunkedEncodingError]
    sim.wait_idle(timeout=1)


# -- measuring over HTTP -------------------------------------------------------------------


def test_control_stats_and_reset(simulator: GatewaySimulator, http: requests.Session) -> None:
    simulator.fail_next("custom", "503")
    for _ in range(3):
        http.get(f"{simulator.url}/custom/x")
    http.get(f"{simulator.url}/twilio/x")
    stats = http.get(f"{simulator.url}/_sim/stats").json()

    idle = {"in_flight": 0, "max_in_flight": 0, "requests": 0, "accepted": 0, "max_per_second": 0}
    assert stats == {
        "in_flight": 0,
        "max_in_flight": 1,
        "requests": 4,
        "accepted": 2,
        "max_per_second": 4,
        "targets": {
            "custom": {
                **idle,
                "max_in_flight": 1,
                "requests": 3,
                "accepted": 2,
                "max_per_second": 3,
            },
            "smsportal": idle,
            "twilio": {**idle, "max_in_flight": 1, "requests": 1, "max_per_second": 1},
        },
    }
    assert http.post(f"{simulator.url}/_sim/reset").status_code == 200
    assert http.get(f"{simulator.url}/_sim/stats").json() == {
        **idle,
        "targets": {"custom": idle, "smsportal": idle, "twilio": idle},
    }


def test_control_fail_always_latency_per_target_and_config(
    simulator: GatewaySimulator, http: requests.Session
) -> None:
    def control(action: str, payload: object) -> None:
        assert http.post(f"{simulator.url}/_sim/{action}", json=payload).status_code == 200

    control("fail_always", {"target": "custom", "kind": "429", "retry_after": 3})
    assert [http.get(f"{simulator.url}/custom/x").status_code for _ in range(2)] == [429, 429]
    control("stop_failing", {"target": "custom"})
    assert http.get(f"{simulator.url}/custom/x").status_code == 200

    control("latency", {"target": "smsportal", "seconds": 0.5})
    assert (simulator.latency_for("smsportal"), simulator.latency) == (0.5, 0.0)
    control("latency", {"target": "smsportal", "seconds": None})
    assert simulator.latency_for("smsportal") == 0.0

    control("config", {"huge_bytes": 1000, "trickle_interval": 0.5, "stream_seconds": 9})
    assert (simulator.huge_bytes, simulator.trickle_interval, simulator.stream_seconds) == (
        1000,
        0.5,
        9.0,
    )
    control("fail", {"target": "custom", "kind": "huge"})
    assert len(http.get(f"{simulator.url}/custom/x").content) == 1000


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_sim/fail_always", {"target": "custom", "kind": "boom"}),
        ("/_sim/fail_always", {"kind": "500"}),
        ("/_sim/stop_failing", {"target": "vonage"}),
        ("/_sim/latency", {"target": "vonage", "seconds": 1}),
        ("/_sim/config", {"latency": 1}),
        ("/_sim/config", {"huge_bytes": 0}),
        ("/_sim/config", {"trickle_interval": "slow"}),
    ],
)
def test_control_rejects_bad_measuring_calls(
    simulator: GatewaySimulator, http: requests.Session, path: str, payload: object
) -> None:
    response = http.post(simulator.url + path, json=payload)

    assert response.status_code == 400
    assert response.json()["error"]
    assert (simulator.trickle_interval, simulator.huge_bytes) == (2.0, 300 * 1024 * 1024)
    assert http.get(f"{simulator.url}/custom/x").status_code == 200
