"""The demo captive portal: a small host app that shows how an integrator uses sms_ext."""

from __future__ import annotations

import os
import secrets
from typing import Any

from flask import Flask
from sqlalchemy import event, make_url

from .extensions import db, migrate, sms

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def _ensure_secret_key(app: Flask) -> None:
    """Give a fresh demo install its own random key, kept in ``instance/config.py``.

    Gateway secrets are encrypted with it, so it must survive restarts.
    """
    path = os.path.join(app.instance_path, "config.py")
    os.makedirs(app.instance_path, exist_ok=True)
    key = secrets.token_urlsafe(32)
    with open(path, "a", encoding="utf-8") as config_file:
        config_file.write(f"SECRET_KEY = {key!r}\n")
    app.config["SECRET_KEY"] = key


def _write_ahead_log(connection: Any, _record: Any) -> None:
    """SQLite in WAL mode: the web app reads while the worker writes, and commits are cheaper."""
    connection.execute("PRAGMA journal_mode=WAL")


def _postgresql_timeouts(config: dict[str, Any]) -> dict[str, Any]:
    """A stalled or unreachable database fails a request in seconds instead of holding it:
    connecting, each statement, and unacknowledged writes on a dead connection are bounded."""
    statement_ms = int(float(config["PORTAL_DB_STATEMENT_TIMEOUT"]) * 1000)
    # Options given in the URL (a search_path, say) would be replaced by ours: keep them.
    given = make_url(config["SQLALCHEMY_DATABASE_URI"]).query.get("options", "")
    if not isinstance(given, str):
        given = " ".join(given)
    return {
        "connect_timeout": max(1, int(config["PORTAL_DB_CONNECT_TIMEOUT"])),
        "options": f"{given} -c statement_timeout={statement_ms}".strip(),
        "tcp_user_timeout": statement_ms,
    }


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the portal app; ``test_config`` replaces the instance config and environment."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=None,
        SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "portal.db"),
        SQLALCHEMY_ENGINE_OPTIONS={},
        PORTAL_DB_CONNECT_TIMEOUT=5,
        PORTAL_DB_STATEMENT_TIMEOUT=10,
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env()
        if not app.config["SECRET_KEY"]:
            _ensure_secret_key(app)
    else:
        app.config.update(test_config)
    engine_options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    # A database restart must not fail the next job: test pooled connections before use.
    engine_options.setdefault("pool_pre_ping", True)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # Web and worker processes share the file: wait for the writer instead of failing.
        engine_options.setdefault("connect_args", {"timeout": 30})
    elif app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        engine_options.setdefault("connect_args", _postgresql_timeouts(app.config))

    db.init_app(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        with app.app_context():
            event.listen(db.engine, "connect", _write_ahead_log)
    migrate.init_app(app, db, directory=MIGRATIONS)
    sms.init_app(app)

    from . import auth, cli, demo_pages, models, splash, views  # noqa: F401 (models: migrations)

    # Not Flask-Login's context processor: it loads the user for every page rendered, the guests'
    # splash and code pages too; a proxy costs nothing until a template asks for it.
    auth.login_manager.init_app(app, add_context_processor=False)
    app.context_processor(auth.lazy_current_user)
    app.register_blueprint(auth.bp)

    app.register_blueprint(views.bp)
    app.register_blueprint(splash.bp)
    sms.protect(
        splash.bp,
        on_verified=splash.on_verified,
        required=splash.otp_required,
        location=splash.location_key,
        region=splash.phone_region,
    )
    if app.config.get("PORTAL_DEMO_PAGES", True):
        app.register_blueprint(demo_pages.bp)
    app.cli.add_command(cli.portal_cli)
    return app
