"""The settings page: sending switch, days to expire, debug logging, applied at run time."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from sms_ext import SMS, Status, runtime
from sms_ext.models import utcnow
from tests.conftest import drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator


@pytest.fixture
def admin_app(app: Flask) -> Flask:
    app.config["WTF_CSRF_ENABLED"] = False
    return app


@pytest.fixture
def client(admin_app: Flask, admin_client: FlaskClient) -> FlaskClient:
    """The admin's client, CSRF off."""
    return admin_client


def test_settings_page_is_denied_without_admin_check(app: Flask, sms: SMS) -> None:
    assert app.test_client().get("/sms/admin/settings").status_code == 403
    sms.admin_check(lambda: False)
    assert app.test_client().post("/sms/admin/settings").status_code == 403


def test_switching_sending_off_and_on(
    admin_app: Flask, client: FlaskClient, simulator: GatewaySimulator, sms: SMS
) -> None:
    page = client.get("/sms/admin/settings").get_data(as_text=True)
    assert 'name="sending_enabled"' in page and "checked" in page
    saved = client.post("/sms/admin/settings", data={"days_to_expire": "2"})
    assert saved.status_code == 302
    with admin_app.app_context():
        state = admin_app.extensions["sms"]
        assert runtime.current(state).sending_enabled is False
        custom_gateway(admin_app, simulator, "gw")
        quiet = sms.send("+27831234567", "not now")
        assert (quiet.status, quiet.last_error) == (Status.FAILED, "SMS sending is switched off.")
    client.post("/sms/admin/settings", data={"sending_enabled": "y", "days_to_expire": "7"})
    with admin_app.app_context():
        state = admin_app.extensions["sms"]
        message = sms.send("+27831234567", "now")
        assert message.status == Status.QUEUED
        expected = utcnow() + timedelta(days=7)
        assert abs((message.expires_at - expected).total_seconds()) < 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Days to expire is required."),
        ("90", "Use a whole number from 1 to 30."),
        ("0", "Use a whole number from 1 to 30."),
        ("0.5", "Not a valid integer value."),
        ("soon", "Not a valid integer value."),
    ],
)
def test_bad_days_are_refused(client: FlaskClient, value: str, message: str) -> None:
    response = client.post(
        "/sms/admin/settings", data={"sending_enabled": "y", "days_to_expire": value}
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert f'id="days-error" role="alert">{message}<' in page
    field = re.search(r'<input[^>]*id="days_to_expire"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in field and f'value="{value}"' in field


def test_days_to_expire_is_a_whole_number_input(admin_app: Flask, client: FlaskClient) -> None:
    """A number input with steps of one, showing "2" (not "2.0" in a text box)."""
    page = client.get("/sms/admin/settings").get_data(as_text=True)
    field = re.search(r'<input[^>]*id="days_to_expire"[^>]*>', page).group(0)
    for attribute in ('type="number"', 'min="1"', 'max="30"', 'step="1"', 'value="2"'):
        assert attribute in field, attribute
    assert "input[type=number] {" in page  # styled like the other inputs (see the browser test)


def test_debug_logging_logs_masked_attempts(
    admin_app: Flask,
    client: FlaskClient,
    simulator: GatewaySimulator,
    sms: SMS,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client.post(
        "/sms/admin/settings",
        data={"sending_enabled": "y", "days_to_expire": "2", "debug_logging": "y"},
    )
    with admin_app.app_context():
        custom_gateway(
            admin_app,
            simulator,
            "logged",
            headers=[{"name": "X-Key", "value": "{api_key}"}],
            api_key="very-secret-api-key-123",
        )
        sms.send("+27831234567", "logged send")
        with caplog.at_level(logging.INFO, logger="sms_ext"):
            drain(admin_app)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "sms_ext")
    assert "via logged: ok" in logged and "logged send" in logged
    assert "very-secret-api-key-123" not in logged


def test_csrf_is_required(admin_client: FlaskClient) -> None:
    response = admin_client.post("/sms/admin/settings", data={"days_to_expire": "2"})
    assert response.status_code == 400
