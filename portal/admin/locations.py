"""Admin pages: locations and their splash pages, SMS verification switch and gateways.

A location's key is its splash page URL (``/s/<key>/``) and the location key the SMS gateways
are chosen by. Renaming it carries the gateways over (``sms.rename_location``); messages already
in the SMS log keep the key they were sent under. The splash flow's cached copy of a venue is
dropped by the ORM flush itself (see :func:`portal.splash.forget_venue`), so guests see a change
with the next request.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from sms_ext import Gateway, GatewayConfigError
from sms_ext.checks import parse_id

from ..extensions import db, sms
from ..i18n import BROWSER, LANGUAGE_CHOICES
from ..models import Location, SplashPage
from . import bp
from .location_form import LocationValues, read_location_form

DEFAULT_BRAND = "#2563eb"


def _all_gateways() -> list[Gateway]:
    return list(db.session.scalars(Gateway.in_order()))


@bp.route("/locations")
def locations() -> ResponseReturnValue:
    """Every location with its splash page switch and the gateways that serve it."""
    rows = db.session.scalars(select(Location).order_by(func.lower(Location.name), Location.id))
    gateways = _all_gateways()
    listed = [
        (location, [g for g in gateways if g.serves(location.slug)]) for location in rows.all()
    ]
    return render_template(
        "portal/admin/locations.html", listed=listed, languages=dict(LANGUAGE_CHOICES)
    )


def _form_page(
    location: Location | None,
    fields: dict[str, Any],
    checked_ids: set[int],
    errors: dict[str, str] | None = None,
) -> ResponseReturnValue:
    status = 400 if errors else 200
    if errors:
        flash("The location was not saved: see the fields marked below.", "error")
    page = render_template(
        "portal/admin/location_form.html",
        location=location,
        fields=fields,
        gateways=_all_gateways(),
        checked_ids=checked_ids,
        errors=errors or {},
        languages=LANGUAGE_CHOICES,
    )
    return page, status


def _fields_of(location: Location) -> dict[str, Any]:
    page = location.splash_page
    return {
        "name": location.name,
        "slug": location.slug,
        "region": location.region,
        "timezone": location.timezone,
        "language": location.language,
        "title": page.title if page else location.name,
        "text": page.text if page else "",
        "terms": page.terms if page else "",
        "brand_color": page.brand_color if page else DEFAULT_BRAND,
        "otp_enabled": page.otp_enabled if page else True,
    }


def _apply(location: Location, values: LocationValues) -> None:
    location.name = values.name
    location.slug = values.slug
    location.region = values.region
    location.timezone = values.timezone
    location.language = values.language
    if location.splash_page is None:
        location.splash_page = SplashPage()
    page = location.splash_page
    page.title = values.title
    page.text = values.text
    page.terms = values.terms
    page.brand_color = values.brand_color
    page.otp_enabled = values.otp_enabled


def _save(location: Location | None) -> ResponseReturnValue:
    """Check the posted form; save the location, its splash page and its gateways together."""
    values, errors = read_location_form(request.form)
    if "slug" not in errors:
        clash = db.session.scalar(select(Location).where(Location.slug == values.slug))
        if clash is not None and clash is not location:
            errors["slug"] = f"The key {values.slug!r} is already used by {clash.name!r}."
    fields = {**vars(values)}
    if errors:
        return _form_page(location, fields, set(values.gateway_ids), errors)
    old_slug = location.slug if location is not None else None
    if location is None:
        location = Location()
        db.session.add(location)
    _apply(location, values)
    try:
        db.session.flush()  # a key taken a moment ago by another admin fails here
        if old_slug is not None and old_slug != values.slug:
            sms.rename_location(old_slug, values.slug, commit=False)
        all_keys = list(db.session.scalars(select(Location.slug)))
        sms.set_location_gateways(
            values.slug, values.gateway_ids, all_locations=all_keys, commit=False
        )
        db.session.commit()
    except (GatewayConfigError, IntegrityError) as exc:
        db.session.rollback()
        problems = (
            exc.errors
            if isinstance(exc, GatewayConfigError)
            else {"slug": f"The key {values.slug!r} was just taken: choose another."}
        )
        return _form_page(
            location if old_slug is not None else None, fields, set(values.gateway_ids), problems
        )
    flash(f"Saved {values.name}.", "ok")
    return redirect(url_for("portal_admin.locations"), 303)


@bp.route("/locations/new", methods=["GET", "POST"])
def new_location() -> ResponseReturnValue:
    """An empty form (the gateways open to every location ticked); its POST creates."""
    if request.method == "POST":
        return _save(None)
    fields = {
        "region": "",
        "timezone": "UTC",
        "language": BROWSER,
        "brand_color": DEFAULT_BRAND,
        "otp_enabled": True,
    }
    open_to_all = {g.id for g in _all_gateways() if not g.locations}
    return _form_page(None, fields, open_to_all)


@bp.route("/locations/<location_id>", methods=["GET", "POST"])
def edit_location(location_id: str) -> ResponseReturnValue:
    """The location's settings and its splash page; its POST saves them."""
    number = parse_id(location_id)
    location = db.session.get(Location, number) if number is not None else None
    if location is None:
        abort(404)
    if request.method == "POST":
        return _save(location)
    serving = {g.id for g in sms.gateways_for_location(location.slug)}
    return _form_page(location, _fields_of(location), serving)


sms.admin_page("portal_admin.locations", "Locations")
