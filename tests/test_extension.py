"""Registering the extension: config validation at start-up and clear misuse errors."""

from __future__ import annotations

import os
import time

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy

from sms_ext import SMS, ConfigError, metadata
from sms_ext.connections import mask_url
from sms_ext.state import embedded_redis_socket, get_state, stop_embedded_redis
from tests.conftest import TEST_KEY


def bare_app(**config: object) -> Flask:
    app = Flask("cfg")
    app.config.update({"SECRET_KEY": TEST_KEY, "SQLALCHEMY_DATABASE_URI": "sqlite://", **config})
    SQLAlchemy(metadata=metadata).init_app(app)
    return app


def test_defaults_are_applied_and_state_registered() -> None:
    app = bare_app()
    sms = SMS(app)
    state = app.extensions["sms"]
    assert not hasattr(state, "extension")  # the state never reaches back to the SMS object

    def check() -> bool:
        return True

    sms.admin_check(check)  # registered after init_app: the state sees it all the same
    assert state.registrations.admin_callback is check
    assert state.settings.admin_full_numbers is False
    assert app.config["SMS_DAYS_TO_EXPIRE"] == 2
    assert app.config["SMS_QUEUE"] == "sms"
    assert state.settings.sending_enabled is True
    assert state.settings.redis_url is None
    assert "sms" in app.cli.commands


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"SMS_DAYS_TO_EXPIRE": "soon"}, "SMS_DAYS_TO_EXPIRE must be a number"),
        ({"SMS_DAYS_TO_EXPIRE": 90}, "SMS_DAYS_TO_EXPIRE must be between 0.01 and 30"),
        ({"SMS_SENDING_ENABLED": "maybe"}, "SMS_SENDING_ENABLED must be true or false"),
        ({"SMS_ADMIN_FULL_NUMBERS": "maybe"}, "SMS_ADMIN_FULL_NUMBERS must be true or false"),
        ({"SMS_REDIS_URL": "localhost:6379"}, "SMS_REDIS_URL must start with redis://"),
        ({"SMS_DEFAULT_REGION": "Germany"}, "SMS_DEFAULT_REGION must be a two-letter region"),
        ({"SMS_QUEUE": "sms queue!"}, "SMS_QUEUE must be a queue name"),
        ({"SMS_BATCH_SIZE": 0}, "SMS_BATCH_SIZE must be between 1 and 5000"),
        (
            {"SMS_RETRY_BASE_SECONDS": 100, "SMS_RETRY_MAX_SECONDS": 10},
            "SMS_RETRY_MAX_SECONDS must not be below SMS_RETRY_BASE_SECONDS",
        ),
        ({"SECRET_KEY": "short"}, "set SMS_ENCRYPTION_KEY (or SECRET_KEY)"),
    ],
)
def test_bad_config_fails_at_start(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SMS(bare_app(**config))


def test_region_is_normalised() -> None:
    app = bare_app(SMS_DEFAULT_REGION="za")
    SMS(app)
    assert app.extensions["sms"].settings.default_region == "ZA"


def test_flask_sqlalchemy_is_required() -> None:
    app = Flask("nodb")
    app.config["SECRET_KEY"] = TEST_KEY
    with pytest.raises(RuntimeError, match=r"call 'db.init_app\(app\)' before 'sms.init_app"):
        SMS(app)


def test_unregistered_app_gets_a_clear_error() -> None:
    app = bare_app()
    with app.app_context(), pytest.raises(RuntimeError, match="Did you forget to call"):
        get_state()


def test_one_extension_serves_two_apps() -> None:
    sms = SMS()
    first, second = bare_app(SMS_QUEUE="one"), bare_app(SMS_QUEUE="two")
    sms.init_app(first)
    sms.init_app(second)
    assert first.extensions["sms"].settings.queue == "one"
    assert second.extensions["sms"].settings.queue == "two"
    assert first.extensions["sms"].registrations is second.extensions["sms"].registrations


def test_full_numbers_are_read_into_the_settings() -> None:
    app = bare_app(SMS_ADMIN_FULL_NUMBERS="yes")  # as an environment variable gives it
    SMS(app)
    assert app.extensions["sms"].settings.admin_full_numbers is True


def test_embedded_redis_without_url(tmp_path) -> None:
    app = Flask("embedded", instance_path=str(tmp_path))
    app.config.update(SECRET_KEY=TEST_KEY, SQLALCHEMY_DATABASE_URI="sqlite://")
    SQLAlchemy(metadata=metadata).init_app(app)
    SMS(app)
    redis = app.extensions["sms"].redis
    try:
        socket = redis.connection_pool.connection_kwargs["path"]
        assert socket == embedded_redis_socket(str(tmp_path))  # one server per instance folder
        redis.set("probe", "1")
        assert redis.get("probe") == b"1"
        assert app.extensions["sms"].queue.count == 0
    finally:
        stop_embedded_redis(str(tmp_path))
    deadline = time.monotonic() + 5
    while os.path.exists(socket) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(socket)  # the server is gone, not left running


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        ("rediss://user:p%40ss@redis/1", "rediss://user:***@redis/1"),
        ("unix:///run/redis.sock?db=2&password=s3cret", "unix:///run/redis.sock?db=2&password=***"),
        (
            "postgresql+psycopg://portal:s3cret@db/portal",
            "postgresql+psycopg://portal:***@db/portal",
        ),
        (
            "postgresql+psycopg://portal@/portal?host=/run&Password=x",
            "postgresql+psycopg://portal@/portal?host=/run&Password=***",
        ),
        ("sqlite:////srv/portal/instance/portal.db", "sqlite:////srv/portal/instance/portal.db"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://[", "(an unreadable URL)"),
    ],
)
def test_urls_are_shown_without_their_passwords(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_host_admin_pages_join_the_menu(app: Flask, admin_client: FlaskClient, sms: SMS) -> None:
    """A host page registered with ``admin_page`` is in the menu of every admin page."""

    @app.get("/host-admin/rooms")
    def rooms() -> str:
        return render_template_string('{% extends "sms/admin/base.html" %}')

    sms.admin_page("rooms", "Rooms")
    sms.admin_page("rooms", "Rooms")  # twice is once
    for path in ("/sms/admin/", "/host-admin/rooms"):
        page = admin_client.get(path).get_data(as_text=True)
        assert page.count('href="/host-admin/rooms"') == 1, path
        assert page.index(">Settings<") < page.index(">Rooms<")
