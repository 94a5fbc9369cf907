"""The public landing page shows links only, and the demo pages exist only with PORTAL_DEMO."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from flask import Flask

from portal import create_app
from portal.extensions import db, sms
from sms_ext import ConfigError, Message, Status
from tests.conftest import TEST_KEY
from tests.helpers import ROOT

LEAKED_ERROR = "Lua error near api_secret=sk_live_9f8e7d6c5b4a"


@pytest.fixture
def plain_app(portal_app: Flask) -> Iterator[Flask]:
    """The portal as ``wsgi:app`` builds it by default (no PORTAL_DEMO), on the test's tables."""
    app = create_app(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": portal_app.config["SQLALCHEMY_DATABASE_URI"],
            "SMS_REDIS_URL": portal_app.config["SMS_REDIS_URL"],
        }
    )
    yield app
    with app.app_context():
        db.engine.dispose()


def test_landing_page_shows_no_gateway_number_count_or_error(plain_app: Flask) -> None:
    with plain_app.app_context():
        sms.save_gateway({"name": "Acme Bulk SMS (primary)", "type": "sandbox"})
        message = sms.send("+27831234567", "hello", commit=False)
        message.status, message.last_error = Status.FAILED, LEAKED_ERROR
        db.session.commit()
        assert db.session.get(Message, message.id).last_error == LEAKED_ERROR
    page = plain_app.test_client().get("/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    for private in ("Acme Bulk SMS", "sk_live", "api_secret", "83123", "4567", "failed"):
        assert private not in text, private
    assert 'href="/sms/admin/"' in text
    assert "/demo/inbox" not in text and "/s/demo/" not in text


def test_demo_pages_and_links_only_in_demo_mode(plain_app: Flask, portal_app: Flask) -> None:
    assert plain_app.test_client().get("/demo/inbox").status_code == 404
    assert plain_app.test_client().get("/demo/controller-login").status_code == 404
    demo = portal_app.test_client()  # conftest's portal_app runs with PORTAL_DEMO
    text = demo.get("/").get_data(as_text=True)
    assert 'href="/demo/inbox"' in text and 'href="/sms/admin/"' in text
    assert 'href="/s/demo/?mac=02:00:00:00:00:01&amp;ip=10.0.0.23' in text
    assert demo.get("/demo/inbox").status_code == 200


def wsgi_routes(**env: str) -> list[str]:
    """The URL rules of ``wsgi:app`` built in a fresh interpreter with this environment."""
    clean = {k: v for k, v in os.environ.items() if "PORTAL_DEMO" not in k}
    script = "import json, wsgi; print(json.dumps([r.rule for r in wsgi.app.url_map.iter_rules()]))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **clean,
            "FLASK_SECRET_KEY": TEST_KEY,  # else the app would write instance/config.py
            "FLASK_SQLALCHEMY_DATABASE_URI": "sqlite://",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_wsgi_app_has_demo_pages_only_when_portal_demo_is_set() -> None:
    assert not [rule for rule in wsgi_routes() if rule.startswith("/demo/")]
    assert "/demo/inbox" in wsgi_routes(PORTAL_DEMO="1")
    assert "/demo/inbox" in wsgi_routes(FLASK_PORTAL_DEMO="true")
    assert "/demo/inbox" not in wsgi_routes(PORTAL_DEMO="0")


def test_bad_portal_demo_value_fails_at_start(database_urls: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="PORTAL_DEMO must be 1 or 0"):
        create_app(
            {
                "SECRET_KEY": TEST_KEY,
                "SQLALCHEMY_DATABASE_URI": database_urls["sqlite"],
                "PORTAL_DEMO": "maybe",
            }
        )
