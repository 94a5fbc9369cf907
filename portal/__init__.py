"""The demo captive portal: a small host app that shows how an integrator uses sms_ext."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from sqlalchemy import event, make_url

from sms_ext import ConfigError

from . import i18n, login_throttle, security
from .campaign_audience import PortalAudience
from .extensions import db, migrate, sms
from .secret_key import check_secret_key, ensure_secret_key
from .vouchers import throttle as vouchers_throttle

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


_FLAGS = {"1": True, "true": True, "yes": True, "on": True}
_FLAGS.update({"0": False, "false": False, "no": False, "off": False, "": False})


def _flag(app: Flask, key: str) -> bool:
    """A yes/no setting given as a bool or as text (``1``, ``true``, ``0``, ``off``...)."""
    value = app.config[key]
    if isinstance(value, bool):
        return value
    try:
        return _FLAGS[str(value).strip().lower()]
    except KeyError:
        raise ConfigError(f"{key} must be 1 or 0 (true or false), got {value!r}.") from None


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
    """Build the portal app; ``test_config`` replaces the instance config and environment.

    Settings come from ``instance/config.py``, then ``FLASK_``-prefixed environment variables
    (``FLASK_SMS_REDIS_URL``), and ``PORTAL_DEMO`` as named (``make run`` sets it).
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY=None,
        SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "portal.db"),
        SQLALCHEMY_ENGINE_OPTIONS={},
        PORTAL_DB_CONNECT_TIMEOUT=5,
        PORTAL_DB_STATEMENT_TIMEOUT=10,
        PORTAL_DEMO=False,
        SMS_ADMIN_LOGOUT_ENDPOINT="auth.logout",
        **security.COOKIE_DEFAULTS,
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.from_prefixed_env()
        if "PORTAL_DEMO" in os.environ:
            app.config["PORTAL_DEMO"] = os.environ["PORTAL_DEMO"]
        if not app.config["SECRET_KEY"]:
            ensure_secret_key(app)
    else:
        app.config.update(test_config)
    check_secret_key(app)
    app.config["PORTAL_DEMO"] = _flag(app, "PORTAL_DEMO")
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
    sms.campaign_audience(PortalAudience(db))
    i18n.init_app(app)
    login_throttle.init_app(app)
    vouchers_throttle.init_app(app)
    security.init_app(app)

    from . import admin, auth, cli, demo_pages, models, splash, views  # noqa: F401 (models)

    # Not Flask-Login's context processor: it loads the user for every page rendered, the guests'
    # splash and code pages too; a proxy costs nothing until a template asks for it.
    auth.login_manager.init_app(app, add_context_processor=False)
    app.context_processor(auth.lazy_current_user)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)

    app.register_blueprint(views.bp)
    app.register_blueprint(splash.bp)
    sms.protect(
        splash.bp,
        on_verified=splash.on_verified,
        required=splash.otp_required,
        location=splash.location_key,
        region=splash.phone_region,
        branding=splash.branding,
        language=i18n.guest_language,
    )
    if app.config["PORTAL_DEMO"]:
        # Sandbox messages readable by anyone: never on unless asked for.
        app.register_blueprint(demo_pages.bp)
    app.cli.add_command(cli.portal_cli)
    return app
