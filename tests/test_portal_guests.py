"""The portal's guests admin: the list (search, location, keyset pages), the profile, 1:1 SMS."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from portal import create_app
from portal.extensions import db
from portal.models import Guest, GuestSession, Location
from sms_ext import Kind, Message, MessageTemplate, Status
from sms_ext.models import OptOut
from tests.conftest import TEST_KEY, drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator
from tests.test_portal_admin import add_admin

NOW = datetime(2026, 12, 1, 12, 0)
PHONE = "+27831234567"


@pytest.fixture
def admin_client(portal_app: Flask) -> FlaskClient:
    """A client logged in as ``ops`` through the login form."""
    add_admin(portal_app)
    client = portal_app.test_client()
    done = client.post(
        "/admin/login", data={"username": "ops", "password": "correct horse battery"}
    )
    assert done.status_code == 302
    return client


def add_location(app: Flask, slug: str, name: str, language: str = "en") -> int:
    with app.app_context():
        location = Location(slug=slug, name=name, region="ZA", language=language)
        db.session.add(location)
        db.session.commit()
        return location.id


def add_guest(app: Flask, phone: str, **fields: Any) -> int:
    with app.app_context():
        guest = Guest(phone=phone, **fields)
        db.session.add(guest)
        db.session.commit()
        return guest.id


def add_session(app: Flask, guest_id: int, location_id: int, **fields: Any) -> None:
    with app.app_context():
        phone = db.session.get(Guest, guest_id).phone
        db.session.add(
            GuestSession(guest_id=guest_id, location_id=location_id, phone=phone, **fields)
        )
        db.session.commit()


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def next_link(html: str) -> str | None:
    found = re.search(r'rel="next" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_pages_need_a_logged_in_admin(portal_app: Flask) -> None:
    guest_id = add_guest(portal_app, PHONE)
    client = portal_app.test_client()
    for path in ("/admin/guests/", f"/admin/guests/{guest_id}"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login?next=")
    refused = client.post(f"/admin/guests/{guest_id}/message", data={"action": "send"})
    assert refused.status_code == 302


def test_guests_menu_entry_and_masked_numbers(portal_app: Flask, admin_client: FlaskClient) -> None:
    add_guest(portal_app, PHONE, name="Alex")
    page = admin_client.get("/admin/guests/").get_data(as_text=True)
    assert 'href="/admin/guests/" aria-current="page">Guests</a>' in page
    assert "+27 83 \u2022\u2022\u2022 4567" in page and PHONE not in page


def test_full_numbers_are_shown_and_searchable_by_fragment(
    portal_app: Flask, redis_url: str
) -> None:
    """With ``SMS_ADMIN_FULL_NUMBERS`` (read at start-up) a few digits find a guest."""
    alex = add_guest(portal_app, PHONE, name="Alex")
    add_guest(portal_app, "+27821110000", name="Sam")
    full = create_app(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": portal_app.config["SQLALCHEMY_DATABASE_URI"],
            "SMS_REDIS_URL": redis_url,
            "WTF_CSRF_ENABLED": False,
            "SMS_ADMIN_FULL_NUMBERS": True,
        }
    )
    add_admin(full)
    client = full.test_client()
    client.post("/admin/login", data={"username": "ops", "password": "correct horse battery"})
    page = client.get("/admin/guests/?q=83+123").get_data(as_text=True)
    assert listed(page) == [alex] and PHONE in page
    with full.app_context():
        db.engine.dispose()


def test_search_by_name_phone_and_location(portal_app: Flask, admin_client: FlaskClient) -> None:
    cafe = add_location(portal_app, "cafe", "Harbour Café")
    hotel = add_location(portal_app, "hotel", "Hill Hotel")
    alex = add_guest(portal_app, PHONE, name="Alex 100%")
    sam = add_guest(portal_app, "+27821110000", name="Sam")
    add_guest(portal_app, "+4915123456789", name="Alexandra")
    add_session(portal_app, alex, cafe)
    add_session(portal_app, sam, hotel)

    def found(query: str) -> list[int]:
        response = admin_client.get(f"/admin/guests/?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return listed(response.get_data(as_text=True))

    assert len(found("q=alex")) == 2  # contains, any case
    assert found("q=x+100%25") == [alex]
    assert found("q=a%25a") == []  # "%" is matched as itself, not as a wildcard
    assert found("q=%2B27+83+123+4567") == [alex]  # the whole number, as typed
    assert found(f"location={hotel}") == [sam]
    assert found(f"q=alex&location={cafe}") == [alex]
    assert found(f"q=sam&location={cafe}") == []


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("q=4567", "Phone numbers are masked: search with the whole number"),
        ("q=" + "a" * 121, "The search must be at most 120 characters."),
        ("q=al%00ex", "The search must not contain NUL characters."),
        ("location=abc", "Choose a location from the list."),
        ("location=99999999999", "Choose a location from the list."),
        ("location=4242", "Choose a location from the list."),
        ("after=x", "That page link is out of date"),
        ("after=4242", "That page link is out of date"),
    ],
)
def test_bad_filters_answer_400_with_the_reason(
    portal_app: Flask, admin_client: FlaskClient, query: str, problem: str
) -> None:
    add_guest(portal_app, PHONE)
    response = admin_client.get(f"/admin/guests/?{query}")
    assert response.status_code == 400
    assert problem in response.get_data(as_text=True)


def test_keyset_pages_walk_every_guest_once(portal_app: Flask, admin_client: FlaskClient) -> None:
    # 120 guests, three to a last_seen time: ties are ordered by id, across page borders too.
    with portal_app.app_context():
        db.session.execute(
            insert(Guest),
            [
                {"phone": f"+2783{n:07d}", "last_seen": NOW - timedelta(minutes=n // 3)}
                for n in range(120)
            ],
        )
        db.session.commit()
        expected = list(
            db.session.scalars(select(Guest.id).order_by(Guest.last_seen.desc(), Guest.id.desc()))
        )
    seen: list[int] = []
    url: str | None = "/admin/guests/"
    pages = 0
    while url:
        html = admin_client.get(url).get_data(as_text=True)
        seen += listed(html)
        url = next_link(html)
        pages += 1
    assert (seen, pages) == (expected, 3)
    assert 'rel="first"' in html


def test_profile_shows_sessions_messages_and_consent(
    portal_app: Flask, admin_client: FlaskClient
) -> None:
    cafe = add_location(portal_app, "cafe", "Harbour Café")
    guest_id = add_guest(
        portal_app,
        PHONE,
        name="Alex",
        marketing_consent=True,
        consent_at=datetime(2026, 11, 30, 9, 15),
        opted_out_at=None,
    )
    add_session(
        portal_app,
        guest_id,
        cafe,
        client_mac="aa:bb:cc:dd:ee:ff",
        verified_by_otp=True,
        started_at=datetime(2026, 11, 30, 9, 14),
    )
    base = {
        "status": Status.SENT,
        "encoding": "gsm7",
        "segments": 1,
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=1),
    }
    with portal_app.app_context():
        db.session.execute(
            insert(Message),
            [
                {**base, "kind": Kind.OTP, "to": PHONE, "body": "Your code is ••••••"},
                {**base, "kind": Kind.PERSONAL, "to": "+27820000000", "body": "Old number",
                 "customer_ref": f"guest:{guest_id}", "sent_by": "lee"},
                {**base, "kind": Kind.PERSONAL, "to": "+27829999999", "body": "Someone else"},
            ],
        )  # fmt: skip
        db.session.commit()
    page = admin_client.get(f"/admin/guests/{guest_id}").get_data(as_text=True)
    assert "Harbour Café" in page and "aa:bb:cc:dd:ee:ff" in page
    assert "2026-11-30 09:14" in page and "<td>Yes</td>" in page
    assert "Your code is ••••••" in page and "Old number" in page and "Someone else" not in page
    assert "<td>lee</td>" in page
    assert '<dd id="consent">Yes, given 2026-11-30 09:15 UTC</dd>' in page
    assert '<dd id="opted-out">No</dd>' in page
    assert "opted out of marketing" not in page
    assert admin_client.get("/admin/guests/4242").status_code == 404
    assert admin_client.get("/admin/guests/99999999999").status_code == 404


def add_template(app: Flask, kind: str, body: str, language: str = "en") -> int:
    with app.app_context():
        template = MessageTemplate(name=f"{kind} note", kind=kind, language=language, body=body)
        db.session.add(template)
        db.session.commit()
        return template.id


def test_template_preview_then_send_reaches_the_simulator(
    portal_app: Flask, admin_client: FlaskClient, simulator: GatewaySimulator
) -> None:
    with portal_app.app_context():
        custom_gateway(portal_app, simulator, "primary")
    cafe = add_location(portal_app, "cafe", "Harbour Cafe")
    guest_id = add_guest(portal_app, PHONE, name="Alex")
    add_session(portal_app, guest_id, cafe)
    template_id = add_template(
        portal_app, "personal", "Hi {{ name }}, your bag is at {{ location }} ({{ phone }})."
    )
    url = f"/admin/guests/{guest_id}/message"
    shown = admin_client.post(url, data={"action": "preview", "template": str(template_id)})
    page = shown.get_data(as_text=True)
    text = f"Hi Alex, your bag is at Harbour Cafe ({PHONE})."
    assert shown.status_code == 200
    assert f">{text}</textarea>" in page
    assert f"{len(text)} characters, GSM-7, 1 part<" in page

    sent = admin_client.post(url, data={"action": "send", "text": text})
    assert (sent.status_code, sent.headers["Location"]) == (303, f"/admin/guests/{guest_id}")
    drain(portal_app)
    (request,) = simulator.requests_for("custom")
    assert (request.json["to"], request.json["text"]) == (PHONE, text)
    with portal_app.app_context():
        (message,) = db.session.scalars(select(Message)).all()
        assert (message.kind, message.status) == (Kind.PERSONAL, Status.SENT)
        assert (message.sent_by, message.customer_ref) == ("ops", f"guest:{guest_id}")
        assert message.location == "cafe"
    profile = admin_client.get(f"/admin/guests/{guest_id}").get_data(as_text=True)
    assert f"Message {message.id} queued for sending." in profile
    assert f'<tr class="message" data-id="{message.id}">' in profile and "<td>ops</td>" in profile


def test_preview_counts_unicode_and_an_opted_out_guest_gets_a_warning(
    portal_app: Flask, admin_client: FlaskClient
) -> None:
    guest_id = add_guest(portal_app, PHONE, opted_out_at=NOW)
    profile = admin_client.get(f"/admin/guests/{guest_id}").get_data(as_text=True)
    assert "opted out of marketing messages" in profile
    assert '<dd id="opted-out">Yes, 2026-12-01 12:00 UTC</dd>' in profile
    text = "Thanks for visiting 😊 " * 4
    shown = admin_client.post(
        f"/admin/guests/{guest_id}/message", data={"action": "preview", "text": text}
    )
    assert f"{len(text)} characters, UCS-2, 2 parts<" in shown.get_data(as_text=True)
    sent = admin_client.post(
        f"/admin/guests/{guest_id}/message", data={"action": "send", "text": "Hi"}
    )
    assert sent.status_code == 303  # 1:1 is allowed after an opt-out (marketing only)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"text": "hi"}, "Choose Preview or Send."),
        ({"action": "delete", "text": "hi"}, "Choose Preview or Send."),
        ({"action": "preview", "template": "abc"}, "Choose a template from the list."),
        ({"action": "preview", "template": "99999999999"}, "Choose a template from the list."),
        ({"action": "preview", "template": "VOUCHER"}, "Choose a template from the list."),
        ({"action": "send", "text": "   "}, "Write a message or choose a template."),
        ({"action": "send", "text": "x" * 1601}, "The message must be at most 1,600 characters."),
        ({"action": "preview", "text": "a\x00b"}, "The message must not contain NUL characters."),
    ],
)
def test_bad_message_form_answers_400(
    portal_app: Flask, admin_client: FlaskClient, data: dict[str, str], problem: str
) -> None:
    guest_id = add_guest(portal_app, PHONE)
    if data.get("template") == "VOUCHER":  # a real template, but not a personal one
        data = {**data, "template": str(add_template(portal_app, "voucher", "Code {{ code }}"))}
    response = admin_client.post(f"/admin/guests/{guest_id}/message", data=data)
    assert response.status_code == 400
    assert problem in response.get_data(as_text=True)
    with portal_app.app_context():
        assert db.session.scalars(select(Message)).all() == []
    missing = admin_client.post("/admin/guests/4242/message", data={"action": "send", "text": "hi"})
    assert missing.status_code == 404


def test_message_form_needs_its_csrf_token(portal_app: Flask, admin_client: FlaskClient) -> None:
    guest_id = add_guest(portal_app, PHONE)
    portal_app.config["WTF_CSRF_ENABLED"] = True
    refused = admin_client.post(
        f"/admin/guests/{guest_id}/message", data={"action": "send", "text": "hi"}
    )
    assert refused.status_code == 400
    with portal_app.app_context():
        assert db.session.scalars(select(Message)).all() == []


def test_opt_out_withdraws_consent_and_can_be_undone(
    portal_app: Flask, admin_client: FlaskClient
) -> None:
    guest_id = add_guest(portal_app, PHONE, marketing_consent=True, consent_at=NOW)
    url = f"/admin/guests/{guest_id}/opt-out"
    for bad in ({}, {"opted_out": "yes"}):
        refused = admin_client.post(url, data=bad)
        assert refused.status_code == 400
        assert "Choose whether the guest opted out." in refused.get_data(as_text=True)
    done = admin_client.post(url, data={"opted_out": "1"})
    assert (done.status_code, done.headers["Location"]) == (303, f"/admin/guests/{guest_id}")
    with portal_app.app_context():
        guest = db.session.get(Guest, guest_id)
        assert guest.opted_out_at is not None
        assert (guest.marketing_consent, guest.consent_at) == (False, None)
        first = guest.opted_out_at
        entry = db.session.get(OptOut, PHONE)  # on the extension's list too
        assert entry is not None and entry.source == "admin"
    admin_client.post(url, data={"opted_out": "1"})  # again: the first time is kept
    with portal_app.app_context():
        assert db.session.get(Guest, guest_id).opted_out_at == first
    page = admin_client.get(f"/admin/guests/{guest_id}").get_data(as_text=True)
    assert "The guest is marked as opted out" in page and "Undo opt-out" in page
    admin_client.post(url, data={"opted_out": "0"})
    with portal_app.app_context():
        guest = db.session.get(Guest, guest_id)
        assert (guest.opted_out_at, guest.marketing_consent) == (None, False)
        assert db.session.get(OptOut, PHONE) is None
    portal_app.config["WTF_CSRF_ENABLED"] = True
    assert admin_client.post(url, data={"opted_out": "1"}).status_code == 400


def test_send_while_sending_is_switched_off_says_so(
    portal_app: Flask, admin_client: FlaskClient
) -> None:
    guest_id = add_guest(portal_app, PHONE)
    switched = admin_client.post("/sms/admin/settings", data={"days_to_expire": "2"})
    assert switched.status_code == 302
    sent = admin_client.post(
        f"/admin/guests/{guest_id}/message", data={"action": "send", "text": "Hi"}
    )
    assert sent.status_code == 303
    page = admin_client.get(f"/admin/guests/{guest_id}").get_data(as_text=True)
    assert "was not sent: SMS sending is switched off." in page
    with portal_app.app_context():
        (message,) = db.session.scalars(select(Message)).all()
        assert (message.status, message.sent_by) == (Status.FAILED, "ops")
