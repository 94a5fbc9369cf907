"""Voucher login on the splash page (portal.vouchers.login, .redeem, .throttle)."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from portal.extensions import db
from portal.models import Location, SplashPage, Voucher, VoucherDevice
from portal.vouchers.generate import BatchSpec, generate_batch
from sms_ext.models import utcnow
from tests.test_portal_splash import GENERIC, MIKROTIK

MAC_QUERY = (
    "mac=02%3A00%3A00%3A00%3A00%3A{:02X}&ip=10.0.0.{}&link-login-only=http%3A%2F%2Fgw%2Flogin"
)


def add_location(app: Flask, slug: str, *, terms: str = "") -> None:
    with app.app_context():
        location = Location(name=f"Venue {slug}", slug=slug, region="ZA")
        location.splash_page = SplashPage(title=f"Wi-Fi {slug}", terms=terms, otp_enabled=True)
        db.session.add(location)
        db.session.commit()


def voucher(app: Flask, *locations: str, devices: int = 1, minutes: int = 120) -> str:
    with app.app_context():
        spec = BatchSpec(1, minutes, devices_allowed=devices, location_slugs=list(locations))
        return generate_batch(spec)[0].code


@pytest.fixture
def client(portal_app: Flask) -> FlaskClient:
    add_location(portal_app, "cafe")
    add_location(portal_app, "hotel")
    return portal_app.test_client()


def login(
    client: FlaskClient, code: str, query: str = MIKROTIK, slug: str = "cafe"
) -> TestResponse:
    return client.post(f"/s/{slug}/?{query}", data={"voucher": code})


def refusal(response: TestResponse) -> str:
    page = response.get_data(as_text=True)
    start = page.index('id="voucher-error">') + len('id="voucher-error">')
    return html.unescape(page[start : page.index("</p>", start)])


def test_splash_page_offers_voucher_login(client: FlaskClient) -> None:
    page = client.get(f"/s/cafe/?{MIKROTIK}").get_data(as_text=True)
    assert 'name="voucher"' in page and 'name="phone"' in page
    assert f'action="/s/cafe/?{html.escape(MIKROTIK)}"' in page


@pytest.mark.parametrize(
    ("query", "target"),
    [
        (MIKROTIK, f"http://10.5.50.1/login?dst=keep&{MIKROTIK}"),
        (GENERIC, f"https://gw.example/auth?{GENERIC}"),
    ],
)
def test_a_good_voucher_goes_to_the_controller_with_the_query_kept(
    portal_app: Flask, client: FlaskClient, query: str, target: str
) -> None:
    code = voucher(portal_app, "cafe")
    response = login(client, code.lower().replace("-", " "), query)
    assert response.status_code == 303
    assert response.headers["Location"] == target
    with portal_app.app_context():
        used = db.session.scalar(select(Voucher).where(Voucher.code == code))
        assert used.state == "used" and used.first_used_at is not None
        assert [device.mac for device in used.devices] == [
            "02:00:00:00:00:01" if query == MIKROTIK else "02-00-00-00-00-09"
        ]


def test_without_a_login_url_the_guest_sees_the_connected_page(
    portal_app: Flask, client: FlaskClient
) -> None:
    code = voucher(portal_app)  # every location
    response = login(client, code, "mac=aa&url=http%3A%2F%2Fexample.com%2F", slug="hotel")
    assert response.status_code == 200
    assert "example.com" in response.get_data(as_text=True)


def test_devices_are_counted_and_the_same_device_comes_back(
    portal_app: Flask, client: FlaskClient
) -> None:
    code = voucher(portal_app, "cafe", devices=2)
    assert login(client, code, MAC_QUERY.format(1, 1)).status_code == 303
    assert login(client, code, MAC_QUERY.format(1, 1)).status_code == 303  # same phone again
    assert login(client, code, MAC_QUERY.format(2, 2)).status_code == 303
    third = login(client, code, MAC_QUERY.format(3, 3))
    assert third.status_code == 400
    assert refusal(third) == "This voucher is already used on 2 devices, as many as it allows."
    assert login(client, code, MAC_QUERY.format(2, 2)).status_code == 303
    with portal_app.app_context():
        assert len(db.session.scalars(select(VoucherDevice)).all()) == 2


def test_refusals_say_why(portal_app: Flask, client: FlaskClient) -> None:
    other = voucher(portal_app, "hotel")
    expired = voucher(portal_app, "cafe")
    spent = voucher(portal_app, "cafe", minutes=60)
    with portal_app.app_context():
        db.session.execute(
            update(Voucher)
            .where(Voucher.code == expired)
            .values(valid_until=utcnow() - timedelta(minutes=1))
        )
        db.session.execute(
            update(Voucher)
            .where(Voucher.code == spent)
            .values(first_used_at=utcnow() - timedelta(minutes=61), state="used")
        )
        db.session.commit()
    cases = {
        other: "This voucher is for another location and cannot be used here.",
        expired: "This voucher has expired.",
        spent: "This voucher's time is used up.",
        "ABCD-EFGH": "This voucher code is not valid. Please check it and try again.",
        "nonsense!": "This voucher code is not valid. Please check it and try again.",
        "": "This voucher code is not valid. Please check it and try again.",
    }
    for code, message in cases.items():
        response = login(client, code, MAC_QUERY.format(9, 9))
        assert response.status_code == 400, code
        assert refusal(response) == message
        assert (
            'aria-invalid="true" aria-describedby="voucher-error" autofocus'
            in response.get_data(as_text=True)
        )
    assert login(client, other, MAC_QUERY.format(9, 9), slug="hotel").status_code == 303


def test_terms_must_be_accepted(portal_app: Flask) -> None:
    add_location(portal_app, "park", terms="Be nice.")
    code = voucher(portal_app, "park")
    client = portal_app.test_client()
    refused = login(client, code, slug="park")
    assert refused.status_code == 400
    assert refusal(refused) == "Please accept the terms of use to continue."
    accepted = client.post(f"/s/park/?{MIKROTIK}", data={"voucher": code, "voucher_terms": "yes"})
    assert accepted.status_code == 303


def test_guessing_is_limited_per_client(portal_app: Flask, client: FlaskClient) -> None:
    portal_app.config["PORTAL_VOUCHER_LIMIT_CLIENT"] = "3 per minute"
    code = voucher(portal_app, "cafe")
    for guess in ("AAAA-AAAA", "AAAA-AAAB", "AAAA-AAAC"):
        assert login(client, guess, MAC_QUERY.format(1, 1)).status_code == 400
    blocked = login(client, code, MAC_QUERY.format(1, 1))  # even the right code now
    assert blocked.status_code == 429
    assert refusal(blocked) == "Too many attempts. Please try again in 1 minute."
    # Another MAC from the same IP is still the same client.
    assert login(client, code, "mac=02%3A00%3A00%3A00%3A00%3AFF&ip=10.0.0.1").status_code == 429
    assert login(client, code, MAC_QUERY.format(2, 2)).status_code == 303


def test_guessing_is_limited_per_location(portal_app: Flask, client: FlaskClient) -> None:
    portal_app.config["PORTAL_VOUCHER_LIMIT_LOCATION"] = "5 per hour"
    for n in range(5):
        assert login(client, "AAAA-AAAA", MAC_QUERY.format(n, n)).status_code == 400
    blocked = login(client, voucher(portal_app, "cafe"), MAC_QUERY.format(50, 50))
    assert blocked.status_code == 429
    assert refusal(blocked) == "Too many attempts. Please try again in 60 minutes."
    assert login(client, "AAAA-AAAA", MAC_QUERY.format(51, 51), slug="hotel").status_code == 400


def test_without_redis_voucher_logins_fail_closed(
    portal_app: Flask, app_without_redis: Flask
) -> None:
    add_location(portal_app, "cafe")
    code = voucher(portal_app, "cafe")
    response = login(app_without_redis.test_client(), code)
    assert response.status_code == 503
    assert refusal(response) == "Voucher login is unavailable right now. Please try again shortly."
    with portal_app.app_context():
        assert db.session.scalar(select(Voucher.state).where(Voucher.code == code)) == "new"
