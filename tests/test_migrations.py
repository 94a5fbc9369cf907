"""The committed migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from portal import create_app
from portal.extensions import db
from sms_ext import metadata
from tests.conftest import BACKENDS, PG_URL, TEST_KEY


@pytest.fixture(params=BACKENDS)
def empty_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A database with nothing in it (a new PostgreSQL schema, or a new SQLite file)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    schema = f"sms_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_upgrade_matches_models_and_downgrades(empty_database: str) -> None:
    app = create_app({"SECRET_KEY": TEST_KEY, "SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection), [db.metadata, metadata]
            )
            assert differences == []
            tables = set(inspect(connection).get_table_names())
        assert {"sms_gateway", "sms_message", "sms_message_attempt"} <= tables
        downgrade(revision="base")
        with db.engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_gateways_that_had_a_script_keep_running_it(empty_database: str) -> None:
    """The Lua toggle (b2c3d4e5f6a7) starts on where a script was saved: it used to run."""
    app = create_app({"SECRET_KEY": TEST_KEY, "SQLALCHEMY_DATABASE_URI": empty_database})
    with app.app_context():
        upgrade(revision="b1c2d3e4f5a6")
        insert = text(
            "INSERT INTO sms_gateway (name, type, enabled, priority, locations, settings,"
            " created_at, updated_at) VALUES (:name, 'custom', true, 1, '[]', :settings,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        with db.engine.begin() as connection:
            connection.execute(insert, {"name": "plain", "settings": '{"url": "https://x.io"}'})
            connection.execute(insert, {"name": "scripted", "settings": '{"lua_script": "x=1"}'})
        upgrade(revision="b2c3d4e5f6a7")
        with db.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT name, lua_enabled FROM sms_gateway ORDER BY name")
            )
            assert [(name, bool(on)) for name, on in rows] == [("plain", False), ("scripted", True)]
        downgrade(revision="base")
        db.engine.dispose()
