"""Failed admin logins are throttled per IP and per username, in Redis; unknown users cost a
password hash like real ones."""

from __future__ import annotations

import statistics
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal import create_app
from sms_ext import ConfigError
from tests.conftest import TEST_KEY
from tests.test_portal_admin import add_admin

PASSWORD = "correct horse battery"


def attempt(client: FlaskClient, username: str, password: str, ip: str = "10.0.0.7"):
    return client.post(
        "/admin/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_user_limit_refuses_even_the_right_password_until_the_window_passes(
    portal_app: Flask,
) -> None:
    portal_app.config["PORTAL_LOGIN_LIMIT_USER"] = "10 per 15 minutes"
    add_admin(portal_app)
    client = portal_app.test_client()
    for n in range(10):  # what the attacker did: many wrong passwords, fast
        assert attempt(client, "ops", f"guess-{n}").status_code == 401
    refused = attempt(client, "ops", PASSWORD)
    assert refused.status_code == 429
    assert "Try again in 15 minutes." in refused.get_data(as_text=True)
    assert 890 <= int(refused.headers["Retry-After"]) <= 900
    # The same user from another address is refused too; another user from there is not.
    assert attempt(client, "ops", PASSWORD, ip="10.9.9.9").status_code == 429
    add_admin(portal_app, "boss", PASSWORD)
    assert attempt(client, "boss", PASSWORD, ip="10.9.9.9").status_code == 302


def test_refusal_ends_when_the_window_passes(portal_app: Flask) -> None:
    portal_app.config["PORTAL_LOGIN_LIMIT_USER"] = "3 per 2 seconds"
    add_admin(portal_app)
    client = portal_app.test_client()
    for _ in range(3):
        attempt(client, "ops", "wrong")
    refused = attempt(client, "ops", PASSWORD)
    assert refused.status_code == 429 and "Try again in 1 minute." in refused.get_data(True)
    time.sleep(2.1)
    assert attempt(client, "ops", PASSWORD).status_code == 302


def test_ip_limit_counts_every_username_tried(portal_app: Flask) -> None:
    portal_app.config["PORTAL_LOGIN_LIMIT_IP"] = "5 per 15 minutes"
    add_admin(portal_app)
    client = portal_app.test_client()
    for n in range(5):
        assert attempt(client, f"user{n}", "wrong").status_code == 401
    assert attempt(client, "ops", PASSWORD).status_code == 429
    assert attempt(client, "ops", PASSWORD, ip="10.0.0.8").status_code == 302


def test_only_failures_count(portal_app: Flask) -> None:
    portal_app.config["PORTAL_LOGIN_LIMIT_USER"] = "3 per 15 minutes"
    add_admin(portal_app)
    for _ in range(6):
        assert attempt(portal_app.test_client(), "ops", PASSWORD).status_code == 302
    client = portal_app.test_client()
    for _ in range(2):
        attempt(client, "ops", "wrong")
    assert attempt(client, "ops", PASSWORD).status_code == 302


def test_login_still_works_when_redis_is_down(
    app_without_redis: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    add_admin(app_without_redis)
    client = app_without_redis.test_client()
    assert attempt(client, "ops", "wrong").status_code == 401
    assert attempt(client, "ops", PASSWORD).status_code == 302
    assert "Login throttling is off: Redis cannot be asked" in caplog.text


def test_unknown_users_take_as_long_as_wrong_passwords(portal_app: Flask) -> None:
    """Before the dummy hash: 88 ms for a real user's wrong password, 1.4 ms for an unknown one."""
    portal_app.config["PORTAL_LOGIN_LIMIT_USER"] = "100 per minute"
    portal_app.config["PORTAL_LOGIN_LIMIT_IP"] = "100 per minute"
    add_admin(portal_app)
    client = portal_app.test_client()

    def cpu_seconds(username: str, n: int) -> float:
        """CPU time of this thread (the test client runs the view here), so the other
        processes of a busy machine do not blur the comparison."""
        start = time.thread_time()
        assert attempt(client, username, f"wrong-{n}").status_code == 401
        return time.thread_time() - start

    cpu_seconds("ops", -1)  # warm-up
    known_times, unknown_times = [], []
    for n in range(10):  # interleaved: a slow moment hits both alike
        known_times.append(cpu_seconds("ops", n))
        unknown_times.append(cpu_seconds("nobody-here", n))
    known, unknown = statistics.median(known_times), statistics.median(unknown_times)
    assert 0.5 < unknown / known < 2, (known, unknown)


def test_bad_limits_fail_at_start(database_urls: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="PORTAL_LOGIN_LIMIT_IP must be rate limits"):
        create_app(
            {
                "SECRET_KEY": TEST_KEY,
                "SQLALCHEMY_DATABASE_URI": database_urls["sqlite"],
                "PORTAL_LOGIN_LIMIT_IP": "lots",
            }
        )
