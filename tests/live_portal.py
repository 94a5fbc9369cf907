"""The demo portal served for real on a loopback port, with a real worker: for browser tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from playwright.sync_api import Page
from werkzeug.serving import make_server

from portal import create_app
from portal.extensions import db
from tests.conftest import TEST_KEY, _empty_tables
from tests.helpers import stop_worker, worker_process


def fresh_portal(service_urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The demo portal on the test's database (every table emptied) and Redis, CSRF on.

    It has its own queue (and so its own OTP limit keys): a test run elsewhere on the same
    Redis database must not take its jobs nor count its codes.
    """
    database_url, redis_url = service_urls
    queue = f"sms-browser-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FLASK_SMS_QUEUE", queue)  # read by the worker process
    app = create_app(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SMS_REDIS_URL": redis_url,
            "SMS_QUEUE": queue,
            "SMS_RETRY_BASE_SECONDS": 1,
            "PORTAL_DEMO": True,
        }
    )
    with app.app_context():
        db.create_all()  # the portal's tables; the extension's exist already (database_urls)
        with db.engine.begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())
        _empty_tables(db)
    return app


@contextmanager
def serving(app: Flask, service_urls: tuple[str, str]) -> Iterator[str]:
    """Serve ``app`` on a free loopback port with a real worker process; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    worker = worker_process(*service_urls)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        stop_worker(worker)
        print(worker.stdout.read().decode(errors="replace"))  # shown when the test failed
        server.shutdown()
        server.server_close()
        thread.join()
        with app.app_context():
            db.engine.dispose()


USERNAME, PASSWORD = "ops", "correct horse battery"
"""The admin the browser tests log in as (``tests.test_portal_admin.add_admin``'s defaults)."""


def log_in(
    page: Page, base: str, path: str, username: str = USERNAME, password: str = PASSWORD
) -> None:
    """Open an admin ``path``, get sent to the login form, log in there, land back on it."""
    page.goto(f"{base}{path}")
    page.wait_for_url(f"{base}/admin/login?next=**")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}{path}")
