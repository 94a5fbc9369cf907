"""Languages of the guest pages: Flask-Babel, with the location's language first.

A guest page at a location (``/s/<slug>/``: the splash page, the extension's code page, the
voucher login) speaks the location's language when the portal ships it. Any other page, and a
location whose language is empty (:data:`BROWSER`: "whatever the guest's browser asks") or not
shipped, follows the browser's ``Accept-Language`` among :data:`LANGUAGES`, else English.

Catalogs: ``portal/translations`` for the portal's pages, ``sms_ext/translations`` for the
extension's code and error pages (see :mod:`sms_ext.i18n`); ``babel.cfg`` and the README's
"Translations" section say how to extract and compile them.
"""

from __future__ import annotations

from flask import Flask, has_request_context, request
from flask_babel import Babel
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import NotFound

from .extensions import db

LANGUAGES: tuple[tuple[str, str], ...] = (("en", "English"), ("es", "Español"))
"""(code, name in that language) of every language the guest pages ship, English first."""

CODES = tuple(code for code, _name in LANGUAGES)
DEFAULT = "en"
BROWSER = ""
"""A location's language meaning "the guest's browser language" (among :data:`LANGUAGES`)."""

LANGUAGE_CHOICES: tuple[tuple[str, str], ...] = (
    (BROWSER, "Guest's browser (automatic)"),
    *LANGUAGES,
)
"""What an admin may choose as a location's language: the guest's browser, or a shipped one."""

babel = Babel()


def _location_language() -> str | None:
    """The language of the location in the URL, None off location pages or for no location."""
    from .splash import bp, current_venue  # imported here: splash imports the models

    if request.blueprint != bp.name or not (request.view_args or {}).get("slug"):
        return None
    try:
        return current_venue()[0].language
    except NotFound:  # the "page not found" page: the browser's language
        return None
    except OperationalError:
        # The database is down or stalled: the page saying so must still render. Rolled back
        # so the page's own queries fail (or work) as they would have without us.
        db.session.rollback()
        return None


def guest_language() -> str:
    """The language of this request's guest page: the location's, else the browser's best
    match among :data:`LANGUAGES`, else English (also outside a request: CLI, worker)."""
    if not has_request_context():
        return DEFAULT
    language = _location_language()
    if language is not None and language in CODES:
        return language
    return request.accept_languages.best_match(CODES, default=DEFAULT) or DEFAULT


def init_app(app: Flask) -> None:
    """Flask-Babel on the portal: ``_()`` in every template, the locale from
    :func:`guest_language`, and ``guest_language()`` for ``<html lang>``."""
    babel.init_app(app, locale_selector=guest_language)
    app.jinja_env.globals["guest_language"] = guest_language
