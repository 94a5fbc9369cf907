"""Portal admin login (Flask-Login) and the SMS admin's deny-by-default access."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import select

from portal.cli import create_admin_command
from portal.extensions import db
from portal.models import Admin
from sms_ext import Message
from tests.helpers import custom_gateway
from tests.simulator import GatewaySimulator


def add_admin(app: Flask, username: str = "ops", password: str = "correct horse battery") -> None:
    with app.app_context():
        admin = Admin(username=username)
        admin.set_password(password)
        db.session.add(admin)
        db.session.commit()


def test_sms_admin_redirects_anonymous_visitors_to_login(portal_app: Flask) -> None:
    client = portal_app.test_client()
    response = client.get("/sms/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login?next=/sms/admin/")


def test_login_then_admin_then_logout(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = portal_app.test_client()
    page = client.get("/admin/login")
    assert page.status_code == 200
    assert 'autocomplete="current-password"' in page.get_data(as_text=True)
    done = client.post(
        "/admin/login?next=/sms/admin/",
        data={"username": "ops", "password": "correct horse battery"},
    )
    assert (done.status_code, done.headers["Location"]) == (302, "/sms/admin/")
    assert client.get("/sms/admin/").status_code == 200
    assert client.post("/admin/logout").status_code == 302
    assert client.get("/sms/admin/").status_code == 302


def test_a_gateway_test_records_which_admin_sent_it(
    portal_app: Flask, simulator: GatewaySimulator
) -> None:
    add_admin(portal_app)
    with portal_app.app_context():
        gateway_id = custom_gateway(portal_app, simulator, "main").id
    client = portal_app.test_client()
    client.post("/admin/login", data={"username": "ops", "password": "correct horse battery"})
    sent = client.post(f"/sms/admin/gateways/{gateway_id}/test", data={"phone": "+27831234567"})
    assert sent.status_code == 303
    with portal_app.app_context():
        (message,) = db.session.scalars(select(Message)).all()
        assert (message.kind, message.sent_by) == ("test", "ops")


def test_wrong_password_and_bad_input(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = portal_app.test_client()
    wrong = client.post("/admin/login", data={"username": "ops", "password": "nope"})
    assert wrong.status_code == 401
    assert "Wrong username or password." in wrong.get_data(as_text=True)
    unknown = client.post("/admin/login", data={"username": "ghost", "password": "x" * 12})
    assert unknown.status_code == 401
    empty = client.post("/admin/login", data={"username": "", "password": ""})
    assert empty.status_code == 400
    huge = client.post("/admin/login", data={"username": "x" * 5000, "password": "y"})
    assert huge.status_code == 400


def test_next_never_leaves_the_site(portal_app: Flask) -> None:
    add_admin(portal_app)
    client = portal_app.test_client()
    for target in ("https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        done = client.post(
            f"/admin/login?next={target}",
            data={"username": "ops", "password": "correct horse battery"},
        )
        assert done.headers["Location"] == "/sms/admin/", target


def test_login_form_needs_its_csrf_token(portal_app: Flask) -> None:
    portal_app.config["WTF_CSRF_ENABLED"] = True
    add_admin(portal_app)
    client = portal_app.test_client()
    refused = client.post(
        "/admin/login", data={"username": "ops", "password": "correct horse battery"}
    )
    assert refused.status_code == 400
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"',
        client.get("/admin/login").get_data(as_text=True),
    )[1]
    accepted = client.post(
        "/admin/login",
        data={"username": "ops", "password": "correct horse battery", "csrf_token": token},
    )
    assert accepted.status_code == 302


def test_create_admin_command(portal_app: Flask) -> None:
    runner = portal_app.test_cli_runner()
    result = runner.invoke(create_admin_command, ["boss", "--password", "long enough secret"])
    assert result.exit_code == 0 and "Admin 'boss' created." in result.output
    result = runner.invoke(create_admin_command, ["boss", "--password", "another long one"])
    assert "password changed" in result.output
    result = runner.invoke(create_admin_command, ["boss", "--password", "short"])
    assert result.exit_code == 2 and "at least 10 characters" in result.output
    with portal_app.app_context():
        admin = db.session.scalar(select(Admin).where(Admin.username == "boss"))
        assert admin.check_password("another long one")
        assert "another long one" not in admin.password_hash


def test_a_username_the_database_cannot_compare_is_refused_with_a_sentence(
    portal_app: Flask,
) -> None:
    add_admin(portal_app)
    client = portal_app.test_client()
    for username in ("o\x00ps", "ops\nadmin", "x" * 81):
        page = client.post("/admin/login", data={"username": username, "password": "whatever"})
        assert page.status_code == 400, username
        text = page.get_data(as_text=True)
        assert "Username must" in text
    assert "Log out" not in client.get("/admin/login").get_data(as_text=True)


def test_every_portal_admin_write_needs_the_csrf_token(portal_app: Flask) -> None:
    """Deny by default: each POST route of the portal's admin pages (vouchers, guests,
    locations, and any added later) refuses a request without this session's token."""
    add_admin(portal_app)
    portal_app.config["WTF_CSRF_ENABLED"] = True
    client = portal_app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', login).group(1)
    done = client.post(
        "/admin/login",
        data={"username": "ops", "password": "correct horse battery", "csrf_token": token},
    )
    assert done.status_code == 302
    posts = [
        rule.rule.replace("<int:voucher_id>", "1").replace("<int:guest_id>", "1")
        for rule in portal_app.url_map.iter_rules()
        if rule.endpoint.startswith("portal_admin.") and "POST" in (rule.methods or ())
    ]
    assert any("voucher" in path for path in posts) and len(posts) >= 5, posts
    for path in posts:
        refused = client.post(path, data={"count": "5", "duration": "2h"})
        assert refused.status_code == 400, path
        assert "CSRF" in refused.get_data(as_text=True), path
