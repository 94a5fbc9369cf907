"""Admin pages of locations and splash pages: settings, the SMS verification switch, gateways."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.extensions import db
from portal.models import Admin, Location, SplashPage
from sms_ext import Gateway
from tests.conftest import drain
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator

CONTROLLER = (
    "mac=02:00:00:00:00:01&link-login-only=http://10.5.50.1/login&link-orig=http://a.example/"
)
FORM = {
    "name": "Café Central",
    "slug": "cafe",
    "region": "za",
    "timezone": "Africa/Johannesburg",
    "language": "es",
    "title": "Wi-Fi at Café Central",
    "text": "Welcome!\nFree for two hours.",
    "terms": "",
    "brand_color": "#7C2D12",
    "otp_enabled": "yes",
}


@pytest.fixture
def staff(portal_app: Flask) -> FlaskClient:
    """A client logged in as a portal admin (CSRF is off in ``portal_app``)."""
    with portal_app.app_context():
        admin = Admin(username="ops")
        admin.set_password("correct horse battery")
        db.session.add(admin)
        db.session.commit()
    client = portal_app.test_client()
    done = client.post(
        "/admin/login", data={"username": "ops", "password": "correct horse battery"}
    )
    assert done.status_code == 302
    return client


def save(client: FlaskClient, path: str = "/admin/locations/new", **changes: Any):
    data = {**FORM, **changes}
    return client.post(path, data={k: v for k, v in data.items() if v is not None})


def location(app: Flask, slug: str) -> Location | None:
    with app.app_context():
        found = db.session.scalar(select(Location).where(Location.slug == slug))
        if found is not None:
            db.session.expunge(found.splash_page)
            db.session.expunge(found)
        return found


def gateway_lists(app: Flask) -> dict[str, list[str]]:
    with app.app_context():
        return {g.name: list(g.locations) for g in db.session.scalars(Gateway.in_order())}


def test_pages_need_a_logged_in_admin(portal_app: Flask) -> None:
    client = portal_app.test_client()
    for method, path in [
        ("GET", "/admin/locations"),
        ("GET", "/admin/locations/new"),
        ("POST", "/admin/locations/new"),
        ("GET", "/admin/locations/1"),
    ]:
        response = client.open(path, method=method, data=FORM)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/admin/login?next=")
    assert location(portal_app, "cafe") is None


def test_create_list_edit_and_the_splash_page_follows(
    portal_app: Flask, staff: FlaskClient
) -> None:
    menu = staff.get("/sms/admin/").get_data(as_text=True)
    assert re.search(r'href="/admin/locations" *>Locations</a>', menu)
    assert staff.get("/admin/locations").status_code == 200
    form = staff.get("/admin/locations/new").get_data(as_text=True)
    assert 'role="switch" name="otp_enabled"' in form

    created = save(staff)
    assert created.status_code == 303 and created.headers["Location"] == "/admin/locations"
    cafe = location(portal_app, "cafe")
    assert (cafe.name, cafe.region, cafe.timezone, cafe.language) == (
        "Café Central",
        "ZA",
        "Africa/Johannesburg",
        "es",
    )
    page = cafe.splash_page
    assert (page.title, page.text, page.brand_color, page.otp_enabled, page.terms) == (
        "Wi-Fi at Café Central",
        "Welcome!\nFree for two hours.",
        "#7c2d12",
        True,
        "",
    )
    listing = staff.get("/admin/locations").get_data(as_text=True)
    assert "Café Central" in listing and "<code>cafe</code>" in listing and "Español" in listing
    assert '<span class="on">On</span>' in listing

    guest = portal_app.test_client()
    splash = guest.get("/s/cafe/").get_data(as_text=True)
    assert "Welcome!\nFree for two hours." in splash and "--accent: #7c2d12;" in splash

    # Edit in the same process: the guest sees the change with the next request.
    edited = save(
        staff,
        f"/admin/locations/{cafe.id}",
        slug="cafe-2",
        title="New title",
        otp_enabled=None,
        brand_color="#14532d",
        text="",
    )
    assert edited.status_code == 303
    assert location(portal_app, "cafe") is None
    renamed = location(portal_app, "cafe-2")
    assert renamed.id == cafe.id and renamed.splash_page.otp_enabled is False
    assert guest.get("/s/cafe/").status_code == 404
    splash = guest.get("/s/cafe-2/").get_data(as_text=True)
    assert "New title" in splash and "--accent: #14532d;" in splash
    # Empty text: the default line, in the location's language (es).
    assert "Introduce tu número de móvil para conectarte." in splash
    assert '<span class="off">Off</span>' in staff.get("/admin/locations").get_data(as_text=True)
    edit_form = staff.get(f"/admin/locations/{cafe.id}").get_data(as_text=True)
    assert (
        'value="cafe-2"' in edit_form
        and 'name="otp_enabled" value="yes" id="otp_enabled" ' in edit_form
    )


@pytest.mark.parametrize(
    ("changes", "field_message"),
    [
        ({"name": "  "}, "Name is required."),
        ({"name": "x" * 121}, "Name must be at most 120 characters."),
        ({"slug": "Cafe"}, "Key may hold only lowercase letters"),
        ({"slug": "cafe--bar"}, "Key may hold only lowercase letters"),
        ({"slug": "-cafe"}, "Key may hold only lowercase letters"),
        ({"slug": "café"}, "Key may hold only lowercase letters"),
        ({"slug": "a\x00b"}, "Key must not contain NUL characters."),
        ({"slug": None}, "Key is required."),
        ({"region": "XX"}, "Region must be a two-letter country code"),
        ({"region": "ZAF"}, "Region must be a two-letter country code"),
        ({"timezone": "Mars/Olympus"}, "Timezone must be an IANA name"),
        ({"timezone": "../../etc/passwd"}, "Timezone must be an IANA name"),
        ({"language": "xx"}, "Choose one of the listed languages."),
        ({"title": ""}, "Page title is required."),
        ({"text": "x" * 2001}, "Welcome text must be at most 2,000 characters."),
        ({"terms": "a\x00"}, "Terms of use must not contain NUL characters."),
        ({"brand_color": "red"}, "Brand colour must be #rrggbb"),
        ({"brand_color": "#12345"}, "Brand colour must be #rrggbb"),
        ({"brand_color": "#ffff00"}, "too light for the white button text"),
        ({"gateways": "abc"}, "Choose gateways from the list."),
        ({"gateways": "999999"}, "No gateway with id 999999."),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    portal_app: Flask, staff: FlaskClient, changes: dict[str, Any], field_message: str
) -> None:
    response = save(staff, **changes)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert "The location was not saved" in body
    assert field_message in re.sub(r"&#3[49];", "'", body)
    assert 'aria-invalid="true"' in body
    with portal_app.app_context():
        assert db.session.scalars(select(Location)).all() == []
        assert db.session.scalars(select(SplashPage)).all() == []


def test_keys_are_unique_and_unknown_ids_are_404(portal_app: Flask, staff: FlaskClient) -> None:
    assert save(staff).status_code == 303
    assert save(staff, slug="pool", name="Pool").status_code == 303
    clash = save(staff, name="Other")
    assert clash.status_code == 400
    assert "The key &#39;cafe&#39; is already used by &#39;Café Central&#39;." in clash.get_data(
        as_text=True
    )
    pool = location(portal_app, "pool")
    renamed_onto = save(staff, f"/admin/locations/{pool.id}", slug="cafe")
    assert renamed_onto.status_code == 400
    assert location(portal_app, "pool") is not None
    for path in ("/admin/locations/999999", "/admin/locations/abc", "/admin/locations/1e3"):
        assert staff.get(path).status_code == 404
        assert save(staff, path).status_code == 404


def test_posts_need_the_csrf_token(portal_app: Flask, staff: FlaskClient) -> None:
    portal_app.config["WTF_CSRF_ENABLED"] = True
    refused = save(staff)
    assert refused.status_code == 400
    assert location(portal_app, "cafe") is None
    form = staff.get("/admin/locations/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    assert save(staff, csrf_token=token).status_code == 303


def test_the_switch_turns_sms_codes_on_and_off_for_guests(
    portal_app: Flask, staff: FlaskClient, simulator: GatewaySimulator
) -> None:
    with portal_app.app_context():
        custom_gateway(portal_app, simulator, "main")
    assert save(staff).status_code == 303
    guest = portal_app.test_client()

    on = guest.post(f"/s/cafe/?{CONTROLLER}", data={"phone": "083 123 4567"})
    assert on.status_code == 200 and 'id="code"' in on.get_data(as_text=True)
    assert "--accent: #7c2d12" in on.get_data(as_text=True)  # the code page wears the brand
    drain(portal_app)
    (sent,) = simulator.wait_for_requests(1, target="custom")
    assert sent.json["to"] in ("+27831234567", "27831234567")
    assert re.search(r"\d{4,}", sent.json["text"])

    cafe = location(portal_app, "cafe")
    assert save(staff, f"/admin/locations/{cafe.id}", otp_enabled=None).status_code == 303
    off = portal_app.test_client().post(f"/s/cafe/?{CONTROLLER}", data={"phone": "083 123 4567"})
    assert off.status_code == 303
    assert off.headers["Location"] == f"http://10.5.50.1/login?{CONTROLLER}"
    drain(portal_app)
    assert len(simulator.requests_for("custom")) == 1  # no second SMS

    assert save(staff, f"/admin/locations/{cafe.id}").status_code == 303  # and on again
    again = portal_app.test_client().post(f"/s/cafe/?{CONTROLLER}", data={"phone": "0821112222"})
    assert again.status_code == 200 and 'id="code"' in again.get_data(as_text=True)


def test_a_guests_code_goes_through_the_locations_chosen_gateway(
    portal_app: Flask, staff: FlaskClient, simulator: GatewaySimulator
) -> None:
    with portal_app.app_context():
        first = custom_gateway(portal_app, simulator, "first", priority=1)
        second = custom_gateway(portal_app, simulator, "second", priority=2)
        first_id, second_id = first.id, second.id
    assert save(staff, slug="pool", name="Pool").status_code == 303
    form = staff.get("/admin/locations/new").get_data(as_text=True)
    assert form.count('name="gateways"') == 2 and form.count(" checked>") >= 2  # open to all

    assert save(staff, gateways=str(second_id)).status_code == 303
    assert gateway_lists(portal_app) == {"first": ["pool"], "second": []}
    listing = staff.get("/admin/locations").get_data(as_text=True)
    assert re.search(r"<code>cafe</code>.*?<td>second</td>", listing, re.S)

    portal_app.test_client().post("/s/cafe/", data={"phone": "083 123 4567"})
    portal_app.test_client().post("/s/pool/", data={"phone": "083 765 4321"})
    drain(portal_app)
    simulator.wait_for_requests(2, target="custom")
    by_path = {r.path: r.json["to"] for r in simulator.requests_for("custom")}
    assert by_path == {"/custom/second": "+27831234567", "/custom/first": "+27837654321"}

    # A gateway serving only this location cannot be unticked: 400, nothing changed.
    cafe = location(portal_app, "cafe")
    with portal_app.app_context():
        db.session.get(Gateway, second_id).locations = ["cafe"]
        db.session.commit()
    refused = save(staff, f"/admin/locations/{cafe.id}", gateways=str(first_id), title="Changed")
    assert refused.status_code == 400
    assert "serves no other location" in refused.get_data(as_text=True)
    assert location(portal_app, "cafe").splash_page.title == FORM["title"]
    assert gateway_lists(portal_app) == {"first": ["pool"], "second": ["cafe"]}

    # Renaming the key keeps the mapping.
    assert (
        save(
            staff, f"/admin/locations/{cafe.id}", slug="cafe-2", gateways=str(second_id)
        ).status_code
        == 303
    )
    assert gateway_lists(portal_app) == {"first": ["pool"], "second": ["cafe-2"]}
    # Nothing ticked: every gateway serves it (and "first" is open to every location again).
    assert save(staff, f"/admin/locations/{cafe.id}", slug="cafe-2").status_code == 303
    assert gateway_lists(portal_app) == {"first": [], "second": ["cafe-2"]}


def test_a_location_can_follow_each_guests_browser_language(
    portal_app: Flask, staff: FlaskClient
) -> None:
    """The issue's rule "the location's language, or the browser's": an admin picks either."""
    new = staff.get("/admin/locations/new").get_data(as_text=True)
    assert re.search(r'<option value="" selected>Guest&#39;s browser \(automatic\)</option>', new)
    assert save(staff, language="").status_code == 303
    assert location(portal_app, "cafe").language == ""
    assert "Guest&#39;s browser (automatic)" in staff.get("/admin/locations").get_data(as_text=True)
    spanish = portal_app.test_client().get("/s/cafe/", headers={"Accept-Language": "es-ES,es"})
    english = portal_app.test_client().get("/s/cafe/", headers={"Accept-Language": "en-GB,en"})
    assert '<html lang="es">' in spanish.get_data(as_text=True)
    assert '<html lang="en">' in english.get_data(as_text=True)
