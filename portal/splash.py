"""The guest splash page: phone number, terms, then online (with an SMS code when enabled).

The Wi-Fi controller sends the guest here with its own query parameters (client MAC and IP,
access point, where to log the client in, the page the guest wanted). They ride along in the
URL through the whole flow, the extension's code page included, because every form posts back
to ``request.full_path``; once the phone is verified the guest goes to the controller's login
URL with the original query string appended as it came.

``sms.protect(bp, ...)`` in ``create_app`` adds the SMS code step; the callbacks below answer its
questions for the location in the URL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import phonenumbers
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    has_app_context,
    make_response,
    redirect,
    render_template,
    request,
    session,
)
from flask_babel import gettext
from sqlalchemy import bindparam, event, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, UOWTransaction
from werkzeug.exceptions import BadRequest, NotFound
from werkzeug.urls import iri_to_uri

from sms_ext import PhoneNumberError
from sms_ext.models import utcnow
from sms_ext.text.phone import country_name

from .extensions import db, sms
from .models import Guest, GuestSession, Location, SplashPage

bp = Blueprint("splash", __name__, url_prefix="/s")

LOGIN_URL_PARAMS = ("link-login-only", "login_url")
"""Where the controller logs the client in: MikroTik, then the generic name."""
ORIGINAL_URL_PARAMS = ("link-orig", "url", "redirect")
"""The page the guest wanted: MikroTik, UniFi, generic."""
CLIENT_MAC_PARAMS = ("mac", "id")
"""Client MAC: MikroTik and generic send ``mac``, UniFi sends ``id``."""
CONSENT_KEY = "portal_splash_consent"
"""Session key carrying the marketing checkbox from the phone form to ``on_verified``, which
may run in a later request (after the guest typed the SMS code)."""
MAX_KEPT_INPUT = 64
"""Typed phone text shown back after an error is cut to this length."""
MAX_CONTROLLER_VALUE = 64
"""Longest MAC / IP / AP value stored; controllers send far less."""
MAX_SLUG = 80


VENUE_SECONDS = 5.0
"""How long a process trusts its copy of a venue. Changes made through this process's ORM
session are seen at once (see :func:`forget_venue`); changes made by another process or by
plain SQL show within this time."""
VENUES = "portal_venues"
"""``app.extensions`` key: the app's venues by slug, with until when (monotonic) to trust them."""
VENUE_CHANGED = "portal_venue_changed"
"""``Session.info`` key: a flush of this transaction wrote a location or splash page."""


# --- the location in the URL, shared by the view and the extension's callbacks ---


@dataclass(frozen=True)
class VenueLocation:
    """What the splash flow needs of a :class:`Location`: a plain copy, safe to share between
    requests and threads."""

    id: int
    name: str
    slug: str
    timezone: str
    region: str
    language: str


@dataclass(frozen=True)
class VenuePage:
    """What the splash flow needs of a :class:`SplashPage`."""

    title: str
    terms: str
    otp_enabled: bool
    text: str
    brand_color: str


Venue = tuple[VenueLocation, VenuePage]

_location, _page = Location.__table__.c, SplashPage.__table__.c
VENUE_QUERY = (
    select(
        _location.id,
        _location.name,
        _location.slug,
        _location.timezone,
        _location.region,
        _location.language,
        _page.title,
        _page.terms,
        _page.otp_enabled,
        _page.text,
        _page.brand_color,
    )
    .join_from(Location.__table__, SplashPage.__table__, _page.location_id == _location.id)
    .where(_location.slug == bindparam("slug"))
)


def _load_venue(slug: str) -> Venue | None:
    row = db.session.execute(VENUE_QUERY, {"slug": slug}).first()
    if row is None:
        return None
    location = VenueLocation(row.id, row.name, row.slug, row.timezone, row.region, row.language)
    page = VenuePage(row.title, row.terms, row.otp_enabled, row.text, row.brand_color)
    return location, page


def current_venue() -> Venue:
    """The location and splash page of ``/s/<slug>/``; 404 if none.

    Every guest POST needs them, and they hardly ever change: each process keeps a copy per app
    for :data:`VENUE_SECONDS`, and a request sees one copy throughout.
    """
    venue: Venue | None = g.get("splash_venue")
    if venue is not None:
        return venue
    slug = (request.view_args or {}).get("slug", "")
    if not slug or len(slug) > MAX_SLUG or not slug.isprintable():
        abort(404)  # PostgreSQL refuses NUL in a query parameter: never send such a slug
    venues: dict[str, tuple[float, Venue]] = current_app.extensions.setdefault(VENUES, {})
    cached = venues.get(slug)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        venue = cached[1]
    else:
        venue = _load_venue(slug)
        if venue is None:
            venues.pop(slug, None)
            abort(404)  # not remembered: a venue created a moment later is found at once
        venues[slug] = (now + VENUE_SECONDS, venue)
    g.splash_venue = venue
    return venue


def forget_venue(slug: str | None = None) -> None:
    """Drop this process's copy of a venue (every venue when ``slug`` is None) in the current
    app, so the next request reads it again. Changes to :class:`Location` and
    :class:`SplashPage` through the ORM call it by themselves; call it after changing them
    with plain SQL (other processes catch up within :data:`VENUE_SECONDS`)."""
    venues = current_app.extensions.get(VENUES)
    if venues:
        if slug is None:
            venues.clear()
        else:
            venues.pop(slug, None)


@event.listens_for(Session, "after_flush")
def _venue_flushed(session: Session, _flush: UOWTransaction) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(instance, Location | SplashPage) for instance in changed):
        session.info[VENUE_CHANGED] = True
        if has_app_context():
            forget_venue()


@event.listens_for(Session, "after_commit")
def _venue_committed(session: Session) -> None:
    # Again: a request may have read the old row between the flush and the commit.
    if session.info.pop(VENUE_CHANGED, False) and has_app_context():
        forget_venue()


@event.listens_for(Session, "after_rollback")
def _venue_rolled_back(session: Session) -> None:
    # The copies dropped at the flush are simply read again: nothing else to undo.
    session.info.pop(VENUE_CHANGED, None)


def otp_required() -> bool:
    """``required`` callback of ``sms.protect``: the page's own switch."""
    return current_venue()[1].otp_enabled


def location_key() -> str:
    """``location`` callback: the slug, which is also the gateways' location key."""
    return current_venue()[0].slug


def phone_region() -> str | None:
    """``region`` callback: how numbers typed without ``+`` are read at this location."""
    return current_venue()[0].region or None


def branding() -> dict[str, str]:
    """``branding`` callback: the venue's name, page title and brand colour on the extension's
    code page, as on the splash page."""
    location, page = current_venue()
    return {"name": location.name, "title": page.title, "accent": page.brand_color}


# --- controller parameters ---


def _web_url(raw: str) -> bool:
    """An absolute http(s) URL without whitespace or control characters."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        return False
    try:
        parts = urlsplit(raw)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


class UnusableLoginURL(BadRequest):
    """The controller's login URL is not http(s): following it could run script or worse."""

    def __init__(self) -> None:
        super().__init__(
            gettext(
                "The Wi-Fi network sent this page a login address it cannot use. "
                "Please reconnect to the Wi-Fi and try again."
            )
        )


def login_url() -> str | None:
    """The controller's login URL from the query; anything but http(s) is refused with 400."""
    for name in LOGIN_URL_PARAMS:
        raw = request.args.get(name)
        if raw:
            if not _web_url(raw):
                raise UnusableLoginURL()
            return raw
    return None


def original_url() -> str | None:
    """The page the guest wanted, when the controller said and it is a web address."""
    for name in ORIGINAL_URL_PARAMS:
        raw = request.args.get(name)
        if raw and _web_url(raw):
            return raw
    return None


def controller_value(*names: str) -> str | None:
    """The first non-empty parameter of ``names``, printable characters only, cut to size."""
    for name in names:
        value = "".join(ch for ch in request.args.get(name, "") if ch.isprintable()).strip()
        if value:
            return value[:MAX_CONTROLLER_VALUE]
    return None


def client_mac() -> str | None:
    """The client's MAC as the controller sent it, lower-case."""
    return (controller_value(*CLIENT_MAC_PARAMS) or "").lower() or None


def client_ip() -> str | None:
    """The client's IP from the controller, else the address the request came from."""
    return controller_value("ip") or (request.remote_addr or "")[:64] or None


def _login_redirect(target: str) -> Response:
    """303 to the login URL with the original query string appended byte for byte."""
    parts = urlsplit(iri_to_uri(target))
    original = request.query_string.decode("latin-1")
    query = "&".join(part for part in (parts.query, original) if part)
    return redirect(urlunsplit(parts._replace(query=query)), 303)


# --- pages ---


def country_hint(region: str | None) -> dict[str, Any] | None:
    """Name and calling code of the region numbers without ``+`` are read in."""
    code = phonenumbers.country_code_for_region(region.upper()) if region else 0
    if not code:
        return None
    return {"name": country_name(region.upper()), "code": code}


def phone_form(
    error: str | None = None, status: int = 200, *, voucher_error: str | None = None
) -> Response:
    """The splash page; ``error`` is shown by the phone form, ``voucher_error`` by the voucher
    form (see :mod:`portal.vouchers.login`)."""
    location, page = current_venue()
    form = request.form
    return make_response(
        render_template(
            "portal/splash.html",
            location=location,
            page=page,
            hint=country_hint(location.region),
            error=error,
            phone=form.get("phone", "")[:MAX_KEPT_INPUT],
            terms_accepted=bool(form.get("terms")),
            marketing=bool(form.get("marketing")),
            voucher_error=voucher_error,
            voucher=form.get("voucher", "")[:MAX_KEPT_INPUT],
        ),
        status,
    )


@bp.errorhandler(404)
def not_found(_error: NotFound) -> tuple[str, int]:
    return render_template("portal/splash_404.html"), 404


@bp.errorhandler(UnusableLoginURL)
def unusable_login_url(error: UnusableLoginURL) -> tuple[str, int]:
    return render_template(
        "portal/splash_404.html",
        heading=gettext("This link cannot be used"),
        message=error.description,
    ), 400


@bp.route("/<slug>/", methods=["GET", "POST"])
def splash(slug: str) -> Response:
    """The phone form; its POST hands the number to the extension (code step or straight on)."""
    _location, page = current_venue()
    login_url()  # refuse a bad login URL now, not after the guest typed a code
    if request.method == "GET":
        return phone_form()
    if "voucher" in request.form:
        from .vouchers.login import voucher_login  # imported here: it builds on this module

        return voucher_login()
    if page.terms.strip() and not request.form.get("terms"):
        return phone_form(gettext("Please accept the terms of use to continue."), 400)
    session[CONSENT_KEY] = {"slug": slug, "marketing": bool(request.form.get("marketing"))}
    try:
        return sms.verify_phone(request.form.get("phone", ""))
    except PhoneNumberError as exc:
        return phone_form(str(exc), 400)


def _guest(phone: str) -> Guest:
    """The guest with ``phone``, created if new; concurrent first logins cannot collide."""
    guest = db.session.scalar(select(Guest).where(Guest.phone == phone))
    if guest is not None:
        return guest
    now = utcnow()
    values = {"phone": phone, "first_seen": now, "last_seen": now, "marketing_consent": False}
    dialect = db.session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
        db.session.execute(insert(Guest).values(values).on_conflict_do_nothing())
        return db.session.scalars(select(Guest).where(Guest.phone == phone)).one()
    guest = Guest(**values)
    db.session.add(guest)
    return guest


def on_verified(phone: str, verified_by_otp: bool) -> Response:
    """``on_verified`` callback: record the guest and the login, then let the client online."""
    location, _page = current_venue()
    login_target = login_url()
    consent = session.pop(CONSENT_KEY, None) or {}
    now = utcnow()
    guest = _guest(phone)
    guest.last_seen = now
    # The box is asked on every login, so its state is the guest's answer now: ticked gives
    # consent (its time is the evidence), unticked withdraws consent given earlier.
    if consent.get("slug") == location.slug:
        given = bool(consent.get("marketing"))
        if given or guest.marketing_consent:
            guest.marketing_consent, guest.consent_at = given, now if given else None
    db.session.add(
        GuestSession(
            guest=guest,
            location_id=location.id,
            client_mac=client_mac(),
            client_ip=client_ip(),
            ap=controller_value("ap"),
            phone=phone,
            verified_by_otp=verified_by_otp,
            started_at=now,
        )
    )
    db.session.commit()
    return let_online(login_target)


def let_online(login_target: str | None) -> Response:
    """The guest is allowed online: off to the controller's login URL (the query string kept),
    or the connected page when the controller gave none."""
    location, _page = current_venue()
    if login_target:
        return _login_redirect(login_target)
    wanted = original_url()
    return make_response(
        render_template(
            "portal/connected.html",
            location=location,
            continue_url=wanted,
            continue_host=urlsplit(wanted).hostname if wanted else None,
        )
    )
