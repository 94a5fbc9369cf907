"""Admin sessions end for real (logout, password change), cookies are Lax, pages cannot be
framed, and logging out needs the form's CSRF token."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.cli import create_admin_command
from tests.test_portal_admin import add_admin

PASSWORD = "correct horse battery"


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    done = client.post("/admin/login", data={"username": "ops", "password": PASSWORD})
    assert done.status_code == 302
    assert client.get("/sms/admin/").status_code == 200
    return client


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of ``client``'s session cookie."""
    thief = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief.set_cookie("session", cookie.value)
    return thief


def test_logout_ends_copies_of_the_session_cookie(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = logged_in(portal_app)
    thief = copy_of(portal_app, client)
    assert thief.get("/sms/admin/").status_code == 200
    assert client.post("/admin/logout").status_code == 302
    assert client.get("/sms/admin/").status_code == 302
    refused = thief.get("/sms/admin/")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/admin/login")
    # Logging in again makes a new session; the copied one stays dead.
    logged_in(portal_app)
    assert thief.get("/sms/admin/").status_code == 302


def test_password_change_ends_existing_sessions(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = logged_in(portal_app)
    result = portal_app.test_cli_runner().invoke(
        create_admin_command, ["ops", "--password", "a new long password"]
    )
    assert result.exit_code == 0, result.output
    assert client.get("/sms/admin/").status_code == 302


def test_logout_needs_the_csrf_token(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = logged_in(portal_app)
    portal_app.config["WTF_CSRF_ENABLED"] = True
    refused = client.post("/admin/logout")
    assert refused.status_code == 400
    assert "press Log out again" in refused.get_data(as_text=True)
    assert client.get("/sms/admin/").status_code == 200  # still logged in

    menu = client.get("/sms/admin/").get_data(as_text=True)
    form = re.search(
        r'<form class="logout" method="post" action="([^"]+)">(.*?)</form>', menu, re.S
    )
    assert form is not None and form[1] == "/admin/logout"
    token = re.search(r'name="csrf_token" value="([^"]+)"', form[2])[1]
    assert "Log out" in form[2]
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/sms/admin/").status_code == 302


def test_session_cookie_is_lax_and_secure_when_configured(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = portal_app.test_client()
    client.post("/admin/login", data={"username": "ops", "password": PASSWORD})
    cookie = client.get_cookie("session")
    assert cookie.same_site == "Lax" and cookie.http_only and not cookie.secure
    portal_app.config["SESSION_COOKIE_SECURE"] = True
    secure = portal_app.test_client()
    response = secure.post("/admin/login", data={"username": "ops", "password": PASSWORD})
    assert "; Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/admin/login",
        "/sms/admin/",
        "/sms/admin/gateways/",
        "/s/demo/",
        "/demo/inbox",
        "/nope",
    ],
)
def test_every_page_refuses_framing_and_sniffing(portal_app: Flask, path: str) -> None:
    add_admin(portal_app)
    portal_app.test_cli_runner().invoke(args=["portal", "seed-demo"])
    response = logged_in(portal_app).get(path)
    assert response.status_code in (200, 404), path
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
