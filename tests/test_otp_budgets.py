"""Pumping defaults: international networks refused, daily budgets of codes per location and
per country, and the admin dashboard saying when a budget refuses guests or sending is off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from sms_ext.config import load
from tests.conftest import TEST_KEY, _empty_tables, make_app
from tests.helpers import custom_gateway
from tests.otp_app import build
from tests.test_otp_hardening import set_runtime

SATELLITE = "+881612345678"


@pytest.fixture
def make_otp_app(service_urls: tuple[str, str], redis, simulator) -> Iterator:
    apps: list[Flask] = []

    def make(**config: object) -> Flask:
        app = build(*service_urls, WTF_CSRF_ENABLED=False, **config)
        with app.app_context():
            _empty_tables(app.extensions["sqlalchemy"])
            custom_gateway(app, simulator, "otp")
        app.extensions["sms"].registrations.admin_callback = lambda: True
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()


def guest(app: Flask, phone: str, location: str = "cafe", number: int = 1):
    """A new guest (own browser, own IP) asking for a code at ``location``."""
    return app.test_client().post(
        f"/s/{location}/", data={"phone": phone}, environ_base={"REMOTE_ADDR": f"10.0.0.{number}"}
    )


def dashboard(app: Flask) -> str:
    prefix = app.extensions["sms"].settings.admin_url_prefix
    response = app.test_client().get(prefix + "/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_defaults_cap_a_day() -> None:
    otp = load({"SECRET_KEY": TEST_KEY}).otp
    assert otp.limit_location_day == "500 per day"
    assert otp.limit_country == "1000 per day"
    assert otp.allow_international_networks is False


def test_satellite_numbers_are_refused_unless_allowed(make_otp_app) -> None:
    refused = guest(make_otp_app(), SATELLITE)
    assert refused.status_code == 400
    assert "Satellite phones and international network numbers" in refused.get_data(as_text=True)
    allowed = make_otp_app(SMS_OTP_ALLOW_INTERNATIONAL_NETWORKS="true")
    assert guest(allowed, SATELLITE).status_code == 200


def test_the_location_budget_refuses_and_the_dashboard_says_so(make_otp_app) -> None:
    app = make_otp_app(SMS_OTP_LIMIT_LOCATION_DAY="2 per day")
    assert "Daily budget reached" not in dashboard(app)
    assert guest(app, "+27831230001", number=1).status_code == 200
    assert guest(app, "+27831230002", number=2).status_code == 200
    refused = guest(app, "+27831230003", number=3)
    assert refused.status_code == 429 and "Please try again in" in refused.get_data(as_text=True)
    assert "Daily budget reached at cafe (1 guest refused today)." in dashboard(app)
    assert guest(app, "+27831230004", number=4).status_code == 429
    assert "Daily budget reached at cafe (2 guests refused today)." in dashboard(app)
    assert guest(app, "+27831230005", "bistro", number=5).status_code == 200  # its own budget


def test_the_country_budget_spans_locations(make_otp_app) -> None:
    app = make_otp_app(SMS_OTP_LIMIT_COUNTRY="2 per day")
    assert guest(app, "+27831230001", "a", number=1).status_code == 200
    assert guest(app, "+27831230002", "b", number=2).status_code == 200
    assert guest(app, "+27831230003", "c", number=3).status_code == 429
    assert guest(app, "+4915123456789", "c", number=4).status_code == 200  # another country
    page = dashboard(app)
    assert "Daily budget reached for +27 numbers (1 guest refused today)." in page
    assert "at c " not in page  # the location's own budget did not refuse


def test_the_dashboard_warns_while_sending_is_off(make_otp_app) -> None:
    app = make_otp_app()
    banner = "Sending is switched off in the settings"
    assert banner not in dashboard(app)
    set_runtime(app, sending_enabled=False)
    assert banner in dashboard(app)


def test_the_dashboard_still_opens_without_redis(service_urls: tuple[str, str]) -> None:
    app = make_app(service_urls[0], "redis://127.0.0.1:1")  # nothing listens there
    app.extensions["sms"].registrations.admin_callback = lambda: True
    try:
        assert "Daily budgets of guest codes cannot be read" in dashboard(app)
    finally:
        with app.app_context():
            app.extensions["sqlalchemy"].engine.dispose()
