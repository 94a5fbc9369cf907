"""Gateway actions of the admin over HTTP: test sends, balance checks, ↑/↓ moves.

The test send is followed to its end (sent, or failed with the gateway's answer) by a page that
refreshes itself only until then; a refused number is shown next to the test form with the
typed number kept. Browser-level checks of the same are in ``tests/test_browser_admin.py``.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.registry import ScheduledJobRegistry
from sqlalchemy import func, select

from sms_ext import Gateway, Kind, Message, Status
from tests.conftest import drain
from tests.helpers import add_gateway, age, custom_gateway, twilio_gateway
from tests.simulator import GatewaySimulator

PREFIX = "/sms/admin/gateways"
PHONE = "+27831234567"


def section_of(page: str) -> str:
    """The "Test this gateway" section of a gateway's page."""
    found = re.search(r'<section class="card" id="test".*?</section>', page, re.S)
    assert found, "no test section"
    return found.group(0)


def phone_field(page: str) -> str:
    found = re.search(r'<input type="tel" id="test-phone"[^>]*>', page, re.S)
    assert found, "no phone field"
    return found.group(0)


def messages(app: Flask) -> list[Message]:
    session = app.extensions["sms"].session
    session.expire_all()
    return list(session.scalars(select(Message).order_by(Message.id)))


# -- test sends -------------------------------------------------------------------------------


def test_a_test_through_a_failing_gateway_ends_failed_and_the_page_stops_refreshing(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        custom_gateway(app, simulator, "backup")
        gateway_id = custom_gateway(app, simulator, "trial", enabled=False).id
    simulator.fail_always("custom", "500")
    answer = admin.post(f"{PREFIX}/{gateway_id}/test", data={"phone": PHONE})
    assert answer.status_code == 303
    queued = admin.get(answer.location)
    assert "Refresh" in queued.headers
    assert "refreshes every 2 s" in queued.get_data(as_text=True)
    drain(app)
    done = admin.get(answer.location)
    page = done.get_data(as_text=True)
    assert "Refresh" not in done.headers
    assert 'http-equiv="refresh"' not in page and "refreshes every" not in page
    section = section_of(page)
    assert 'class="status failed">failed<' in section
    assert "trial: HTTP 500" in section and "HTTP 500" in section
    assert f'value="{PHONE}"' in phone_field(page)  # the number stays, ready for another try
    with app.app_context():
        (message,) = messages(app)
        assert (message.status, message.attempts) == (Status.FAILED, 1)
        state = app.extensions["sms"]
        for queue in (state.urgent_queue, state.queue):
            assert ScheduledJobRegistry(queue=queue).count == 0  # no retry waiting
    assert [r.path for r in simulator.requests_for("custom")] == ["/custom/trial"]


def test_a_test_waiting_for_a_retry_after_says_when(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway_id = custom_gateway(app, simulator, "busy").id
    simulator.fail_next("custom", "503", retry_after=30)
    answer = admin.post(f"{PREFIX}/{gateway_id}/test", data={"phone": PHONE})
    drain(app)
    waiting = admin.get(answer.location)
    section = section_of(waiting.get_data(as_text=True))
    assert "Refresh" in waiting.headers
    assert "The gateway asked to wait: one more try at" in section
    assert "busy: HTTP 503" in section


def test_a_test_no_worker_took_stops_refreshing_and_says_why(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        gateway_id = custom_gateway(app, simulator, "idle").id
    answer = admin.post(f"{PREFIX}/{gateway_id}/test", data={"phone": PHONE})
    with app.app_context():
        (message,) = messages(app)
        assert 4 * 60 < (message.expires_at - message.created_at).total_seconds() <= 5 * 60
        age(app, 5 * 60)  # no worker ran for five minutes
    page = admin.get(answer.location)
    assert "Refresh" not in page.headers
    section = section_of(page.get_data(as_text=True))
    assert 'class="status queued">queued<' in section
    assert "No worker took this message before it expired" in section
    drain(app)  # a worker coming back does not send it any more
    with app.app_context():
        (message,) = messages(app)
        assert (message.status, message.last_error) == (
            Status.FAILED,
            "Expired before it could be sent.",
        )
    assert simulator.requests_for("custom") == []


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        ("12", "Test not sent:"),
        ("", "Test not sent:"),
        ("0831234567", "Test not sent:"),  # national, and no SMS_DEFAULT_REGION
        ("+27 83 123 4567 abc", "Test not sent:"),
    ],
)
def test_a_refused_number_is_shown_next_to_the_test_form(
    app: Flask, admin: FlaskClient, typed: str, error: str
) -> None:
    with app.app_context():
        gateway_id = add_gateway(app, name="Sandbox", type="sandbox").id
    answer = admin.post(f"{PREFIX}/{gateway_id}/test", data={"phone": typed})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert 'class="flash error"' not in page  # not at the top of the page
    section = section_of(page)
    assert re.search(rf'id="test-phone-error" role="alert">{error}', section)
    field = phone_field(page)
    assert f'value="{typed}"' in field and 'aria-invalid="true"' in field
    assert "test-phone-error" in field  # the field is described by its error
    assert f'action="{PREFIX}/{gateway_id}/test#test"' in section  # the answer opens at it
    with app.app_context():
        assert app.extensions["sms"].session.scalar(select(func.count(Message.id))) == 0


def test_a_national_number_is_read_with_the_default_region(app: Flask, admin: FlaskClient) -> None:
    state = app.extensions["sms"]
    state.settings = replace(state.settings, default_region="ZA")
    with app.app_context():
        gateway_id = add_gateway(app, name="Sandbox", type="sandbox").id
    form = admin.get(f"{PREFIX}/{gateway_id}/").get_data(as_text=True)
    assert "International (+…) or national format, read as in South Africa." in form
    answer = admin.post(f"{PREFIX}/{gateway_id}/test", data={"phone": "083 123 4567"})
    assert answer.status_code == 303
    with app.app_context():
        (message,) = messages(app)
        assert (message.to, message.kind, message.gateway_id) == (PHONE, Kind.TEST, gateway_id)


@pytest.mark.parametrize("test_id", ["99999999999999999999999", "-1", "x", "0"])
def test_an_unknown_test_id_shows_no_test(app: Flask, admin: FlaskClient, test_id: str) -> None:
    with app.app_context():
        gateway_id = add_gateway(app, name="Sandbox", type="sandbox").id
    page = admin.get(f"{PREFIX}/{gateway_id}/?test={test_id}")
    assert page.status_code == 200
    assert "Test message #" not in page.get_data(as_text=True)


# -- balance ----------------------------------------------------------------------------------


def test_check_is_offered_only_where_a_balance_can_be_reported(
    app: Flask, admin: FlaskClient, simulator: GatewaySimulator
) -> None:
    with app.app_context():
        twilio = twilio_gateway(app, simulator).id
        custom = custom_gateway(app, simulator, "plain").id
        sandbox = add_gateway(app, name="Sandbox", type="sandbox").id
    page = admin.get(f"{PREFIX}/").get_data(as_text=True)
    checks = re.findall(r'aria-label="Check the balance of ([^"]+)"', page)
    assert checks == ["Twilio"]
    assert page.count("not reported") == 2
    assert f"{PREFIX}/{twilio}/balance" in page
    for gateway_id in (custom, sandbox):
        assert f"{PREFIX}/{gateway_id}/balance" not in page
    refused = admin.post(f"{PREFIX}/{custom}/balance", follow_redirects=True)
    assert "plain: Custom HTTP gateways do not report a balance." in refused.get_data(as_text=True)
    with app.app_context():
        stored = app.extensions["sms"].session.get(Gateway, custom)
        assert stored.balance_checked_at is None and stored.balance_error is None


# -- move with the keyboard -------------------------------------------------------------------


def autofocused(page: str) -> list[str]:
    """The labels of the buttons the page focuses when it opens."""
    buttons = re.findall(r"<button[^>]*>", page, re.S)
    return [
        re.search(r'aria-label="([^"]+)"', b).group(1)
        for b in buttons
        if re.search(r"\sautofocus[\s>]", b)
    ]


@pytest.mark.parametrize(
    ("moved", "direction", "order", "focused"),
    [
        ("C", "up", ["A", "C", "B"], "Move C up"),
        ("A", "down", ["B", "A", "C"], "Move A down"),
        ("B", "up", ["B", "A", "C"], "Move B down"),  # at the top: its ↑ is disabled now
        ("B", "down", ["A", "C", "B"], "Move B up"),  # at the bottom: its ↓ is disabled now
        ("A", "up", ["A", "B", "C"], "Move A down"),  # did not move, and cannot go up
        ("C", "down", ["A", "B", "C"], "Move C up"),
    ],
)
def test_the_moved_gateway_keeps_the_focus(
    app: Flask, admin: FlaskClient, moved: str, direction: str, order: list[str], focused: str
) -> None:
    with app.app_context():
        ids = {name: add_gateway(app, name=name, type="sandbox").id for name in "ABC"}
    answer = admin.post(f"{PREFIX}/{ids[moved]}/move", data={"direction": direction})
    assert answer.status_code == 303
    assert answer.location == f"{PREFIX}/?moved={ids[moved]}&direction={direction}"
    page = admin.get(answer.location).get_data(as_text=True)
    assert re.findall(r'<a href="[^"]+/gateways/\d+/">([^<]+)</a>', page) == order
    assert autofocused(page) == [focused]


@pytest.mark.parametrize("query", ["moved=x&direction=up", "moved=1&direction=left", "moved=1"])
def test_a_bad_focus_request_focuses_nothing(app: Flask, admin: FlaskClient, query: str) -> None:
    with app.app_context():
        add_gateway(app, name="A", type="sandbox")
        add_gateway(app, name="B", type="sandbox")
    page = admin.get(f"{PREFIX}/?{query}")
    assert page.status_code == 200
    assert autofocused(page.get_data(as_text=True)) == []
