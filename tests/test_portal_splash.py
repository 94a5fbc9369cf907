"""The portal's guest splash page, seed-demo and demo pages, over HTTP with a real DB and Redis."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text

from portal import create_app
from portal.extensions import db, sms
from portal.models import Admin, Guest, GuestSession, Location, SplashPage
from portal.splash import forget_venue
from sms_ext import Gateway, Message, Status
from tests.conftest import PG_URL, TEST_KEY, drain

MIKROTIK = (
    "mac=02%3A00%3A00%3A00%3A00%3A01&ip=10.0.0.23"
    "&link-login-only=http%3A%2F%2F10.5.50.1%2Flogin%3Fdst%3Dkeep"
    "&link-orig=http%3A%2F%2Fexample.com%2F%3Fq%3Da%2Bb%26r%3D1&empty=&z=last"
)
UNIFI = (
    "id=AA%3ABB%3ACC%3ADD%3AEE%3AFF&ap=11%3A22%3A33%3A44%3A55%3A66&t=1700000000"
    "&url=http%3A%2F%2Fexample.com%2Fnews&ssid=Cafe+Guest"
)
GENERIC = (
    "mac=02-00-00-00-00-09&ip=10.1.2.3&ap=lobby"
    "&redirect=https%3A%2F%2Fexample.org%2F&login_url=https%3A%2F%2Fgw.example%2Fauth"
)


@pytest.fixture
def client(portal_app: Flask) -> FlaskClient:
    return portal_app.test_client()


def add_location(
    app: Flask,
    slug: str = "cafe",
    *,
    terms: str = "Be nice.\nNo torrents.",
    otp: bool = False,
    region: str = "ZA",
) -> None:
    with app.app_context():
        location = Location(name="Café Central", slug=slug, region=region)
        location.splash_page = SplashPage(
            title="Wi-Fi at Café Central", terms=terms, otp_enabled=otp
        )
        db.session.add(location)
        db.session.commit()


def rows(app: Flask, model: type) -> list[Any]:
    with app.app_context():
        return list(db.session.scalars(select(model).order_by(model.id)))


def submit(client: FlaskClient, path: str, **form: str):
    return client.post(path, data={"terms": "yes", **form})


# --- the phone form ---


@pytest.mark.parametrize("query", [MIKROTIK, UNIFI, GENERIC])
def test_form_posts_back_to_the_full_url_with_every_parameter(
    portal_app: Flask, client: FlaskClient, query: str
) -> None:
    add_location(portal_app)
    response = client.get(f"/s/cafe/?{query}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'action="{html.escape(f"/s/cafe/?{query}")}"' in page
    assert '<meta name="viewport"' in page
    assert re.search(r'<input type="hidden" name="csrf_token" value="[^"]+">', page)
    phone = re.search(r"<input id=\"phone\"[^>]*>", page, re.S).group(0)
    for attribute in ('name="phone"', 'type="tel"', 'autocomplete="tel"', 'inputmode="tel"'):
        assert attribute in phone
    assert " required" in phone
    assert "Numbers without + are read as South Africa (+27)." in page
    assert 'name="terms"' in page and "<details>" in page and "No torrents." in page
    assert 'name="marketing"' in page
    head = page.split("</head>")[0]
    # Self-contained: no scripts, no stylesheets or icons fetched from anywhere.
    assert "<script" not in page and "http" not in head
    assert re.search(r"<link[^>]+href=\"(?!data:)", head) is None


def test_page_without_terms_has_no_terms_checkbox_and_hint_follows_region(
    portal_app: Flask, client: FlaskClient
) -> None:
    add_location(portal_app, terms="  ", region="DE")
    page = client.get("/s/cafe/").get_data(as_text=True)
    assert 'name="terms"' not in page and "<details>" not in page
    assert "Numbers without + are read as Germany (+49)." in page
    response = client.post("/s/cafe/", data={"phone": "0151 23456789"})
    assert response.status_code == 200
    assert "You're online" in response.get_data(as_text=True)
    assert rows(portal_app, Guest)[0].phone == "+4915123456789"


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("slug", ["nowhere", "caf%00e", "x" * 5000])
def test_unknown_slug_is_a_404_page(
    portal_app: Flask, client: FlaskClient, method: str, slug: str
) -> None:
    add_location(portal_app)
    response = client.open(f"/s/{slug}/?mac=x", method=method, data={"phone": "0831234567"})
    assert response.status_code == 404
    assert "Wi-Fi page not found" in response.get_data(as_text=True)


def test_a_changed_venue_shows_at_once_in_this_process(
    portal_app: Flask, client: FlaskClient
) -> None:
    """Each process keeps a copy of a venue for a few seconds: a change made through the ORM
    drops it at once, one made with plain SQL after ``forget_venue``."""
    add_location(portal_app)
    assert "Text me a code" not in client.get("/s/cafe/").get_data(as_text=True)
    with portal_app.app_context():
        db.session.scalars(select(SplashPage)).one().otp_enabled = True
        db.session.commit()
    assert "Text me a code" in client.get("/s/cafe/").get_data(as_text=True)
    with portal_app.app_context():
        db.session.execute(text("UPDATE location SET name = 'Café Nord'"))
        db.session.commit()
    assert "Café Central by SMS" in client.get("/s/cafe/").get_data(as_text=True)  # the copy
    with portal_app.app_context():
        forget_venue("cafe")
    assert "Café Nord by SMS" in client.get("/s/cafe/").get_data(as_text=True)
    assert client.get("/s/later/").status_code == 404  # a miss is not remembered
    add_location(portal_app, slug="later")
    assert client.get("/s/later/").status_code == 200


def test_terms_must_be_accepted(portal_app: Flask, client: FlaskClient) -> None:
    add_location(portal_app)
    response = client.post(f"/s/cafe/?{MIKROTIK}", data={"phone": "083 123 4567"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Please accept the terms of use to continue." in page
    assert 'value="083 123 4567"' in page
    assert f'action="{html.escape(f"/s/cafe/?{MIKROTIK}")}"' in page
    assert rows(portal_app, Guest) == []


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Please enter your phone number."),
        ("   ", "Please enter your phone number."),
        ("call me", "A phone number can only contain digits."),
        ("+999 123 456", "This country code does not exist."),
        ("0831", "This number is too short"),
        ("083 12", "This is not a valid phone number"),
        ("9" * 5000, "This number is too long."),
        ("083\x00123", "This does not look like a phone number."),
        ("<script>alert(1)</script>", "A phone number can only contain digits."),
    ],
)
def test_invalid_numbers_are_explained(
    portal_app: Flask, client: FlaskClient, typed: str, message: str
) -> None:
    add_location(portal_app)
    response = submit(client, f"/s/cafe/?{MIKROTIK}", phone=typed)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert f'value="{html.escape(typed[:64])}"' in page
    assert "<script>alert" not in page
    assert rows(portal_app, Guest) == []


def test_missing_phone_field_is_a_400_not_a_500(portal_app: Flask, client: FlaskClient) -> None:
    add_location(portal_app)
    response = client.post("/s/cafe/", data={"terms": "yes"})
    assert response.status_code == 400
    assert "Please enter your phone number." in response.get_data(as_text=True)


# --- straight on (OTP off) ---


def test_without_otp_the_guest_is_recorded_and_sent_to_the_login_url(
    portal_app: Flask, client: FlaskClient
) -> None:
    add_location(portal_app)
    response = submit(client, f"/s/cafe/?{MIKROTIK}", phone="083 123 4567", marketing="yes")
    assert response.status_code == 303
    # The login URL keeps its own query; the original query string follows as it came.
    assert response.headers["Location"] == f"http://10.5.50.1/login?dst=keep&{MIKROTIK}"

    (guest,) = rows(portal_app, Guest)
    assert guest.phone == "+27831234567"
    assert guest.marketing_consent is True and guest.consent_at is not None
    (login,) = rows(portal_app, GuestSession)
    assert login.guest_id == guest.id
    assert (login.client_mac, login.client_ip, login.ap) == ("02:00:00:00:00:01", "10.0.0.23", None)
    assert login.phone == "+27831234567" and login.verified_by_otp is False
    assert rows(portal_app, Message) == []  # no code, no SMS

    # Again, from another device, without ticking the box: one guest, two sessions, and the
    # unticked box withdraws the consent given before.
    long_ap = "%00x" + "x" * 500
    response = submit(
        client, f"/s/cafe/?mac=02:00:00:00:00:02&ap={long_ap}", phone="+27 83 123 4567"
    )
    assert response.status_code == 200
    (again,) = rows(portal_app, Guest)
    assert again.last_seen > guest.last_seen
    assert (again.marketing_consent, again.consent_at) == (False, None)
    second = rows(portal_app, GuestSession)[1]
    assert second.client_mac == "02:00:00:00:00:02" and second.ap == "x" * 64
    assert second.client_ip == "127.0.0.1"  # no ip parameter: the request's address


def test_generic_controller_login_url_gets_the_query_too(
    portal_app: Flask, client: FlaskClient
) -> None:
    add_location(portal_app, terms="")
    response = client.post(f"/s/cafe/?{GENERIC}", data={"phone": "0821234567"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"https://gw.example/auth?{GENERIC}"
    (login,) = rows(portal_app, GuestSession)
    assert (login.client_mac, login.client_ip, login.ap) == (
        "02-00-00-00-00-09",
        "10.1.2.3",
        "lobby",
    )
    assert rows(portal_app, Guest)[0].marketing_consent is False


def test_unifi_parameters_end_on_the_connected_page(portal_app: Flask, client: FlaskClient) -> None:
    add_location(portal_app)
    response = submit(client, f"/s/cafe/?{UNIFI}", phone="0721234567")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "You're online" in page and '<meta name="viewport"' in page
    assert 'href="http://example.com/news"' in page and "Continue to example.com<" in page
    (login,) = rows(portal_app, GuestSession)
    assert login.client_mac == "aa:bb:cc:dd:ee:ff" and login.ap == "11:22:33:44:55:66"
    assert login.client_ip == "127.0.0.1"


def test_connected_page_links_only_to_web_addresses(portal_app: Flask, client: FlaskClient) -> None:
    add_location(portal_app)
    response = submit(client, "/s/cafe/?id=aa&url=javascript%3Aalert(1)", phone="0721234567")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "javascript" not in page
    assert "You can close this page" in page


@pytest.mark.parametrize(
    "login_url",
    [
        "javascript%3Aalert(document.cookie)",
        "JavaScript%3A%2F%2Fexample.com%2F%250aalert(1)",
        "data%3Atext%2Fhtml%2C%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%2F%2Fevil.example%2Flogin",
        "ftp%3A%2F%2Fexample.com%2F",
        "http%3A%2F%2Fexample.com%2F%0D%0ASet-Cookie%3A%20a%3Db",
        "http%3A%2F%2F%5B%3A%3A1",
    ],
)
def test_login_urls_other_than_http_are_refused(
    portal_app: Flask, client: FlaskClient, login_url: str
) -> None:
    add_location(portal_app)
    path = f"/s/cafe/?mac=02:00:00:00:00:01&link-login-only={login_url}"
    response = client.get(path)
    assert response.status_code == 400
    assert "login address it cannot use" in response.get_data(as_text=True)
    response = submit(client, path, phone="0831234567")
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert rows(portal_app, Guest) == []


# --- seed-demo, the sandbox gateway and the demo pages ---


def seed(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["portal", "seed-demo", *args])


def test_seed_demo_is_idempotent_and_its_sandbox_gateway_sends(portal_app: Flask) -> None:
    first = seed(portal_app)
    assert first.exit_code == 0, first.output
    password = re.search(r"Admin login: admin / (\S+)", first.output).group(1)
    second = seed(portal_app, "--region", "DE")
    assert second.exit_code == 0, second.output
    assert "password unchanged" in second.output and "Admin login" not in second.output

    with portal_app.app_context():
        (location,) = db.session.scalars(select(Location)).all()
        assert (location.slug, location.name, location.region) == ("demo", "Demo Café", "ZA")
        assert location.splash_page.title == "Free Wi-Fi at Demo Café"
        assert location.splash_page.otp_enabled and location.splash_page.terms
        (gateway,) = db.session.scalars(select(Gateway)).all()
        assert (gateway.name, gateway.type) == ("Demo sandbox (no real SMS)", "sandbox")
        (admin,) = db.session.scalars(select(Admin)).all()
        assert admin.check_password(password) and password not in admin.password_hash

        message_id = sms.send("+27 83 123 4567", "Your Wi-Fi code is 123456", location="demo").id
    drain(portal_app)
    (sent,) = rows(portal_app, Message)
    assert sent.id == message_id and sent.status == Status.SENT
    assert sent.provider_message_id == f"sandbox-{sent.id}"

    inbox = portal_app.test_client().get("/demo/inbox")
    page = inbox.get_data(as_text=True)
    assert inbox.status_code == 200
    assert "Demo only: sandbox gateway, no real SMS is sent" in page
    assert '<meta http-equiv="refresh" content="3">' in page
    assert "+27831234567" in page and "Your Wi-Fi code is 123456" in page


def test_seed_demo_options(portal_app: Flask) -> None:
    bad = seed(portal_app, "--region", "XX")
    assert bad.exit_code == 2 and "not a two-letter region" in bad.output
    with portal_app.app_context():
        db.session.add(Gateway(name="Real one", type="twilio", settings={}, locations=[]))
        db.session.commit()
    result = seed(portal_app, "--region", "de", "--password", "demo-pass-123")
    assert result.exit_code == 0, result.output
    assert "demo-pass-123" not in result.output and "Gateways exist: none added." in result.output
    with portal_app.app_context():
        assert db.session.scalar(select(Location.region)) == "DE"
        assert db.session.scalar(select(func.count()).select_from(Gateway)) == 1
        assert db.session.scalars(select(Admin)).one().check_password("demo-pass-123")


def test_inbox_lists_sandbox_messages_only(portal_app: Flask) -> None:
    seed(portal_app)
    with portal_app.app_context():
        db.session.add(Gateway(name="Real one", type="twilio", settings={}, locations=[]))
        db.session.flush()
        real = db.session.scalar(select(Gateway).where(Gateway.type == "twilio"))
        sms.send("+27831234567", "Private text via a real gateway")
        db.session.execute(
            Message.__table__.update().values(status=Status.SENT, gateway_id=real.id)
        )
        db.session.commit()
    page = portal_app.test_client().get("/demo/inbox").get_data(as_text=True)
    assert "Private text" not in page and "No message yet" in page


def test_controller_login_shows_what_it_received(client: FlaskClient) -> None:
    response = client.get(f"/demo/controller-login?{MIKROTIK}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    names = re.findall(r'<th scope="row"><code>([^<]*)</code>', page)
    assert names == ["mac", "ip", "link-login-only", "link-orig", "empty", "z"]
    assert html.escape("http://example.com/?q=a+b&r=1") in page


def test_demo_pages_can_be_switched_off(database_urls: dict[str, str], redis_url: str) -> None:
    app = create_app(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": database_urls["sqlite"],
            "SMS_REDIS_URL": redis_url,
            "PORTAL_DEMO": False,
        }
    )
    client = app.test_client()
    assert client.get("/demo/inbox").status_code == 404
    assert client.get("/demo/controller-login").status_code == 404
    with app.app_context():
        db.engine.dispose()


def test_demo_walkthrough_with_csrf_and_a_code(portal_app: Flask) -> None:
    """What ``make run`` offers: splash, code in the demo inbox, then the controller login."""
    portal_app.config["WTF_CSRF_ENABLED"] = True
    seed(portal_app)
    client = portal_app.test_client()
    query = (
        "mac=02:00:00:00:00:01&ip=10.0.0.23"
        "&link-login-only=http://127.0.0.1:5000/demo/controller-login&link-orig=http://example.com/"
    )
    page = client.get(f"/s/demo/?{query}").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post(
        f"/s/demo/?{query}",
        data={"csrf_token": token, "phone": "083 123 4567", "terms": "yes", "marketing": "yes"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert rows(portal_app, Guest) == []  # not before the code

    drain(portal_app)
    inbox = client.get("/demo/inbox").get_data(as_text=True)
    code = re.search(r"code is (\d+)", inbox).group(1)
    response = client.post(
        f"/s/demo/?{query}", data={"csrf_token": token, "sms_step": "code", "code": code}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == f"http://127.0.0.1:5000/demo/controller-login?{query}"
    (guest,) = rows(portal_app, Guest)
    assert guest.marketing_consent is True  # carried in the session across the code page
    (login,) = rows(portal_app, GuestSession)
    assert login.verified_by_otp is True and login.client_mac == "02:00:00:00:00:01"

    landing = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "link-orig" in landing and "http://example.com/" in landing


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (SMS_TEST_DATABASE_URL)")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_stalled_database_answers_a_quick_503(
    portal_app: Flask, database_urls: dict[str, str], redis_url: str
) -> None:
    """With the outbox table locked, the guest gets the "try again soon" page within the
    statement timeout, not a hung request or a 500; nothing is left half-written."""
    add_location(portal_app, otp=True)
    with portal_app.app_context():
        db.session.add(Gateway(name="sandbox", type="sandbox", priority=1))
        db.session.commit()
    app = create_app(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": database_urls["postgresql"],
            "SMS_REDIS_URL": redis_url,
            "WTF_CSRF_ENABLED": False,
            "PORTAL_DB_STATEMENT_TIMEOUT": 1,
        }
    )
    locker = create_engine(database_urls["postgresql"])
    try:
        with locker.begin() as connection:
            # Should the request wait anyway, the server ends the lock after 8 s: no hung test.
            connection.execute(text("SET LOCAL idle_in_transaction_session_timeout = '8s'"))
            connection.execute(text("LOCK TABLE sms_message IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            response = submit(app.test_client(), "/s/cafe/", phone="0831234567")
            elapsed = time.monotonic() - started
    finally:
        locker.dispose()
        with app.app_context():
            db.engine.dispose()
    assert response.status_code == 503
    assert "unavailable right now" in response.get_data(as_text=True)
    assert elapsed < 5
    assert rows(portal_app, Message) == []


def test_the_code_page_carries_the_venues_branding(portal_app: Flask, client: FlaskClient) -> None:
    add_location(portal_app, otp=True)
    page = submit(client, "/s/cafe/", phone="0831234567")
    assert page.status_code == 503  # no gateway yet: no code form, the venue's look all the same
    brand = re.compile(
        r'<header class="brand">.*Free Wi-Fi.*<p class="venue">Café Central</p>'
        r'.*<p class="venue-title">Wi-Fi at Café Central</p>.*</header>',
        re.S,
    )
    assert brand.search(page.get_data(as_text=True))
    with portal_app.app_context():
        db.session.add(Gateway(name="sandbox", type="sandbox", priority=1))
        db.session.commit()
    page = submit(client, "/s/cafe/", phone="0831234567")
    assert page.status_code == 200 and 'id="code"' in page.get_data(as_text=True)
    assert brand.search(page.get_data(as_text=True))
